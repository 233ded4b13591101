//go:build lab

package lab

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// The crash matrix's flows of the workflows past create, delete, attach and
// detach: snapshots, revert, extend, clones and images, on each kind of
// storage they apply to. Each try has a volume of its own (a few MiB of
// random bytes), so a try that goes wrong leaves nothing the next one
// trips on; a clone's source is shared, and checked before each try.

// storage is where a flow's volume lives.
type storage struct {
	name      string
	args      []string // volume create's flags for it
	thin, nfs bool
}

var (
	lvThick = storage{name: "thick"}
	lvThin  = storage{name: "thin", args: []string{"--thin"}, thin: true}
	nfsFile = storage{name: "nfs", args: []string{"--backend", "nfs-1"}, nfs: true}
)

// prefix starts the matrix's name of a flow on nfs-1; the LVM flows had
// their names before nfs-1 had any.
func (s storage) prefix() string {
	if s.nfs {
		return "nfs "
	}
	return ""
}

func (s storage) what() string {
	if s.nfs {
		return "file"
	}
	return "LV"
}

// key is reality's key of a volume's LV or file, snapKey of a snapshot's.
func (s storage) key(uuid string) string {
	if s.nfs {
		return "file volume-" + uuid
	}
	return "lv volume-" + uuid
}

func (s storage) snapKey(uuid string) string {
	if s.nfs {
		return "file snapshot-" + uuid
	}
	return "lv _snapshot-" + uuid
}

// size reads a volume's LV or file: its bytes, and whether there is one.
func (s storage) size(t *testing.T, uuid string) (int64, bool) {
	t.Helper()
	if s.nfs {
		size, _, found := fileOf(t, uuid)
		return size, found
	}
	l, found := lvOf(t, uuid)
	if !found {
		return 0, false
	}
	n, err := strconv.ParseInt(l.Size, 10, 64)
	if err != nil {
		t.Fatalf("lvs says LV %s is %q bytes", l.Name, l.Size)
	}
	return n, true
}

func (s storage) exists(t *testing.T, uuid string) bool {
	_, found := s.size(t, uuid)
	return found
}

// matches checks a volume's LV or file is there, as large as its row says.
func (s storage) matches(t *testing.T, v volume) []string {
	size, found := s.size(t, v.UUID)
	switch {
	case !found:
		return []string{fmt.Sprintf("volume %s has no %s", v.Name, s.what())}
	case size != v.SizeBytes:
		return []string{fmt.Sprintf("the %s of volume %s is %d bytes, its row says %d", s.what(), v.Name, size, v.SizeBytes)}
	}
	return nil
}

// rerun is the recovery of a workflow whose rerun finishes what a killed
// run began: the same command again.
func rerun(what string, args func(fixture) []string) func(*testing.T, *fixture) []string {
	return func(t *testing.T, f *fixture) []string {
		if r := blk(t, args(*f)...); r.code != 0 {
			return []string{fmt.Sprintf("%s: exit %d: %s", what, r.code, strings.TrimSpace(r.errOut))}
		}
		return nil
	}
}

// inStatus checks a volume has that status, no attachment unless in use,
// and storage as large as its row; it returns the row.
func inStatus(t *testing.T, st storage, name, status string) (volume, []string) {
	t.Helper()
	r := blk(t, "volume", "show", name, "-o", "json")
	if r.code != 0 {
		return volume{}, []string{fmt.Sprintf("volume show %s: exit %d: %s", name, r.code, strings.TrimSpace(r.errOut))}
	}
	v := decode[volume](t, r.out)
	var p []string
	if v.Status != status || (v.Attachment != nil) != (status == "in-use") {
		p = append(p, fmt.Sprintf("volume %s is %s, attachment %v; want %s", name, v.Status, v.Attachment, status))
	}
	return v, append(p, st.matches(t, v)...)
}

// intact checks the first mib MiB of path still read as want.
func intact(t *testing.T, what, path string, mib int, want string) []string {
	if got := sum(t, path, mib); got != want {
		return []string{fmt.Sprintf("%s reads sha256 %s, want %s", what, got, want)}
	}
	return nil
}

// newVolume makes a try's own 8 MiB volume of random bytes into f.
func newVolume(t *testing.T, st storage, prefix string, f *fixture) {
	t.Helper()
	v := decode[volume](t, ok(t, append([]string{"volume", "create", uniq(prefix), "--size", "8MiB", "-o", "json"}, st.args...)...))
	randomFill(t, v.Path, 0, 8)
	f.name, f.uuid, f.path, f.sum = v.Name, v.UUID, v.Path, sum(t, v.Path, 8)
}

