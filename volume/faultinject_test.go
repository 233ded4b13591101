//go:build faultinject

package volume

import (
	"context"
	"errors"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
)

// withFaults replaces the switch for one test: kill records instead of
// killing.
func withFaults(t *testing.T, killAt int) (count string, killedAt *[]int) {
	t.Helper()
	count = filepath.Join(t.TempDir(), "count")
	killedAt = &[]int{}
	old := faults
	f := &faultSwitch{killAt: killAt, file: count}
	f.kill = func() { *killedAt = append(*killedAt, f.done) }
	faults = f
	t.Cleanup(func() { faults = old })
	return count, killedAt
}

func readCount(t *testing.T, file string) int {
	n, _ := readCountAndLast(t, file)
	return n
}

func readCountAndLast(t *testing.T, file string) (int, string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	count, last, _ := strings.Cut(string(b), "\n")
	n, err := strconv.Atoi(count)
	if err != nil {
		t.Fatal(err)
	}
	return n, strings.TrimSuffix(last, "\n")
}

func twoHosts(t *testing.T, dryRun *strings.Builder) (*Hosts, *exectest.Fake, *exectest.Fake) {
	cfg := &config.Config{Hosts: map[string]config.Host{"stor1": {}, "comp1": {}}}
	stor, comp := exectest.New(t, "stor1"), exectest.New(t, "comp1")
	var hs *Hosts
	if dryRun != nil {
		hs = NewHosts(cfg, nil, dryRun)
	} else {
		hs = NewHosts(cfg, nil, nil)
	}
	hs.New = func(name string, _ config.Host) exec.Runner {
		if name == "stor1" {
			return stor
		}
		return comp
	}
	hs.NewHypervisor = func(context.Context, string, exec.Runner) (hypervisor.Hypervisor, error) {
		return newFakeHV("vm1"), nil
	}
	return hs, stor, comp
}

// Commands on every host and libvirt calls are counted together, failed
// ones too, and the kill comes right after the Nth, once.
func TestFaultSwitchCountsEveryStepOnEveryHost(t *testing.T) {
	count, killedAt := withFaults(t, 3)
	hs, stor, comp := twoHosts(t, nil)
	stor.Expect("", "lvs").ExpectFail(5, "", "boom", "lvcreate")
	comp.Expect("", "iscsiadm")
	ctx := context.Background()
	s, _ := hs.Runner("stor1")
	c, _ := hs.Runner("comp1")
	hv, err := hs.Hypervisor(ctx, "comp1")
	if err != nil {
		t.Fatal(err)
	}
	steps := []func() error{
		func() error { _, err := s.Run(ctx, exec.Cmd{Args: []string{"lvs"}}); return err },
		func() error { _, err := c.Run(ctx, exec.Cmd{Args: []string{"iscsiadm"}, Mutates: true}); return err },
		func() error { _, err := s.Run(ctx, exec.Cmd{Args: []string{"lvcreate"}, Mutates: true}); return err },
		func() error { _, err := hv.DomainXML(ctx, "vm1", false); return err },
	}
	for i, step := range steps {
		err := step()
		if (i == 2) != (err != nil) {
			t.Fatalf("step %d: %v", i+1, err)
		}
		if got := readCount(t, count); got != i+1 {
			t.Errorf("after step %d the count file says %d", i+1, got)
		}
		if want := min(i+1, 3) / 3; len(*killedAt) != want {
			t.Errorf("after step %d: kills at %v", i+1, *killedAt)
		}
	}
	if len(*killedAt) != 1 || (*killedAt)[0] != 3 {
		t.Errorf("killed at %v, want [3]", *killedAt)
	}
	if _, last := readCountAndLast(t, count); last != "comp1: libvirt dumpxml vm1" {
		t.Errorf("last step %q", last)
	}
}

// The last step is named with its secrets masked: the count file is read
// by tests whose logs are kept.
func TestFaultSwitchNamesTheLastStepMasked(t *testing.T) {
	count, _ := withFaults(t, 0)
	hs, stor, _ := twoHosts(t, nil)
	stor.Expect("", "tgtadm", "--password", "s3cret")
	s, _ := hs.Runner("stor1")
	if _, err := s.Run(context.Background(), exec.Cmd{Args: []string{"tgtadm", "--password", "s3cret"}, Secrets: []string{"s3cret"}}); err != nil {
		t.Fatal(err)
	}
	if n, last := readCountAndLast(t, count); n != 1 || last != "stor1: tgtadm --password '***'" {
		t.Errorf("count file: %d %q", n, last)
	}
}

// A command a dry run prints instead of running is no step.
func TestFaultSwitchSkipsWhatADryRunDoesNotRun(t *testing.T) {
	count, _ := withFaults(t, 0)
	var plan strings.Builder
	hs, stor, _ := twoHosts(t, &plan)
	stor.Expect("", "lvs")
	ctx := context.Background()
	s, _ := hs.Runner("stor1")
	hv, _ := hs.Hypervisor(ctx, "comp1")
	for _, cmd := range []exec.Cmd{{Args: []string{"lvs"}}, {Args: []string{"lvcreate"}, Mutates: true}} {
		if _, err := s.Run(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	if err := hv.AttachDevice(ctx, "vm1", "<disk/>", hypervisor.Flags{Live: true}); err != nil {
		t.Fatal(err)
	}
	if got := readCount(t, count); got != 1 {
		t.Errorf("count = %d, want 1 (the lvs); plan:\n%s", got, plan.String())
	}
}

// The real switch, read from the environment: a process that runs three
// local commands with BLK_FAULT_KILL_AFTER=2 dies by SIGKILL after the
// second, and its count file says 2.
func TestFaultSwitchKillsTheProcess(t *testing.T) {
	if os.Getenv("BLK_FAULT_HELPER") == "1" {
		hs := NewHosts(&config.Config{Hosts: map[string]config.Host{"here": {Local: true}}}, nil, nil)
		r, _ := hs.Runner("here")
		for i := 1; i <= 3; i++ {
			if _, err := r.Run(context.Background(), exec.Cmd{Args: []string{"true"}}); err != nil {
				t.Fatal(err)
			}
			os.Stdout.WriteString("ran " + strconv.Itoa(i) + "\n")
		}
		return
	}
	count := filepath.Join(t.TempDir(), "count")
	cmd := osexec.Command(os.Args[0], "-test.run=^TestFaultSwitchKillsTheProcess$")
	cmd.Env = append(os.Environ(), "BLK_FAULT_HELPER=1", "BLK_FAULT_KILL_AFTER=2", "BLK_FAULT_COUNT="+count)
	out, err := cmd.Output()
	var ee *osexec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("helper: %v, output %q", err, out)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, want SIGKILL; output %q", err, out)
	}
	if string(out) != "ran 1\n" {
		t.Errorf("output %q, want only the first command's line", out)
	}
	if got := readCount(t, count); got != 2 {
		t.Errorf("count = %d, want 2", got)
	}
}

// A bad N is refused at start, not ignored.
func TestFaultSwitchRefusesABadN(t *testing.T) {
	if os.Getenv("BLK_FAULT_HELPER") == "1" {
		return
	}
	cmd := osexec.Command(os.Args[0], "-test.run=^TestFaultSwitchRefusesABadN$")
	cmd.Env = append(os.Environ(), "BLK_FAULT_HELPER=1", "BLK_FAULT_KILL_AFTER=0")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*osexec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "BLK_FAULT_KILL_AFTER") {
		t.Errorf("exit %v, output %q", err, out)
	}
}
