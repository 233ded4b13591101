//go:build lab

package lab

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

type snapshot struct {
	UUID        string `json:"uuid"`
	Name        string `json:"name"`
	Volume      string `json:"volume"`
	Status      string `json:"status"`
	SizeBytes   int64  `json:"size_bytes"`
	Consistency string `json:"consistency"`
	Path        string `json:"path"`
}

type sourced struct {
	volume
	Source string `json:"source"`
}

// fill writes 4MiB of a repeated word at offset MiB of path, synced.
func fill(t *testing.T, path, word string, offsetMiB int) {
	t.Helper()
	sh(t, "sh", "-c", fmt.Sprintf("yes %s | head -c 4194304 | dd of=%s bs=1M seek=%d iflag=fullblock oflag=direct conv=notrunc,fsync status=none",
		word, path, offsetMiB))
}

// sum is the sha256 of the first MiB MiB of path, read past the page cache.
func sum(t *testing.T, path string, mib int) string {
	t.Helper()
	out := sh(t, "sh", "-c", fmt.Sprintf("dd if=%s bs=1M count=%d iflag=direct status=none | sha256sum", path, mib))
	return strings.Fields(out)[0]
}

// Write A, snapshot, write B, revert: the volume reads A again. On LVM the
// merge consumes the snapshot; on NFS the snapshot stays.
func TestSnapshotRevert(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
	}{{"thick", nil}, {"thin", []string{"--thin"}}, {"nfs", []string{"--backend", "nfs-1"}}} {
		t.Run(c.name, func(t *testing.T) {
			name := uniq("rev")
			v := decode[volume](t, ok(t, append([]string{"volume", "create", name, "--size", "16MiB", "-o", "json"}, c.args...)...))
			defer blk(t, "volume", "delete", name, "--yes")
			fill(t, v.Path, "AAAA", 0)
			a := sum(t, v.Path, 16)
			sn := decode[snapshot](t, ok(t, "snapshot", "create", name, "--name", name+"-s", "-o", "json"))
			defer blk(t, "snapshot", "delete", name+"-s", "--yes")
			if sn.Status != "available" || sn.Consistency != "clean" || sn.Volume != name || sn.SizeBytes != v.SizeBytes {
				t.Errorf("snapshot = %+v", sn)
			}
			if c.name == "nfs" {
				if sn.Path != nfsDir+"/snapshot-"+sn.UUID {
					t.Errorf("snapshot file %q", sn.Path)
				}
			} else {
				tags := strings.TrimSpace(sh(t, "lvs", "--noheadings", "-o", "lv_tags", "blk/_snapshot-"+sn.UUID))
				if tags != "blk,blk-snap-"+sn.UUID+",blk-vol-"+v.UUID {
					t.Errorf("snapshot LV tags %q", tags)
				}
			}
			fill(t, v.Path, "BBBB", 0)
			fill(t, v.Path, "BBBB", 8)
			if sum(t, v.Path, 16) == a {
				t.Fatal("writing B changed nothing")
			}
			if sum(t, sn.Path, 16) != a {
				t.Error("the snapshot does not read as A")
			}
			ok(t, "snapshot", "revert", name+"-s", "--yes")
			if got := sum(t, v.Path, 16); got != a {
				t.Errorf("after revert the volume reads %s, want A's %s", got, a)
			}
			show := blk(t, "snapshot", "show", name+"-s")
			if c.name == "nfs" && show.code != 0 || c.name != "nfs" && show.code != 4 {
				t.Errorf("snapshot show after revert: exit %d", show.code)
			}
			if c.name != "nfs" {
				if l, found := lvOf(t, v.UUID); !found || l.Tags != "blk,blk-name-"+name+",blk-vol-"+v.UUID {
					t.Errorf("after the merge the LV is %+v (found %v)", l, found)
				}
			}
		})
	}
}