// removeVolume removes a try's volume and its snapshots. One it cannot
// remove stops the flow: every later try's reconcile would report it.
func removeVolume(t *testing.T, name string) {
	t.Helper()
	remove := func() bool {
		if r := blk(t, "snapshot", "list", name, "-o", "json"); r.code == 0 {
			for _, sn := range decode[[]snapshot](t, r.out) {
				blk(t, "snapshot", "delete", sn.UUID, "--yes")
			}
		}
		r := blk(t, "volume", "delete", name, "--yes")
		return r.code == 0 || r.code == 4
	}
	if remove() {
		return
	}
	// A try that failed may have left it held, or its snapshot half made.
	blk(t, "reconcile", "--fix")
	if !remove() {
		t.Fatalf("volume %s cannot be removed after the try: every later try would find it", name)
	}
}

func removeTry(t *testing.T, f fixture) { removeVolume(t, f.name) }

// showSnapshot reads a snapshot's row; code is blk's exit code (4: none).
func showSnapshot(t *testing.T, name string) (sn snapshot, code int, problem []string) {
	t.Helper()
	r := blk(t, "snapshot", "show", name, "-o", "json")
	switch r.code {
	case 0:
		return decode[snapshot](t, r.out), 0, nil
	case 4:
		return snapshot{}, 4, nil
	}
	return snapshot{}, r.code, []string{fmt.Sprintf("snapshot show %s: exit %d: %s", name, r.code, strings.TrimSpace(r.errOut))}
}

func snapshotCreateFlow(st storage) flow {
	args := func(f fixture) []string {
		return []string{"snapshot", "create", f.name, "--name", f.snap, "-o", "json"}
	}
	return flow{
		name: "snapshot create " + st.name,
		setup: func(t *testing.T, f *fixture) {
			newVolume(t, st, "crash-sc", f)
			f.snap = f.name + "-s"
			f.base = reality(t)
		},
		args: args,
		// The same command, with the same --name, finishes the snapshot
		// the killed run began.
		recover: rerun("snapshot create again", args),
		check: func(t *testing.T, f *fixture) []string {
			_, p := inStatus(t, st, f.name, "available")
			p = append(p, intact(t, "the volume", f.path, 8, f.sum)...)
			sn, code, sp := showSnapshot(t, f.snap)
			if code != 0 {
				return append(p, append(sp, "no snapshot "+f.snap)...)
			}
			f.snapUUID = sn.UUID
			if sn.Status != "available" || sn.Consistency != "clean" || sn.Volume != f.name {
				p = append(p, fmt.Sprintf("snapshot %s is %s, %s, of %q; want available, clean, of %s", sn.Name, sn.Status, sn.Consistency, sn.Volume, f.name))
			}
			return append(p, intact(t, "the snapshot", sn.Path, 8, f.sum)...)
		},
		changed: func(f fixture) ([]string, []string) {
			if f.snapUUID == "" {
				return nil, nil
			}
			return []string{st.snapKey(f.snapUUID)}, nil
		},
		cleanup: removeTry,
	}
}

// withSnapshot makes a try's volume and a snapshot of it.
func withSnapshot(t *testing.T, st storage, prefix string, f *fixture) {
	t.Helper()
	newVolume(t, st, prefix, f)
	f.snap = f.name + "-s"
	f.snapUUID = decode[snapshot](t, ok(t, "snapshot", "create", f.name, "--name", f.snap, "-o", "json")).UUID
}

func snapshotDeleteFlow(st storage) flow {
	args := func(f fixture) []string { return []string{"snapshot", "delete", f.snap, "--yes"} }
	return flow{
		name: "snapshot delete " + st.name,
		setup: func(t *testing.T, f *fixture) {
			withSnapshot(t, st, "crash-sd", f)
			f.base = reality(t)
		},
		args:    args,
		recover: rerun("snapshot delete again", args),
		check: func(t *testing.T, f *fixture) []string {
			_, p := inStatus(t, st, f.name, "available")
			p = append(p, intact(t, "the volume", f.path, 8, f.sum)...)
			_, code, sp := showSnapshot(t, f.snap)
			p = append(p, sp...)
			if code == 0 {
				p = append(p, "snapshot "+f.snap+" still has its row")
			}
			return p
		},
		changed: func(f fixture) ([]string, []string) { return nil, []string{st.snapKey(f.snapUUID)} },
		cleanup: removeTry,
	}
}

