//go:build lab

package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"
)

// TestCrash kills blk at every external step of each workflow (create,
// delete, attach, detach, on LVM and NFS; snapshot create, delete and
// revert; extend; clones from a volume, a snapshot and a volume in use;
// create from an image), then recovers the way an operator would, and
// checks the outcome against the guest itself: the volume's row, its LV or
// file, snapshot LVs and files, tgt targets and CHAP accounts, iSCSI
// sessions, node records and by-path links, NFS mounts, disks in lab-vm1,
// and the volume's bytes; then 'blk reconcile' must find no drift either.
//
// It runs BLK_FAULT_BIN, blk built with -tags faultinject (lab/test.sh
// builds it): BLK_FAULT_KILL_AFTER=N makes it SIGKILL itself right after
// its Nth external step (a command on any host or a libvirt call), and
// BLK_FAULT_COUNT=FILE says how many steps a run made. A clean run of each
// workflow gives the range of N; every N is then tried, or with
// BLK_CRASH_EVERY=K only the first, every Kth and the last.
//
// A run whose step count varies (polling: the iSCSI device link, the disk
// leaving the domain) may finish before reaching N: that cell reads "done"
// and is no failure. Past the clean run's count, N goes on growing until a
// run finishes unkilled, so the last steps of a slower run are tried too.
func TestCrash(t *testing.T) {
	if os.Getenv("BLK_FAULT_BIN") == "" {
		t.Fatal("TestCrash needs BLK_FAULT_BIN, blk built with -tags faultinject: run it with make lab-test")
	}
	every := 1
	if s := os.Getenv("BLK_CRASH_EVERY"); s != "" {
		var err error
		if every, err = strconv.Atoi(s); err != nil || every < 1 {
			t.Fatalf("BLK_CRASH_EVERY=%q: want a whole number from 1", s)
		}
	}
	m := &matrix{}
	defer m.print(t)
	start := time.Now()
	defer func() { t.Logf("crash matrix took %s", time.Since(start).Round(time.Second)) }()
	for _, st := range []storage{lvThick, lvThin} {
		t.Run("create/"+st.name, func(t *testing.T) { crashMatrix(t, m, every, createFlow(st)) })
		for _, wipe := range []bool{false, true} {
			name := "delete/" + st.name
			if wipe {
				name += "/wipe"
			}
			t.Run(name, func(t *testing.T) { crashMatrix(t, m, every, deleteFlow(st, wipe)) })
		}
	}
	// Attach and detach on a thick volume only: the LV's kind changes
	// nothing from the export on.
	t.Run("attach", func(t *testing.T) { crashMatrix(t, m, every, attachFlow(lvThick)) })
	t.Run("detach", func(t *testing.T) { crashMatrix(t, m, every, detachFlow(lvThick)) })

	// The workflows below make the matrix about an hour a mode: make check
	// (CI) leaves them out; BLK_CRASH_ALL=1 make lab-test runs them.
	if os.Getenv("BLK_CRASH_ALL") == "" {
		t.Log("BLK_CRASH_ALL unset: NFS, snapshot, extend, clone and image workflows left out of the matrix")
		return
	}

	// nfs-1: a file on the export instead of an LV, a mount on the compute
	// host instead of a target and a session.
	t.Run("nfs/create", func(t *testing.T) { crashMatrix(t, m, every, createFlow(nfsFile)) })
	t.Run("nfs/delete", func(t *testing.T) { crashMatrix(t, m, every, deleteFlow(nfsFile, false)) })
	t.Run("nfs/attach", func(t *testing.T) { crashMatrix(t, m, every, attachFlow(nfsFile)) })
	t.Run("nfs/detach", func(t *testing.T) { crashMatrix(t, m, every, detachFlow(nfsFile)) })

	for _, st := range []storage{lvThick, lvThin, nfsFile} {
		t.Run("snapshot/create/"+st.name, func(t *testing.T) { crashMatrix(t, m, every, snapshotCreateFlow(st)) })
		t.Run("snapshot/delete/"+st.name, func(t *testing.T) { crashMatrix(t, m, every, snapshotDeleteFlow(st)) })
		t.Run("snapshot/revert/"+st.name, func(t *testing.T) { crashMatrix(t, m, every, revertFlow(st)) })
	}
	for _, st := range []storage{lvThick, nfsFile} {
		t.Run("extend/"+st.name, func(t *testing.T) { crashMatrix(t, m, every, extendFlow(st)) })
	}
	// A thick copy is a new LV and a streamed copy; a thin one, an instant
	// thin snapshot of its source.
	for _, st := range []storage{lvThick, lvThin} {
		t.Run("clone/volume/"+st.name, func(t *testing.T) { crashMatrix(t, m, every, cloneFlow(st, "volume")) })
		t.Run("clone/snapshot/"+st.name, func(t *testing.T) { crashMatrix(t, m, every, cloneFlow(st, "snapshot")) })
	}
	// An in-use volume is copied through a temporary snapshot, which must
	// not outlive the copy.
	t.Run("clone/in-use/thick", func(t *testing.T) { crashMatrix(t, m, every, cloneFlow(lvThick, "in-use")) })
	for _, st := range []storage{lvThick, lvThin, nfsFile} {
		t.Run("image/"+st.name, func(t *testing.T) { crashMatrix(t, m, every, imageFlow(st)) })
	}
}