// Clones from a snapshot and from a volume hold the same bytes as their
// source: thin from thin (a thin snapshot), thick (a streamed copy), and
// across backends.
func TestClonesAreByteIdentical(t *testing.T) {
	for _, c := range []struct {
		name       string
		args, into []string
	}{
		{"thick", nil, nil},
		{"thin", []string{"--thin"}, nil},
		{"thin-to-nfs", []string{"--thin"}, []string{"--backend", "nfs-1"}},
		{"nfs-to-thick", []string{"--backend", "nfs-1"}, []string{"--backend", "lvm-1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := uniq("src")
			v := decode[volume](t, ok(t, append([]string{"volume", "create", name, "--size", "32MiB", "-o", "json"}, c.args...)...))
			defer blk(t, "volume", "delete", name, "--yes")
			// Data, a hole of zeros, data: the copy skips the hole on thin targets.
			fill(t, v.Path, "first", 0)
			fill(t, v.Path, "last", 24)
			want := sum(t, v.Path, 32)
			ok(t, "snapshot", "create", name, "--name", name+"-s")
			defer blk(t, "snapshot", "delete", name+"-s", "--yes")
			fill(t, v.Path, "later", 8) // after the snapshot: not in its clone
			after := sum(t, v.Path, 32)

			fromSnap := decode[sourced](t, ok(t, append([]string{"volume", "create", name + "-fs", "--from-snapshot", name + "-s", "-o", "json"}, c.into...)...))
			defer blk(t, "volume", "delete", name+"-fs", "--yes")
			fromVol := decode[sourced](t, ok(t, append([]string{"volume", "create", name + "-fv", "--from-volume", name, "--size", "64MiB", "-o", "json"}, c.into...)...))
			defer blk(t, "volume", "delete", name+"-fv", "--yes")
			if got := sum(t, fromSnap.Path, 32); got != want {
				t.Errorf("clone of the snapshot reads %s, want %s", got, want)
			}
			if got := sum(t, fromVol.Path, 32); got != after {
				t.Errorf("clone of the volume reads %s, want %s", got, after)
			}
			if !strings.HasPrefix(fromSnap.Source, "snapshot:") || fromVol.Source != "volume:"+v.UUID || fromVol.SizeBytes < 64<<20 {
				t.Errorf("sources %q %q, size %d", fromSnap.Source, fromVol.Source, fromVol.SizeBytes)
			}
			// The clone is independent: writing it leaves the source alone.
			fill(t, fromVol.Path, "clone", 0)
			if sum(t, v.Path, 32) != after {
				t.Error("writing the clone changed its source")
			}
			if shown := decode[volume](t, ok(t, "volume", "show", name, "-o", "json")); shown.Status != "available" {
				t.Errorf("source left %s", shown.Status)
			}
		})
	}
}

func TestDeleteRefusedWhileSnapshotsExist(t *testing.T) {
	name := uniq("keep")
	ok(t, "volume", "create", name, "--size", "8MiB", "--thin")
	ok(t, "snapshot", "create", name, "--name", name+"-s")
	r := blk(t, "volume", "delete", name, "--yes")
	if r.code != 3 || !strings.Contains(r.errOut, name+"-s") {
		t.Errorf("delete with a snapshot: exit %d %q", r.code, r.errOut)
	}
	ok(t, "snapshot", "delete", name+"-s", "--yes")
	ok(t, "volume", "delete", name, "--yes")
}

// lab-vm1 runs no guest agent: a snapshot of a volume it uses is taken
// crash-consistent and says so; --quiesce require takes none. An nfs volume
// in use is refused. Revert of an in-use volume is refused.
func TestInUseSnapshotWithoutAgent(t *testing.T) {
	name := uniq("busy")
	ok(t, "volume", "create", name, "--size", "8MiB", "--thin")
	defer blk(t, "volume", "delete", name, "--yes")
	ok(t, "volume", "attach", name, "--instance", "lab-vm1", "--bus", "scsi")
	defer blk(t, "volume", "detach", name)
	r := blk(t, "snapshot", "create", name, "--name", name+"-s", "-o", "json")
	if r.code != 0 || !strings.Contains(r.errOut, "crash-consistent") {
		t.Fatalf("snapshot of an in-use volume without agent: exit %d %q", r.code, r.errOut)
	}
	defer blk(t, "snapshot", "delete", name+"-s", "--yes")
	if sn := decode[snapshot](t, r.out); sn.Consistency != "crash" {
		t.Errorf("consistency %q", sn.Consistency)
	}
	if r := blk(t, "snapshot", "create", name, "--name", name+"-r", "--quiesce", "require"); r.code != 1 {
		t.Errorf("--quiesce require without agent: exit %d %q", r.code, r.errOut)
	}
	if r := blk(t, "snapshot", "show", name+"-r"); r.code != 4 {
		t.Errorf("--quiesce require left a snapshot: exit %d", r.code)
	}
	if r := blk(t, "snapshot", "revert", name+"-s", "--yes"); r.code != 3 {
		t.Errorf("revert of an in-use volume: exit %d %q", r.code, r.errOut)
	}
	if v := decode[volume](t, ok(t, "volume", "show", name, "-o", "json")); v.Status != "in-use" {
		t.Errorf("volume left %s", v.Status)
	}

	nfsName := uniq("busynfs")
	ok(t, "volume", "create", nfsName, "--size", "8MiB", "--backend", "nfs-1")
	defer blk(t, "volume", "delete", nfsName, "--yes")
	ok(t, "volume", "attach", nfsName, "--instance", "lab-vm1", "--bus", "scsi")
	defer blk(t, "volume", "detach", nfsName)
	if r := blk(t, "snapshot", "create", nfsName); r.code != 3 || !strings.Contains(r.errOut, "detach it first") {
		t.Errorf("snapshot of an in-use nfs volume: exit %d %q", r.code, r.errOut)
	}
}

