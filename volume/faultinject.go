//go:build faultinject

// A test build of blk (go build -tags faultinject) can be killed at any
// step, to prove that a rerun finishes or undoes what a dead process left:
//
//	BLK_FAULT_KILL_AFTER=N  SIGKILL itself right after the Nth external
//	                        step completes, whether it succeeded or failed
//	BLK_FAULT_COUNT=FILE    keep FILE holding how many steps completed so
//	                        far, so a test knows the range of N, and on a
//	                        second line the last one (host: argv, masked)
//
// A step is one Runner.Run on any host or one libvirt call (DomainXML,
// AttachDevice, DetachDevice, Domains, Active, Paused, Suspend, Resume,
// DefineXML, BlockResize),
// counted in the order they complete. The
// count is kept up to date after each step rather than written at exit, so
// it is there after a kill too, and after an exit blk did not plan.

package volume

import (
	"context"
	"fmt"
	"github.com/pkg/sftp"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/exec"
)

type faultSwitch struct {
	mu     sync.Mutex
	done   int
	last   string
	killAt int    // 0: never
	file   string // "": no count kept
	kill   func()
}

var faults = faultsFromEnv()

func faultsFromEnv() *faultSwitch {
	f := &faultSwitch{file: os.Getenv("BLK_FAULT_COUNT"), kill: killSelf}
	if s := os.Getenv("BLK_FAULT_KILL_AFTER"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			// A harness that asks for a kill it will not get would pass for
			// the wrong reason.
			fmt.Fprintf(os.Stderr, "blk: error: BLK_FAULT_KILL_AFTER=%q: want a whole number from 1\n", s)
			os.Exit(2)
		}
		f.killAt = n
	}
	f.write()
	return f
}

// step records one completed external step, and dies if it is the one asked
// for. The lock is held through the kill, so no step completing alongside
// is counted after it.
func (f *faultSwitch) step(what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done++
	f.last = what
	f.write()
	if f.done == f.killAt {
		f.kill()
	}
}

func (f *faultSwitch) write() {
	if f.file == "" {
		return
	}
	if err := os.WriteFile(f.file, []byte(strconv.Itoa(f.done)+"\n"+f.last+"\n"), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "blk: error: BLK_FAULT_COUNT: %v\n", err)
		os.Exit(2)
	}
}

func killSelf() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // nothing more of blk may run while the signal lands
}

type countedRunner struct{ exec.Runner }

func faultRunner(r exec.Runner) exec.Runner { return countedRunner{r} }

func (c countedRunner) Run(ctx context.Context, cmd exec.Cmd) (exec.Result, error) {
	defer faults.step(c.Host() + ": " + exec.Quote(exec.Mask(cmd.Args, cmd.Secrets)))
	return c.Runner.Run(ctx, cmd)
}

type countedHypervisor struct {
	hypervisor.Hypervisor
	host string
}

func (c countedHypervisor) step(op, domain string) {
	faults.step(c.host + ": libvirt " + op + " " + domain)
}

type domainLister interface {
	Domains(context.Context) ([]string, error)
}

// countedLister keeps what Instances looks for (shell completion) visible
// through the wrapper.
type countedLister struct {
	countedHypervisor
	l domainLister
}

func (c countedLister) Domains(ctx context.Context) ([]string, error) {
	defer c.step("list-domains", "")
	return c.l.Domains(ctx)
}

func faultHypervisor(h hypervisor.Hypervisor, host string) hypervisor.Hypervisor {
	if l, ok := h.(domainLister); ok {
		return countedLister{countedHypervisor{h, host}, l}
	}
	return countedHypervisor{h, host}
}

func (c countedHypervisor) DomainXML(ctx context.Context, domain string, persistent bool) (string, error) {
	op := "dumpxml"
	if persistent {
		op += " --inactive"
	}
	defer c.step(op, domain)
	return c.Hypervisor.DomainXML(ctx, domain, persistent)
}

func (c countedHypervisor) AttachDevice(ctx context.Context, domain, xml string, f hypervisor.Flags) error {
	defer c.step("attach-device "+f.String(), domain)
	return c.Hypervisor.AttachDevice(ctx, domain, xml, f)
}

func (c countedHypervisor) DetachDevice(ctx context.Context, domain, xml string, f hypervisor.Flags) error {
	defer c.step("detach-device "+f.String(), domain)
	return c.Hypervisor.DetachDevice(ctx, domain, xml, f)
}

// OpenFile passes file access (a streamed copy) through: its reads and
// writes are no kill points, the commands around them are.
func (c countedRunner) OpenFile(ctx context.Context, path string, write bool) (exec.File, error) {
	return exec.OpenFile(ctx, c.Runner, path, write)
}

func (c countedHypervisor) Active(ctx context.Context, domain string) (bool, error) {
	defer c.step("domstate", domain)
	return c.Hypervisor.Active(ctx, domain)
}

func (c countedHypervisor) DefineXML(ctx context.Context, xml string) error {
	defer c.step("define", "")
	return c.Hypervisor.DefineXML(ctx, xml)
}

func (c countedHypervisor) BlockResize(ctx context.Context, domain, disk string, size int64) error {
	defer c.step("blockresize "+disk, domain)
	return c.Hypervisor.BlockResize(ctx, domain, disk, size)
}

func (c countedHypervisor) Paused(ctx context.Context, domain string) (bool, error) {
	defer c.step("domstate --reason", domain)
	return c.Hypervisor.Paused(ctx, domain)
}

func (c countedHypervisor) Suspend(ctx context.Context, domain string) error {
	defer c.step("suspend", domain)
	return c.Hypervisor.Suspend(ctx, domain)
}

func (c countedHypervisor) Resume(ctx context.Context, domain string) error {
	defer c.step("resume", domain)
	return c.Hypervisor.Resume(ctx, domain)
}

// SFTP passes a repository's file access through: no kill points either.
func (c countedRunner) SFTP(ctx context.Context) (*sftp.Client, error) {
	return exec.SFTP(ctx, c.Runner)
}
