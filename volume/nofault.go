//go:build !faultinject

package volume

import (
	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/exec"
)

// The fault-injection switch exists only in a test build (faultinject.go):
// here the seams are left as they are.

func faultRunner(r exec.Runner) exec.Runner { return r }

func faultHypervisor(h hypervisor.Hypervisor, _ string) hypervisor.Hypervisor { return h }
