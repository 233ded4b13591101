// Package owner names a process so that a later process can prove it gone:
// the state journal and the backup repository's locks record it.
package owner

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// procRoot is where the kernel's process table is read (tests swap it).
var procRoot = "/proc"

// Self names this process as host:boot_id:pid_ns:pid:start:machine_id,
// where start is the kernel's record of when the process started (clock
// ticks since boot, /proc/<pid>/stat field 22). A pid alone is reused, and
// a wall-clock start says nothing once the pid is: with the boot id and the
// kernel's own start time, a later process can prove this one gone. The
// machine id tells a reboot from another machine of the same name (cloned
// admin VMs sharing a PostgreSQL state).
var Self = func() string {
	ticks, _ := startTicks(os.Getpid())
	return fmt.Sprintf("%s:%s:%s:%d:%d:%s", Hostname(), BootID(), PidNS(), os.Getpid(), ticks, MachineID())
}()

// Owner is a parsed owner string. Strings written before boot ids were
// recorded read as host:pid:unix-start (Legacy); before machine ids, as
// host:boot_id:pid_ns:pid:start (Machine empty).
type Owner struct {
	Host, Boot, PidNS string
	Pid               int
	Ticks             uint64
	Machine           string
	Legacy            bool
}

// Parse reads an owner string; false when it is none.
func Parse(s string) (Owner, bool) {
	p := strings.Split(s, ":")
	var o Owner
	var err error
	switch len(p) {
	case 5, 6:
		o.Host, o.Boot, o.PidNS = p[0], p[1], p[2]
		if len(p) == 6 {
			o.Machine = p[5]
		}
		if o.Pid, err = strconv.Atoi(p[3]); err != nil {
			return o, false
		}
		if o.Ticks, err = strconv.ParseUint(p[4], 10, 64); err != nil {
			return o, false
		}
	case 3:
		o.Host, o.Legacy = p[0], true
		if o.Pid, err = strconv.Atoi(p[1]); err != nil {
			return o, false
		}
	default:
		return o, false
	}
	return o, o.Pid > 0
}

// Liveness is what this process can prove about an owner.
type Liveness int

const (
	Alive   Liveness = iota // its process still runs
	Gone                    // provably not running any more
	Unknown                 // cannot be told from here: never taken over
)

// Check says whether the owner's process still runs. Only what the kernel
// proves counts as gone: the same host and pid namespace, and then another
// boot, no such pid, or a pid whose recorded start differs. An owner on
// another host, in another pid namespace, or written by an older blk whose
// pid is still taken, is unknown.
func (o Owner) Check() (Liveness, string) {
	if o.Host != Hostname() {
		return Unknown, "it ran on another host"
	}
	if m := MachineID(); o.Machine != "" && m != "" && o.Machine != m {
		return Unknown, "it ran on another machine of the same name (its machine id differs)"
	}
	if !o.Legacy {
		if b := BootID(); o.Boot != "" && b != "" && o.Boot != b {
			return Gone, "the host rebooted since"
		}
		if o.PidNS != PidNS() {
			return Unknown, "it ran in another pid namespace (container)"
		}
	}
	// Signal 0 checks the pid without touching it; EPERM means it exists.
	if err := syscall.Kill(o.Pid, 0); errors.Is(err, syscall.ESRCH) {
		return Gone, "that process is gone"
	}
	if o.Legacy {
		return Unknown, "an older blk recorded it without a start time, and its pid is in use"
	}
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", procRoot, o.Pid))
	if err != nil {
		return Unknown, "its pid is in use and its start time cannot be read"
	}
	st, ticks, err := ParseStat(string(b))
	switch {
	case err != nil:
		return Unknown, "its pid is in use and its start time cannot be read"
	case ticks != o.Ticks:
		return Gone, "that process is gone (its pid now belongs to another)"
	case st == "Z" || st == "X":
		return Gone, "that process is gone (it exited and awaits its parent)"
	}
	return Alive, ""
}

// IsGone reports whether the owner string names a process proven gone.
func IsGone(s string) bool {
	o, ok := Parse(s)
	if !ok {
		return false
	}
	l, _ := o.Check()
	return l == Gone
}

// startTicks reads when pid started, in clock ticks since boot.
func startTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", procRoot, pid))
	if err != nil {
		return 0, err
	}
	_, ticks, err := ParseStat(string(b))
	return ticks, err
}

// ParseStat reads a /proc/<pid>/stat line: its state (field 3) and its
// start time in clock ticks since boot (field 22). Field 2, the command
// name, may hold spaces and parentheses, so fields are counted after its
// last ')'.
func ParseStat(stat string) (state string, ticks uint64, err error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return "", 0, errors.New("stat: no command name")
	}
	// After ") " come fields 3, 4, ...: field 22 is the 20th.
	f := strings.Fields(stat[i+1:])
	if len(f) < 20 {
		return "", 0, fmt.Errorf("stat: %d fields after the command name, want 20 or more", len(f))
	}
	ticks, err = strconv.ParseUint(f[19], 10, 64)
	return f[0], ticks, err
}

// BootID is the kernel's id of this boot.
func BootID() string {
	b, _ := os.ReadFile(procRoot + "/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// MachineID is systemd's /etc/machine-id (or D-Bus's copy): the same
// across reboots, different on every machine, even clones of one image
// once booted. Empty where there is none.
func MachineID() string {
	for _, f := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(f); err == nil {
			if id := strings.TrimSpace(string(b)); id != "" && !strings.Contains(id, ":") {
				return id
			}
		}
	}
	return ""
}

// PidNS names this process's pid namespace: pids of other namespaces mean
// nothing here.
func PidNS() string {
	l, _ := os.Readlink(procRoot + "/self/ns/pid")
	return strings.TrimSuffix(strings.TrimPrefix(l, "pid:["), "]")
}

// Hostname is this host's name as owners record it.
func Hostname() string {
	h, _ := os.Hostname()
	return h
}