// revertFlow: the volume is written over after its snapshot, then reverted.
// Recovered, it reads as the snapshot (the revert finished) or as before
// (it was rolled back), nothing else, and is available. An LVM revert
// merges the snapshot, which is then gone; an NFS one copies it back and
// keeps it.
func revertFlow(st storage) flow {
	args := func(f fixture) []string { return []string{"snapshot", "revert", f.snap, "--yes"} }
	return flow{
		name: "snapshot revert " + st.name,
		setup: func(t *testing.T, f *fixture) {
			withSnapshot(t, st, "crash-sr", f)
			randomFill(t, f.path, 0, 8)
			if f.before = sum(t, f.path, 8); f.before == f.sum {
				t.Fatal("writing the volume over changed nothing: the flow would prove nothing")
			}
			f.base = reality(t)
		},
		args:    args,
		recover: rerun("snapshot revert again", args),
		// A revert that ran to its end has nothing to roll back: the
		// volume reads as the snapshot.
		undo: func(t *testing.T, f *fixture) []string {
			return intact(t, "after a finished revert the volume", f.path, 8, f.sum)
		},
		check: func(t *testing.T, f *fixture) []string {
			_, p := inStatus(t, st, f.name, "available")
			switch got := sum(t, f.path, 8); got {
			case f.sum:
				f.reverted = true
			case f.before:
				f.reverted = false
			default:
				p = append(p, fmt.Sprintf("the volume reads sha256 %s: neither the snapshot's %s nor its own before the revert, %s", got, f.sum, f.before))
			}
			sn, code, sp := showSnapshot(t, f.snap)
			p = append(p, sp...)
			switch {
			case f.reverted && !st.nfs:
				if code != 4 {
					p = append(p, fmt.Sprintf("reverted, the merged snapshot %s still has its row (%s)", f.snap, sn.Status))
				}
			case code != 0:
				p = append(p, "snapshot "+f.snap+" is gone, and the volume was not merged with it")
			case sn.Status != "available":
				p = append(p, fmt.Sprintf("snapshot %s is %s, want available", f.snap, sn.Status))
			default:
				p = append(p, intact(t, "the snapshot", sn.Path, 8, f.sum)...)
			}
			return p
		},
		changed: func(f fixture) ([]string, []string) {
			if f.reverted && !st.nfs {
				return nil, []string{st.snapKey(f.snapUUID)}
			}
			return nil, nil
		},
		cleanup: removeTry,
	}
}

// extendFlow grows an available 8 MiB volume to 16 MiB; recovered, its row
// and its storage agree on a size of at least that, and the first 8 MiB
// are the bytes written before.
func extendFlow(st storage) flow {
	args := func(f fixture) []string { return []string{"volume", "extend", f.name, "--size", "16MiB", "-o", "json"} }
	return flow{
		name: "extend " + st.name,
		setup: func(t *testing.T, f *fixture) {
			newVolume(t, st, "crash-e", f)
			f.base = reality(t)
		},
		args: args,
		// The same extend again looks at each step and does what is left.
		recover: rerun("extend again", args),
		check: func(t *testing.T, f *fixture) []string {
			v, p := inStatus(t, st, f.name, "available")
			if v.SizeBytes < 16<<20 {
				p = append(p, fmt.Sprintf("volume %s is %d bytes, want at least %d", f.name, v.SizeBytes, 16<<20))
			}
			return append(p, intact(t, "the volume", f.path, 8, f.sum)...)
		},
		changed: noChange,
		cleanup: removeTry,
	}
}