// fixture is one try's volume and what the guest looked like when it was
// in the state the recovery must end in (or, for create and delete, the
// state the workflow started from).
type fixture struct {
	name, uuid, path string
	sum              string          // sha256 of the LV's bytes, "" when not checked
	base             map[string]bool // reality(), see there
	// snap and snapUUID name a snapshot of the volume (snapshot flows,
	// clones from a snapshot); snapUUID is filled when only its row knows.
	snap, snapUUID string
	// before is what a revert's volume read before it (sum: the snapshot's
	// bytes); reverted says which of the two check found.
	before   string
	reverted bool
	// src is the volume a clone copies (and its snapshot).
	src *fixture
}

type flow struct {
	name string
	// prepare runs once per flow (a volume shared by every try); may be nil.
	prepare func(t *testing.T) fixture
	// setup brings one try to its known starting state.
	setup func(t *testing.T, f *fixture)
	args  func(f fixture) []string
	// recover reruns what an operator would after the kill, and says what
	// went wrong.
	recover func(t *testing.T, f *fixture) []string
	// undo, for a run that was not killed, brings its end state back to
	// the one check wants (attach: detach again); may be nil.
	undo func(t *testing.T, f *fixture) []string
	// check compares the volume's row and bytes with the target state;
	// it fills f.uuid when only the row knows it (create).
	check func(t *testing.T, f *fixture) []string
	// changed is what reality must have gained and lost against f.base.
	changed func(f fixture) (added, removed []string)
	// cleanup runs after each try's checks, finish once after the flow.
	cleanup, finish func(t *testing.T, f fixture)
}

