//go:build !faultinject

package volume

import (
	"context"
	"testing"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
)

// The normal build ignores the switch's environment: the runner handed out
// is the one the seams made, with no wrapper that could kill blk.
func TestNormalBuildHasNoFaultSwitch(t *testing.T) {
	t.Setenv("BLK_FAULT_KILL_AFTER", "1")
	f := exectest.New(t, "stor1").Expect("", "lvs")
	hs := NewHosts(&config.Config{Hosts: map[string]config.Host{"stor1": {}}}, nil, nil)
	hs.New = func(string, config.Host) exec.Runner { return f }
	r, _ := hs.Runner("stor1")
	if r != exec.Runner(f) {
		t.Fatalf("runner is %T, want the fake itself", r)
	}
	if _, err := r.Run(context.Background(), exec.Cmd{Args: []string{"lvs"}}); err != nil {
		t.Fatal(err)
	}
}