// cloneFlow makes a volume from a shared source: an available volume, a
// snapshot of one (written over after it), or a volume in use by lab-vm1
// (copied through a temporary snapshot named after the clone). Recovered,
// the clone is available and reads as what it copied, or it is gone with
// nothing of it left; the source is as it was.
func cloneFlow(st storage, from string) flow {
	args := func(f fixture) []string {
		if from == "snapshot" {
			return []string{"volume", "create", f.name, "--from-snapshot", f.src.snap, "-o", "json"}
		}
		return []string{"volume", "create", f.name, "--from-volume", f.src.name, "-o", "json"}
	}
	srcStatus := "available"
	if from == "in-use" {
		srcStatus = "in-use"
	}
	return flow{
		name: "clone from " + from + " " + st.name,
		prepare: func(t *testing.T) fixture {
			src := &fixture{}
			newVolume(t, st, "crash-src", src)
			f := fixture{src: src, sum: src.sum}
			switch from {
			case "snapshot":
				src.snap = src.name + "-s"
				ok(t, "snapshot", "create", src.name, "--name", src.snap)
				// Written after the snapshot: the source keeps it, the
				// clone must not have it.
				randomFill(t, src.path, 0, 8)
				src.sum = sum(t, src.path, 8)
			case "in-use":
				ok(t, attachArgs(*src)...)
			}
			src.base = reality(t)
			f.base = src.base
			return f
		},
		setup: func(t *testing.T, f *fixture) {
			if v := decode[volume](t, ok(t, "volume", "show", f.src.name, "-o", "json")); v.Status != srcStatus {
				t.Fatalf("source %s is %s before the try, want %s: an earlier try left it", f.src.name, v.Status, srcStatus)
			}
			if d := settledDrift(t, f.base, nil, nil); len(d) > 0 {
				t.Fatalf("before the try: %s", strings.Join(d, "; "))
			}
			f.name = uniq("crash-k")
		},
		args: args,
		// The same command again finishes the copy the killed run began.
		recover: rerun("create again", args),
		undo:    finished,
		check: func(t *testing.T, f *fixture) []string {
			_, p := inStatus(t, st, f.src.name, srcStatus)
			p = append(p, intact(t, "the source", f.src.path, 8, f.src.sum)...)
			if f.src.snap != "" {
				if sn, code, sp := showSnapshot(t, f.src.snap); code != 0 || sn.Status != "available" {
					p = append(p, append(sp, fmt.Sprintf("the source's snapshot is %q (exit %d), want available", sn.Status, code))...)
				}
			}
			return append(p, madeOrGone(t, st, f, 8)...)
		},
		changed: madeVolume(st),
		cleanup: removeTry,
		finish: func(t *testing.T, f fixture) {
			if from == "in-use" {
				blk(t, "volume", "detach", f.src.name, "--force")
			}
			removeVolume(t, f.src.name)
		},
	}
}

// madeOrGone checks a volume made from a source: available, thin when st
// is, its first mib MiB reading f.sum; or it has no row. It fills f.uuid
// when there is one.
func madeOrGone(t *testing.T, st storage, f *fixture, mib int) []string {
	t.Helper()
	if r := blk(t, "volume", "show", f.name); r.code == 4 {
		f.uuid = ""
		return nil // reality and reconcile say whether anything of it is left
	}
	v, p := inStatus(t, st, f.name, "available")
	f.uuid = v.UUID
	if v.UUID == "" {
		return p
	}
	if v.Thin != (st.thin || st.nfs) {
		p = append(p, fmt.Sprintf("volume %s thin=%v, want %v", f.name, v.Thin, st.thin || st.nfs))
	}
	return append(p, intact(t, "volume "+f.name, v.Path, mib, f.sum)...)
}

// finished checks a create that ran to its end left its volume: check
// also takes one that is gone, as a killed create may be rolled back.
func finished(t *testing.T, f *fixture) []string {
	if r := blk(t, "volume", "show", f.name); r.code != 0 {
		return []string{fmt.Sprintf("after a finished create, volume show %s: exit %d: %s", f.name, r.code, strings.TrimSpace(r.errOut))}
	}
	return nil
}

func madeVolume(st storage) func(fixture) ([]string, []string) {
	return func(f fixture) ([]string, []string) {
		if f.uuid == "" {
			return nil, nil
		}
		return []string{st.key(f.uuid)}, nil
	}
}

// bootImage is the lab's 1 MiB raw image (lab/guest-init.sh).
const bootImage = "/run/blk-images/boot.raw"

func imageFlow(st storage) flow {
	args := func(f fixture) []string {
		return append([]string{"volume", "create", f.name, "--from-image", bootImage, "--image-format", "raw", "-o", "json"}, st.args...)
	}
	return flow{
		name: "create from image " + st.name,
		prepare: func(t *testing.T) fixture {
			// Read through the page cache: /run is a tmpfs.
			out := sh(t, "sh", "-c", "head -c 1048576 "+bootImage+" | sha256sum")
			return fixture{sum: strings.Fields(out)[0]}
		},
		setup: func(t *testing.T, f *fixture) {
			f.name = uniq("crash-i")
			f.base = reality(t)
		},
		args: args,
		// The same command again finishes the create, writing the image
		// again over what the killed run wrote.
		recover: rerun("create again", args),
		undo:    finished,
		check: func(t *testing.T, f *fixture) []string {
			return madeOrGone(t, st, f, 1)
		},
		changed: madeVolume(st),
		cleanup: removeTry,
	}
}