func crashMatrix(t *testing.T, m *matrix, every int, fl flow) {
	var shared fixture
	if fl.prepare != nil {
		shared = fl.prepare(t)
	}
	if fl.finish != nil {
		defer fl.finish(t, shared)
	}
	try := func(n int) (outcome string, steps int, killed bool) {
		f := shared
		fl.setup(t, &f)
		r, killed, steps, last := faultRun(t, n, fl.args(f)...)
		var problems []string
		outcome = "ok"
		switch {
		case killed && n == 0:
			problems = append(problems, "killed without being asked")
		case killed && steps != n:
			problems = append(problems, fmt.Sprintf("killed after %d steps, asked for %d", steps, n))
		case killed:
			problems = append(problems, fl.recover(t, &f)...)
		case r.code != 0:
			problems = append(problems, fmt.Sprintf("exit %d without a kill: %s", r.code, strings.TrimSpace(r.errOut)))
		case n > 0 && steps >= n:
			problems = append(problems, fmt.Sprintf("made %d steps and was not killed after step %d", steps, n))
		default: // it ran to its end
			if n > 0 {
				outcome = fmt.Sprintf("done(%d)", steps)
			}
			if fl.undo != nil {
				problems = append(problems, fl.undo(t, &f)...)
			}
		}
		if len(problems) == 0 {
			problems = append(problems, fl.check(t, &f)...)
			added, removed := fl.changed(f)
			problems = append(problems, settledDrift(t, f.base, added, removed)...)
			// And blk itself agrees: the state file and the guest match.
			problems = append(problems, reconciled(t)...)
		}
		if fl.cleanup != nil {
			fl.cleanup(t, f)
		}
		if len(problems) > 0 {
			if n == 0 {
				t.Errorf("%s, clean run: %s", fl.name, strings.Join(problems, "; "))
			} else {
				t.Errorf("%s killed after step %d (%s): %s", fl.name, n, last, strings.Join(problems, "; "))
			}
			outcome = "FAIL"
		}
		if killed {
			outcome += "\t" + shortStep(last)
		}
		return outcome, steps, killed
	}
	// Added on the way out, so a try that stops the flow (t.Fatal) still
	// shows in the matrix with the cells done so far.
	var total int
	var cells []string
	done := false
	defer func() {
		if !done && cells != nil {
			cells = append(cells, "stopped")
		}
		m.add(fl.name, total, cells)
	}()
	o, total, _ := try(0)
	if o != "ok" || total == 0 {
		if o == "ok" {
			t.Errorf("%s: a clean run made no external step", fl.name)
		}
		return
	}
	// Past the clean run's count, go on until a run ends before its kill
	// point: a run that polls more than the clean one has later steps.
	cells = []string{}
	ns := killPoints(total, every)
	for n := ns[0]; ; {
		o, _, killed := try(n)
		cells = append(cells, fmt.Sprintf("%d\t%s", n, o))
		if n >= total && !killed {
			break
		}
		if n > 2*total+10 {
			t.Errorf("%s: still killed after step %d, and a clean run made %d steps", fl.name, n, total)
			break
		}
		if len(ns) > 1 {
			ns = ns[1:]
			n = ns[0]
		} else {
			n++
		}
	}
	done = true
}

// killPoints are 1..total, or the first, every every-th and the last.
func killPoints(total, every int) []int {
	var ns []int
	for n := 1; n <= total; n += every {
		ns = append(ns, n)
	}
	if ns[len(ns)-1] != total {
		ns = append(ns, total)
	}
	return ns
}

// faultRun runs the fault-injecting blk, killed after step n (0: never),
// and returns whether it died by SIGKILL, how many steps it made and the
// last one (host: argv).
func faultRun(t *testing.T, n int, args ...string) (r result, killed bool, steps int, last string) {
	t.Helper()
	count, err := os.CreateTemp("", "blk-fault-count-")
	if err != nil {
		t.Fatal(err)
	}
	count.Close()
	defer os.Remove(count.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := osexec.CommandContext(ctx, os.Getenv("BLK_FAULT_BIN"), args...)
	cmd.Env = append(os.Environ(), "BLK_FAULT_COUNT="+count.Name())
	if n > 0 {
		cmd.Env = append(cmd.Env, "BLK_FAULT_KILL_AFTER="+strconv.Itoa(n))
	}
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("blk %v: no end after 5 minutes", args)
	}
	var ee *osexec.ExitError
	switch {
	case errors.As(err, &ee):
		ws, _ := ee.Sys().(syscall.WaitStatus)
		killed = ws.Signaled() && ws.Signal() == syscall.SIGKILL
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("blk %v: %v", args, err)
	}
	r.out, r.errOut = out.String(), errOut.String()
	b, err := os.ReadFile(count.Name())
	if err != nil {
		t.Fatal(err)
	}
	count1, last, _ := strings.Cut(string(b), "\n")
	if steps, err = strconv.Atoi(count1); err != nil {
		t.Fatalf("BLK_FAULT_COUNT file holds %q: is BLK_FAULT_BIN built with -tags faultinject?", b)
	}
	return r, killed, steps, strings.TrimSpace(last)
}

