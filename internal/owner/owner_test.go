package owner

import (
	"fmt"
	"os"
	osexec "os/exec"
	"strings"
	"testing"
	"time"
)

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	c := osexec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	return c.Process.Pid
}

func TestOwnerLivenessComesFromTheKernel(t *testing.T) {
	self, ok := Parse(Self)
	if !ok || self.Ticks == 0 || self.Boot == "" || self.Machine != MachineID() {
		t.Fatalf("Self %q lacks the kernel's start time or boot id", Self)
	}
	h, boot, ns := Hostname(), BootID(), PidNS()
	own := func(host, boot string, pid int, ticks uint64) string {
		return fmt.Sprintf("%s:%s:%s:%d:%d", host, boot, ns, pid, ticks)
	}
	dead := deadPID(t)
	for _, c := range []struct {
		name, owner string
		gone        bool
	}{
		{"this live process", Self, false},
		{"a dead pid", own(h, boot, dead, self.Ticks), true},
		{"a pid reused by a later process", own(h, boot, os.Getpid(), self.Ticks+1), true},
		{"an owner from before a reboot", own(h, "0b0e1d1d-0000-4000-8000-000000000000", os.Getpid(), self.Ticks), true},
		{"an owner from before a reboot, with this machine's id", own(h, "0b0e1d1d-0000-4000-8000-000000000000", os.Getpid(), self.Ticks) + ":" + MachineID(), true},
		{"another machine of the same name (a clone), its process alive", own(h, "0b0e1d1d-0000-4000-8000-000000000000", os.Getpid(), self.Ticks) + ":0123456789abcdef0123456789abcdef", false},
		{"another machine of the same name, even with a dead pid", own(h, boot, dead, 1) + ":0123456789abcdef0123456789abcdef", false},
		{"an owner on another host, even with a dead pid", own("otherhost", boot, dead, 1), false},
		{"an old-format owner whose pid is dead", fmt.Sprintf("%s:%d:1", h, dead), true},
		{"an old-format owner whose pid is taken", fmt.Sprintf("%s:%d:1", h, os.Getpid()), false},
		{"an old-format owner on another host", "otherhost:1:1", false},
		{"garbage", "garbage", false},
	} {
		if MachineID() == "" && strings.Contains(c.name, "machine") {
			continue // no /etc/machine-id here: owners record none
		}
		if got := IsGone(c.owner); got != c.gone {
			t.Errorf("%s (%s): gone = %v, want %v", c.name, c.owner, got, c.gone)
		}
	}
}

// The command name may hold spaces and parentheses; only the last ')' ends it.
func TestParseStatAfterTheLastParen(t *testing.T) {
	stat := "4242 (a) (b c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100"
	st, got, err := ParseStat(stat)
	if err != nil || got != 987654 || st != "S" {
		t.Fatalf("got %s %d, %v; want S 987654", st, got, err)
	}
	if _, _, err := ParseStat("4242 (x S 1"); err == nil {
		t.Error("a truncated stat line parsed")
	}
}

// A killed blk whose parent has not reaped it yet is gone too.
func TestZombieOwnerIsGone(t *testing.T) {
	c := osexec.Command("true")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Wait()
	var ticks uint64
	for i := 0; i < 200; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		st, tk, _ := ParseStat(string(b))
		if st == "Z" {
			ticks = tk
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ticks == 0 {
		t.Skip("the child never became a zombie")
	}
	own := fmt.Sprintf("%s:%s:%s:%d:%d", Hostname(), BootID(), PidNS(), c.Process.Pid, ticks)
	if !IsGone(own) {
		t.Errorf("a zombie owner %s is taken for alive", own)
	}
}