// lab-vm2 with qemu-guest-agent: the snapshot is taken with its filesystems
// frozen, and they are thawed after. Skipped until the lab's guest runs the
// agent.
func TestInUseSnapshotWithAgentIsFilesystemConsistent(t *testing.T) {
	waitForKernel(t, "lab-vm2")
	// The lab starts qemu-ga in lab-vm2 once its kernel is up: an agent
	// that never answers is a failure, not a reason to skip.
	deadline := time.Now().Add(90 * time.Second)
	for {
		ping, err := guestRun("virsh", "-c", "qemu:///system", "qemu-agent-command", "lab-vm2", `{"execute":"guest-ping"}`)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lab-vm2's guest agent does not answer: %v %s", err, ping)
		}
		time.Sleep(3 * time.Second)
	}
	name := uniq("agent")
	ok(t, "volume", "create", name, "--size", "8MiB", "--thin")
	defer blk(t, "volume", "delete", name, "--yes")
	ok(t, "volume", "attach", name, "--instance", "lab-vm2")
	defer blk(t, "volume", "detach", name)
	sn := decode[snapshot](t, ok(t, "snapshot", "create", name, "--quiesce", "require", "-o", "json"))
	defer blk(t, "snapshot", "delete", sn.Name, "--yes")
	if sn.Consistency != "filesystem" {
		t.Errorf("consistency %q", sn.Consistency)
	}
	status, _ := guestRun("virsh", "-c", "qemu:///system", "qemu-agent-command", "lab-vm2", `{"execute":"guest-fsfreeze-status"}`)
	if !strings.Contains(status, "thawed") {
		t.Errorf("after the snapshot the guest is %s", status)
	}
}

// Snapshot, extend, revert: the volume reads as the snapshot and keeps the
// size it was extended to (a thin merge and an NFS copy back give it the
// snapshot's, which blk grows back).
func TestSnapshotRevertAfterExtendKeepsTheSize(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
	}{{"thick", nil}, {"thin", []string{"--thin"}}, {"nfs", []string{"--backend", "nfs-1"}}} {
		t.Run(c.name, func(t *testing.T) {
			name := uniq("rvx")
			v := decode[volume](t, ok(t, append([]string{"volume", "create", name, "--size", "16MiB", "-o", "json"}, c.args...)...))
			defer blk(t, "volume", "delete", name, "--yes")
			fill(t, v.Path, "AAAA", 0)
			a := sum(t, v.Path, 16)
			ok(t, "snapshot", "create", name, "--name", name+"-s")
			defer blk(t, "snapshot", "delete", name+"-s", "--yes")
			ok(t, "volume", "extend", name, "--size", "32MiB")
			fill(t, v.Path, "BBBB", 0)
			ok(t, "snapshot", "revert", name+"-s", "--yes")
			if got := sum(t, v.Path, 16); got != a {
				t.Errorf("after revert the volume reads %s, want A's %s", got, a)
			}
			size := []string{"blockdev", "--getsize64", v.Path}
			if c.name == "nfs" {
				size = []string{"stat", "-L", "-c", "%s", v.Path}
			}
			if got := strings.TrimSpace(sh(t, size...)); got != "33554432" {
				t.Errorf("after revert %s is %s bytes, want 32MiB", v.Path, got)
			}
			if got := decode[volume](t, ok(t, "volume", "show", name, "-o", "json")); got.SizeBytes != 32<<20 || got.Status != "available" {
				t.Errorf("after revert: %+v", got)
			}
		})
	}
}