func createFlow(st storage) flow {
	args := func(f fixture) []string {
		return append([]string{"volume", "create", f.name, "--size", "8MiB", "-o", "json"}, st.args...)
	}
	return flow{
		name: "create " + st.name,
		setup: func(t *testing.T, f *fixture) {
			f.name = uniq("crash-c")
			f.base = reality(t)
		},
		args: args,
		// The same command again finishes what the killed one began.
		recover: rerun("create again", args),
		check: func(t *testing.T, f *fixture) []string {
			r := blk(t, "volume", "show", f.name, "-o", "json")
			if r.code != 0 {
				return []string{fmt.Sprintf("show: exit %d: %s", r.code, strings.TrimSpace(r.errOut))}
			}
			v := decode[volume](t, r.out)
			f.uuid = v.UUID
			// An nfs volume is a sparse file, thin unless preallocated.
			thin := st.thin || st.nfs
			var p []string
			if v.Status != "available" || v.Thin != thin || v.Attachment != nil {
				p = append(p, fmt.Sprintf("volume is %s thin=%v attachment=%v, want available thin=%v", v.Status, v.Thin, v.Attachment, thin))
			}
			if st.nfs {
				return append(p, st.matches(t, v)...)
			}
			l, found := lvOf(t, v.UUID)
			switch {
			case !found:
				p = append(p, "no LV")
			case l.Tags != "blk,blk-name-"+v.Name+",blk-vol-"+v.UUID || l.Size != strconv.FormatInt(v.SizeBytes, 10) || thin != (l.Pool == "pool"):
				p = append(p, fmt.Sprintf("LV %+v does not match the row (%d bytes)", l, v.SizeBytes))
			}
			return p
		},
		changed: func(f fixture) ([]string, []string) {
			if f.uuid == "" {
				return nil, nil
			}
			return []string{st.key(f.uuid)}, nil
		},
		cleanup: func(t *testing.T, f fixture) { blk(t, "volume", "delete", f.name, "--yes") },
	}
}

func deleteFlow(st storage, wipe bool) flow {
	name := "delete " + st.name
	args := []string{"volume", "delete", "", "--yes"}
	if wipe {
		name += " --wipe"
		args = append(args, "--wipe")
	}
	argsOf := func(f fixture) []string { a := slices.Clone(args); a[2] = f.name; return a }
	return flow{
		name: name,
		setup: func(t *testing.T, f *fixture) {
			v := decode[volume](t, ok(t, append([]string{"volume", "create", uniq("crash-d"), "--size", "8MiB", "-o", "json"}, st.args...)...))
			f.name, f.uuid, f.path = v.Name, v.UUID, v.Path
			sh(t, "sh", "-c", "yes blk-secret | head -c 8388608 | dd of="+v.Path+" bs=1M iflag=fullblock oflag=direct conv=notrunc status=none")
			f.base = reality(t)
		},
		args: argsOf,
		// The same command again ends it, whatever the kill left.
		recover: rerun("delete again", argsOf),
		check: func(t *testing.T, f *fixture) []string {
			var p []string
			if r := blk(t, "volume", "show", f.name); r.code != 4 {
				p = append(p, fmt.Sprintf("show after delete: exit %d, want 4", r.code))
			}
			if st.exists(t, f.uuid) {
				p = append(p, st.what()+" still there")
			}
			return p
		},
		changed: func(f fixture) ([]string, []string) { return nil, []string{st.key(f.uuid)} },
	}
}

// sharedVolume makes a volume with known bytes, used by every try of
// attach or detach: each try must bring it back to available.
func sharedVolume(st storage) func(t *testing.T) fixture {
	return func(t *testing.T) fixture {
		v := decode[volume](t, ok(t, append([]string{"volume", "create", uniq("crash-a"), "--size", "8MiB", "-o", "json"}, st.args...)...))
		randomFill(t, v.Path, 0, 8)
		return fixture{name: v.Name, uuid: v.UUID, path: v.Path, sum: lvSum(t, v.Path), base: reality(t)}
	}
}

func lvSum(t *testing.T, path string) string {
	return sh(t, "sh", "-c", "dd if="+path+" bs=1M iflag=direct status=none | sha256sum")
}

// detached checks the shared volume is available again with its bytes.
func detached(t *testing.T, f *fixture) []string {
	var p []string
	a := decode[attached](t, ok(t, "volume", "show", f.name, "-o", "json"))
	if a.Status != "available" || a.Attachment != nil {
		p = append(p, fmt.Sprintf("volume is %s, attachment %+v; want available and none", a.Status, a.Attachment))
	}
	if got := lvSum(t, f.path); got != f.sum {
		p = append(p, fmt.Sprintf("data changed: sha256 %q, was %q", got, f.sum))
	}
	return p
}

// inKnownState stops the matrix when a try could not bring the shared
// volume back: every later cell would fail for that one reason.
func inKnownState(t *testing.T, f *fixture) {
	t.Helper()
	if a := decode[attached](t, ok(t, "volume", "show", f.name, "-o", "json")); a.Status != "available" {
		t.Fatalf("volume %s is %s before the try: an earlier try left it", f.name, a.Status)
	}
	if d := settledDrift(t, f.base, nil, nil); len(d) > 0 {
		t.Fatalf("before the try: %s", strings.Join(d, "; "))
	}
}

func noChange(fixture) ([]string, []string) { return nil, nil }

func finishShared(t *testing.T, f fixture) {
	blk(t, "volume", "detach", f.name, "--force")
	blk(t, "volume", "delete", f.name, "--yes")
}

var attachArgs = func(f fixture) []string {
	return []string{"volume", "attach", f.name, "--instance", "lab-vm1", "--bus", "scsi"}
}

func attachFlow(st storage) flow {
	return flow{
		name:    st.prefix() + "attach",
		prepare: sharedVolume(st),
		setup:   inKnownState,
		args:    attachArgs,
		// A killed attach is not resumed: detach --force removes what it made.
		recover: func(t *testing.T, f *fixture) []string {
			if r := blk(t, "volume", "detach", f.name, "--force"); r.code != 0 {
				return []string{fmt.Sprintf("detach --force: exit %d: %s", r.code, strings.TrimSpace(r.errOut))}
			}
			return nil
		},
		// An attach that finished is checked, then detached normally.
		undo: func(t *testing.T, f *fixture) []string {
			var p []string
			a := decode[attached](t, ok(t, "volume", "show", f.name, "-o", "json"))
			if a.Status != "in-use" || a.Attachment == nil || a.Attachment.Instance != "lab-vm1" {
				p = append(p, fmt.Sprintf("finished attach left the volume %s, attachment %+v", a.Status, a.Attachment))
			}
			now := reality(t)
			if !now["disk in live lab-vm1 serial "+f.uuid[:20]] {
				p = append(p, "finished attach: no disk in lab-vm1")
			}
			if st.nfs && !now["mount "+nfsMount] {
				p = append(p, "finished attach: nothing mounted at "+nfsMount)
			}
			if r := blk(t, "volume", "detach", f.name); r.code != 0 {
				p = append(p, fmt.Sprintf("detach: exit %d: %s", r.code, strings.TrimSpace(r.errOut)))
			}
			return p
		},
		check:   detached,
		changed: noChange,
		finish:  finishShared,
	}
}

func detachFlow(st storage) flow {
	return flow{
		name:    st.prefix() + "detach",
		prepare: sharedVolume(st),
		setup: func(t *testing.T, f *fixture) {
			inKnownState(t, f)
			ok(t, attachArgs(*f)...)
		},
		args: func(f fixture) []string { return []string{"volume", "detach", f.name} },
		// The same command again continues from the step the journal holds.
		recover: func(t *testing.T, f *fixture) []string {
			r := blk(t, "volume", "detach", f.name)
			if r.code == 0 {
				return nil
			}
			p := fmt.Sprintf("detach again: exit %d: %s", r.code, strings.TrimSpace(r.errOut))
			if rf := blk(t, "volume", "detach", f.name, "--force"); rf.code != 0 {
				p += fmt.Sprintf("; then detach --force: exit %d: %s", rf.code, strings.TrimSpace(rf.errOut))
			} else {
				p += " (detach --force then cleaned up)"
			}
			return []string{p}
		},
		check:   detached,
		changed: noChange,
		finish:  finishShared,
	}
}

var serialRE = regexp.MustCompile(`<serial>([^<]*)</serial>`)

// realityScript prints, in one round trip, each source under an @section
// line. The tools whose listing must not fail are under set -e; iscsiadm
// exits non-zero when it has nothing to list.
const realityScript = `set -e
echo @lv; lvs --noheadings -o lv_name blk
echo @target; tgtadm --lld iscsi --op show --mode target
echo @account; tgtadm --lld iscsi --op show --mode account
echo @session; iscsiadm -m session 2>/dev/null || true
echo @node; iscsiadm -m node 2>/dev/null || true
echo @link; ls /dev/disk/by-path 2>/dev/null || true
echo @live; virsh -c qemu:///system dumpxml lab-vm1
echo @persistent; virsh -c qemu:///system dumpxml --inactive lab-vm1
echo @file; ls -A /srv/blk
echo @mount; findmnt --raw --noheadings --output TARGET | grep '^/var/lib/blk/mnt/' || true
`

// reality is what the guest holds that blk makes, one key per thing: LVs
// of the blk group (volumes, snapshots, a clone's temporary snapshot), tgt
// targets and CHAP accounts, iSCSI sessions and node records, by-path links
// of iSCSI devices, disks of lab-vm1 (live and persistent) by serial, the
// files of nfs-1's export (volumes, snapshots) and the mounts under blk's
// mount root.
func reality(t *testing.T) map[string]bool {
	t.Helper()
	m, err := parseReality(sh(t, "sh", "-c", realityScript))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func parseReality(out string) (map[string]bool, error) {
	m := map[string]bool{}
	section := ""
	seen := map[string]bool{}
	var live, persistent strings.Builder
	for _, line := range strings.Split(out, "\n") {
		if s, found := strings.CutPrefix(line, "@"); found {
			section = s
			seen[s] = true
			continue
		}
		l := strings.TrimSpace(line)
		switch section {
		case "lv":
			if l != "" {
				m["lv "+l] = true
			}
		case "target":
			if rest, found := strings.CutPrefix(line, "Target "); found {
				if _, iqn, found := strings.Cut(rest, ": "); found {
					m["target "+strings.TrimSpace(iqn)] = true
				}
			}
		case "account":
			if l != "" && !strings.HasPrefix(l, "Account list") {
				m["chap account "+l] = true
			}
		case "session", "node":
			for _, f := range strings.Fields(l) {
				if strings.HasPrefix(f, "iqn.") {
					m["iscsi "+section+" "+f] = true
				}
			}
		case "link":
			if strings.Contains(l, "-iscsi-") {
				m["device link "+l] = true
			}
		case "file":
			if l != "" {
				m["file "+l] = true
			}
		case "mount":
			if l != "" {
				m["mount "+l] = true
			}
		case "live":
			live.WriteString(line + "\n")
		case "persistent":
			persistent.WriteString(line + "\n")
		}
	}
	for def, x := range map[string]string{"live": live.String(), "persistent": persistent.String()} {
		for _, s := range serialRE.FindAllStringSubmatch(x, -1) {
			m["disk in "+def+" lab-vm1 serial "+s[1]] = true
		}
	}
	// The script stops at the first listing that fails (set -e): the last
	// section is there only when every one before it is whole.
	if !strings.Contains(live.String(), "<domain") || !strings.Contains(persistent.String(), "<domain") || !seen["mount"] {
		return nil, fmt.Errorf("reality: the guest's listing is cut short:\n%s", out)
	}
	return m, nil
}

// settledDrift is drift, looked at again for a few seconds while it is not
// empty: udev removes a device link a moment after the device goes.
func settledDrift(t *testing.T, base map[string]bool, added, removed []string) []string {
	t.Helper()
	d := drift(base, reality(t), added, removed)
	for i := 0; i < 5 && len(d) > 0; i++ {
		time.Sleep(2 * time.Second)
		d = drift(base, reality(t), added, removed)
	}
	return d
}

// drift lists how now differs from base beyond what the workflow should
// have added and removed: orphans, losses, and steps not done.
func drift(base, now map[string]bool, added, removed []string) []string {
	var p []string
	for k := range now {
		if !base[k] && !slices.Contains(added, k) {
			p = append(p, "orphan "+k)
		}
	}
	for k := range base {
		if !now[k] && !slices.Contains(removed, k) {
			p = append(p, "lost "+k)
		}
	}
	for _, k := range added {
		if !now[k] {
			p = append(p, "missing "+k)
		}
	}
	for _, k := range removed {
		if now[k] {
			p = append(p, "still there: "+k)
		}
	}
	slices.Sort(p)
	return p
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// shortStep keeps a step readable in the matrix: no UUIDs, one short line.
func shortStep(s string) string {
	s = uuidRE.ReplaceAllString(s, "UUID")
	f := strings.Fields(s)
	if len(f) < 3 || len([]rune(s)) <= 90 {
		return s
	}
	// The host and program, then the end, where the object usually is.
	head := f[0] + " " + f[1] + " …"
	r := []rune(strings.Join(f[2:], " "))
	return head + string(r[max(0, len(r)-(88-len([]rune(head)))):])
}

type matrixRow struct {
	flow  string
	steps int
	cells []string
}

type matrix struct {
	mu   sync.Mutex
	rows []matrixRow
}

func (m *matrix) add(flow string, steps int, cells []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows = append(m.rows, matrixRow{flow, steps, cells})
}

// tally is how the tries of one workflow, or of all, ended.
type tally struct{ ok, done, fail int }

func (c *tally) add(o tally) { c.ok, c.done, c.fail = c.ok+o.ok, c.done+o.done, c.fail+o.fail }

func (c tally) String() string {
	return fmt.Sprintf("%d tries: %d ok, %d done, %d FAIL", c.ok+c.done+c.fail, c.ok, c.done, c.fail)
}

// tally counts a row's cells; a clean run that failed, or a flow stopped
// part-way, counts as one FAIL.
func (r matrixRow) tally() tally {
	var c tally
	if r.cells == nil {
		c.fail++
		return c
	}
	for _, cell := range r.cells {
		if cell == "stopped" {
			c.fail++
			continue
		}
		_, o, _ := strings.Cut(cell, "\t")
		o, _, _ = strings.Cut(o, "\t")
		o, _, _ = strings.Cut(o, "(")
		switch o {
		case "ok":
			c.ok++
		case "done":
			c.done++
		default:
			c.fail++
		}
	}
	return c
}

// print logs workflow × kill point → outcome, one line per kill point
// with the step it came after, then the totals of each workflow and of
// all.
func (m *matrix) print(t *testing.T) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	b.WriteString("crash matrix: kill point N (blk killed right after its Nth step), outcome, that step\n" +
		"  ok = recovered with nothing orphaned; done(K) = that run finished in K steps, not killed; FAIL = see the errors above\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, r := range m.rows {
		if r.cells == nil {
			fmt.Fprintf(tw, "  %s: clean run failed\n", r.flow)
			continue
		}
		fmt.Fprintf(tw, "  %s (a clean run: %d steps)\n", r.flow, r.steps)
		for _, c := range r.cells {
			if c == "stopped" {
				fmt.Fprintf(tw, "    stopped: the volume was left in an unknown state\n")
				continue
			}
			fmt.Fprintf(tw, "    %s\n", c)
		}
	}
	tw.Flush()
	b.WriteString(m.totals())
	t.Log(b.String())
}

// totals is one line per workflow and one for all of them.
func (m *matrix) totals() string {
	var b strings.Builder
	b.WriteString("crash matrix totals:\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	var all tally
	for _, r := range m.rows {
		c := r.tally()
		all.add(c)
		fmt.Fprintf(tw, "  %s\t%d steps\t%s\n", r.flow, r.steps, c)
	}
	fmt.Fprintf(tw, "  total\t\t%s\n", all)
	tw.Flush()
	return b.String()
}

// The harness's own parts, on the tools' real output formats: a parser that
// saw nothing would let every orphan through.
func TestCrashHarnessReadsReality(t *testing.T) {
	const uuid = "0b6f7c1e-1b7e-4f3c-9d4a-2f0e8c1a9b77"
	iqn := "iqn.2026-11.org.example.blk:" + uuid
	out := `@lv
  pool
  volume-` + uuid + `
  _snapshot-` + uuid + `
@target
Target 1: ` + iqn + `
    System information:
        Driver: iscsi
    Account information:
        blk-0b6f7c1e
    ACL information:
        iqn.2026-11.org.example.lab:compute
@account
Account list:
    blk-0b6f7c1e
@session
tcp: [3] 127.0.0.1:3260,1 ` + iqn + ` (non-flash)
@node
127.0.0.1:3260,1 ` + iqn + `
@link
ip-127.0.0.1:3260-iscsi-` + iqn + `-lun-1
virtio-pci-0000:00:04.0
@live
<domain type='qemu'><devices><disk type='block'><serial>` + uuid[:20] + `</serial></disk></devices></domain>
@persistent
<domain type='qemu'><devices></devices></domain>
@file
lost+found
snapshot-` + uuid + `
volume-` + uuid + `
@mount
/var/lib/blk/mnt/c3d66496b13fc63add30ed22b43414f5
`
	got, err := parseReality(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"lv pool", "lv volume-" + uuid, "lv _snapshot-" + uuid, "target " + iqn, "chap account blk-0b6f7c1e",
		"iscsi session " + iqn, "iscsi node " + iqn, "device link ip-127.0.0.1:3260-iscsi-" + iqn + "-lun-1",
		"disk in live lab-vm1 serial " + uuid[:20], "file lost+found", "file snapshot-" + uuid, "file volume-" + uuid,
		"mount /var/lib/blk/mnt/c3d66496b13fc63add30ed22b43414f5"}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("reality:\n got %q\nwant %q", keys, want)
	}
	for _, cut := range []string{"@persistent", "@file", "@mount"} {
		if _, err := parseReality(strings.Split(out, cut)[0]); err == nil {
			t.Errorf("a listing cut short before %s was taken", cut)
		}
	}

	base := map[string]bool{"lv pool": true, "lv volume-a": true, "target t1": true}
	now := map[string]bool{"lv pool": true, "lv volume-b": true, "target t2": true}
	d := drift(base, now, []string{"lv volume-b", "lv volume-c"}, []string{"lv volume-a"})
	if want := []string{"lost target t1", "missing lv volume-c", "orphan target t2"}; !slices.Equal(d, want) {
		t.Errorf("drift = %q, want %q", d, want)
	}
	if d := drift(base, base, nil, []string{"lv volume-a"}); !slices.Equal(d, []string{"still there: lv volume-a"}) {
		t.Errorf("drift = %q", d)
	}
	m := &matrix{}
	m.add("create thick", 5, []string{"1\tok\tlab: lvs", "3\tFAIL\tlab: lvcreate", "5\tdone(5)", "6\tdone(5)"})
	m.add("attach", 9, nil)
	m.add("detach", 12, []string{"1\tok\tlab: x", "stopped"})
	wantTotals := "crash matrix totals:\n" +
		"  create thick  5 steps   4 tries: 1 ok, 2 done, 1 FAIL\n" +
		"  attach        9 steps   1 tries: 0 ok, 0 done, 1 FAIL\n" +
		"  detach        12 steps  2 tries: 1 ok, 0 done, 1 FAIL\n" +
		"  total                   7 tries: 2 ok, 2 done, 3 FAIL\n"
	if got := m.totals(); got != wantTotals {
		t.Errorf("totals:\n%s\nwant:\n%s", got, wantTotals)
	}
	if got := killPoints(7, 3); !slices.Equal(got, []int{1, 4, 7}) {
		t.Errorf("killPoints(7, 3) = %v", got)
	}
	if got := killPoints(8, 3); !slices.Equal(got, []int{1, 4, 7, 8}) {
		t.Errorf("killPoints(8, 3) = %v", got)
	}
	long := "lab: lvs --reportformat json --units b --nosuffix -o lv_name,vg_name,lv_size,lv_tags,pool_lv,lv_attr,data_percent blk/volume-" + uuid
	if got := shortStep(long); len([]rune(got)) > 90 || !strings.HasPrefix(got, "lab: lvs …") || !strings.HasSuffix(got, " blk/volume-UUID") {
		t.Errorf("shortStep = %q", got)
	}
	if got := shortStep("lab: lvremove --yes blk/volume-" + uuid); got != "lab: lvremove --yes blk/volume-UUID" {
		t.Errorf("shortStep = %q", got)
	}
}
