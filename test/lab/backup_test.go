//go:build lab

package lab

import (
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The lab's configs name one repository, lab: /var/lib/blk-backups in the
// guest (over SFTP when blk runs on this machine), the default.

type backupJSON struct {
	UUID        string `json:"uuid"`
	Name        string `json:"name"`
	Volume      string `json:"volume"`
	Repo        string `json:"repo"`
	Status      string `json:"status"`
	SizeBytes   int64  `json:"size_bytes"`
	ReadBytes   int64  `json:"read_bytes"`
	StoredBytes int64  `json:"stored_bytes"`
	ChunkCount  int    `json:"chunk_count"`
	Parent      string `json:"parent"`
	Incremental bool   `json:"incremental"`
	Consistency string `json:"consistency"`
}

const chunk = 4 << 20

// backupLeftovers are the backup snapshots of a volume beyond its one
// base (thin) or any (thick), and whether the pool holds a metadata
// snapshot.
func backupLeftovers(t *testing.T, uuid string, thin bool) []string {
	t.Helper()
	var out []string
	lvs := strings.Fields(sh(t, "lvs", "--noheadings", "-o", "lv_name", "blk"))
	var snaps []string
	for _, n := range lvs {
		if strings.HasPrefix(n, "_backup-"+uuid+"-") {
			snaps = append(snaps, n)
		}
	}
	if want := map[bool]int{false: 0, true: 1}[thin]; len(snaps) > want {
		out = append(out, fmt.Sprintf("backup snapshots %v", snaps))
	}
	if f := strings.Fields(sh(t, "dmsetup", "status", "blk-pool-tpool")); len(f) < 7 || f[6] != "-" {
		out = append(out, "the pool's metadata snapshot is held: "+strings.Join(f, " "))
	}
	return append(out, reconciled(t)...)
}

// randomFill writes mib MiB of random bytes at offset MiB of path.
func randomFill(t *testing.T, path string, offsetMiB, mib int) {
	t.Helper()
	sh(t, "sh", "-c", fmt.Sprintf("head -c %d /dev/urandom | dd of=%s bs=1M seek=%d iflag=fullblock oflag=direct conv=notrunc,fsync status=none",
		mib<<20, path, offsetMiB))
}

// A backup of a volume lab-vm1 uses while its blocks are being rewritten
// (by a writer on the storage host: lab-vm1 runs no guest agent, so the
// backup is crash-consistent and says so); once the writer stops, a restore
// into a new volume reads as the volume. The volume is in-use again after.
func TestBackupOfAnInUseVolumeWhileItIsWritten(t *testing.T) {
	name := uniq("bkuse")
	v := decode[volume](t, ok(t, "volume", "create", name, "--size", "64MiB", "--thin", "-o", "json"))
	defer blk(t, "volume", "delete", name, "--yes")
	randomFill(t, v.Path, 0, 64)
	ok(t, "volume", "attach", name, "--instance", "lab-vm1", "--bus", "scsi")
	defer blk(t, "volume", "detach", name)
	// The writer rewrites MiB 16..31 with the same bytes, so what the
	// volume holds once it stops does not depend on when the snapshot was
	// taken.
	stop := "/tmp/" + name + ".stop"
	sh(t, "sh", "-c", fmt.Sprintf("dd if=%s of=/tmp/%s.b bs=1M skip=16 count=16 iflag=direct status=none; "+
		"( while [ ! -e %s ]; do dd if=/tmp/%s.b of=%s bs=1M seek=16 oflag=direct conv=notrunc,fsync status=none; done; rm -f %s /tmp/%s.b ) "+
		"</dev/null >/dev/null 2>&1 &", v.Path, name, stop, name, v.Path, stop, name))
	defer sh(t, "touch", stop)
	time.Sleep(time.Second)
	r := blk(t, "backup", "create", name, "--name", name+"-b", "-o", "json")
	if r.code != 0 || !strings.Contains(r.errOut, "crash-consistent") {
		t.Fatalf("backup of an in-use volume: exit %d %q", r.code, r.errOut)
	}
	b := decode[backupJSON](t, r.out)
	defer blk(t, "backup", "delete", b.UUID, "--yes")
	if b.Consistency != "crash" || b.Volume != name || b.Repo != "lab" || b.SizeBytes != v.SizeBytes || b.Incremental || b.Status != "available" {
		t.Errorf("backup = %+v", b)
	}
	if got := decode[volume](t, ok(t, "volume", "show", name, "-o", "json")); got.Status != "in-use" {
		t.Errorf("after the backup the volume is %s", got.Status)
	}
	sh(t, "touch", stop)
	for i := 0; i < 50 && strings.TrimSpace(sh(t, "sh", "-c", "ls "+stop+" 2>/dev/null; true")) != ""; i++ {
		time.Sleep(200 * time.Millisecond)
	}
	restored := decode[volume](t, ok(t, "backup", "restore", b.UUID, "--new", name+"-r", "--thin", "-o", "json"))
	defer blk(t, "volume", "delete", name+"-r", "--yes")
	if got, want := sum(t, restored.Path, 64), sum(t, v.Path, 64); got != want {
		t.Errorf("the restore reads %s, the volume %s", got, want)
	}
	if left := backupLeftovers(t, v.UUID, true); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	ok(t, "backup", "verify", b.UUID, "--read-data")
}

// After 1% of a thin volume changed, the next backup reads only the chunks
// thin_delta names (at most twice the changed bytes rounded up to chunks),
// and its restore is the whole volume. Then the source volume is deleted,
// and the state file lost: the repository alone lists and restores it.
func TestIncrementalBackupReadsWhatChangedAndOutlivesItsVolume(t *testing.T) {
	name := uniq("bkinc")
	const mib = 96 // small: over SSH each full backup and restore crosses the connection
	v := decode[volume](t, ok(t, "volume", "create", name, "--size", fmt.Sprintf("%dMiB", mib), "--thin", "-o", "json"))
	deleted := false
	defer func() {
		if !deleted {
			blk(t, "volume", "delete", name, "--yes")
		}
	}()
	randomFill(t, v.Path, 0, mib)
	full := decode[backupJSON](t, ok(t, "backup", "create", name, "-o", "json"))
	defer blk(t, "backup", "delete", full.UUID, "--yes")
	if full.ReadBytes != v.SizeBytes || full.Incremental {
		t.Errorf("first backup = %+v", full)
	}
	// About 1%: three writes of 256 KiB, each inside one chunk, spread out.
	changedChunks := 0
	for i := 0; i < 3; i++ {
		off := i * 24 // MiB, inside chunk 6*i
		sh(t, "sh", "-c", fmt.Sprintf("head -c 262144 /dev/urandom | dd of=%s bs=256K seek=%d iflag=fullblock oflag=direct conv=notrunc,fsync status=none",
			v.Path, off*4))
		changedChunks++
	}
	inc := decode[backupJSON](t, ok(t, "backup", "create", name, "-o", "json"))
	defer blk(t, "backup", "delete", inc.UUID, "--yes")
	limit := int64(2 * changedChunks * chunk)
	if !inc.Incremental || inc.Parent != full.UUID || inc.ReadBytes > limit || inc.ReadBytes == 0 {
		t.Errorf("incremental backup = %+v, want incremental from %s reading at most %d bytes", inc, full.UUID, limit)
	}
	t.Logf("incremental backup read %d bytes after %d changed chunks (full: %d)", inc.ReadBytes, changedChunks, full.ReadBytes)
	want := sum(t, v.Path, mib)
	r1 := decode[volume](t, ok(t, "backup", "restore", inc.UUID, "--new", name+"-r1", "-o", "json"))
	defer blk(t, "volume", "delete", name+"-r1", "--yes")
	if got := sum(t, r1.Path, mib); got != want {
		t.Errorf("the incremental backup restores as %s, the volume reads %s", got, want)
	}
	if left := backupLeftovers(t, v.UUID, true); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}

	// The volume goes, its base snapshot with it; the backups stay.
	ok(t, "volume", "delete", name, "--yes")
	deleted = true
	if left := backupLeftovers(t, v.UUID, false); len(left) > 0 {
		t.Errorf("after the volume's delete: %v", left)
	}
	r2 := decode[volume](t, ok(t, "backup", "restore", inc.Name, "--new", name+"-r2", "--thin", "-o", "json"))
	defer blk(t, "volume", "delete", name+"-r2", "--yes")
	if got := sum(t, r2.Path, mib); got != want {
		t.Errorf("after the volume's delete the backup restores as %s, want %s", got, want)
	}

	// A fresh state file: blk knows nothing but the config.
	fresh := filepath.Join(t.TempDir(), "fresh.db")
	list := decode[[]backupJSON](t, ok(t, "--state", fresh, "backup", "list", name, "-o", "json"))
	if len(list) != 2 || list[0].UUID != full.UUID || list[1].UUID != inc.UUID {
		t.Errorf("backup list with a fresh state file: %+v", list)
	}
	r3 := decode[volume](t, ok(t, "--state", fresh, "backup", "restore", inc.UUID, "--new", name+"-r3", "--thin", "-o", "json"))
	defer blk(t, "--state", fresh, "volume", "delete", name+"-r3", "--yes")
	if got := sum(t, r3.Path, mib); got != want {
		t.Errorf("with a fresh state file the backup restores as %s, want %s", got, want)
	}
}

// blk killed (SIGKILL) after each step of a backup and of a restore, and
// once in the middle of reading or writing data: the same command run again
// succeeds, the backup verifies, the restore reads as the backup, and no
// backup snapshot or metadata snapshot is left.
func TestBackupAndRestoreSurviveKill9(t *testing.T) {
	if os.Getenv("BLK_FAULT_BIN") == "" {
		t.Fatal("needs BLK_FAULT_BIN, blk built with -tags faultinject: run it with make lab-test")
	}
	// A matrix of its own, about ten minutes over SSH: with the crash
	// matrix's other long parts, only with BLK_CRASH_ALL (make check, CI,
	// leaves it out).
	if os.Getenv("BLK_CRASH_ALL") == "" {
		t.Skip("BLK_CRASH_ALL unset")
	}
	every := 1
	if s := os.Getenv("BLK_CRASH_EVERY"); s != "" {
		fmt.Sscan(s, &every)
	}
	for _, thin := range []bool{false, true} {
		kind := map[bool]string{false: "thick", true: "thin"}[thin]
		t.Run(kind, func(t *testing.T) {
			name := uniq("bkkill")
			args := []string{"volume", "create", name, "--size", "64MiB", "-o", "json"}
			if thin {
				args = append(args, "--thin")
			}
			v := decode[volume](t, ok(t, args...))
			defer blk(t, "volume", "delete", name, "--yes")
			defer deleteBackupsOf(t, name)
			randomFill(t, v.Path, 0, 64)
			want := sum(t, v.Path, 64)
			// A clean run counts the steps; with a base kept, the
			// second backup of a thin volume runs thin_delta.
			ok(t, "backup", "create", name)
			_, _, steps, _ := faultRun(t, 0, "backup", "create", name)
			// Reruns take no --name: a run killed after its manifest
			// finished its backup, and a second one of that name would
			// be refused.
			for _, n := range killPoints(steps, every) {
				_, killed, _, last := faultRun(t, n, "backup", "create", name)
				if !killed {
					continue
				}
				r := blk(t, "backup", "create", name, "-o", "json")
				if r.code != 0 {
					t.Errorf("backup killed after step %d (%s), rerun: exit %d %s", n, last, r.code, r.errOut)
					continue
				}
				b := decode[backupJSON](t, r.out)
				if r := blk(t, "backup", "verify", b.UUID, "--read-data"); r.code != 0 {
					t.Errorf("backup killed after step %d (%s), rerun: verify: %s", n, last, r.errOut)
				}
				if left := backupLeftovers(t, v.UUID, thin); len(left) > 0 {
					t.Errorf("backup killed after step %d (%s), rerun: left %v", n, last, left)
				}
			}
			// Killed while the data streams.
			// (Inside the guest it may finish first: no --name, so the
			// rerun is no duplicate.)
			killMidway(t, "backup", "create", name)
			b := decode[backupJSON](t, ok(t, "backup", "create", name, "-o", "json"))
			ok(t, "backup", "verify", b.UUID, "--read-data")
			if left := backupLeftovers(t, v.UUID, thin); len(left) > 0 {
				t.Errorf("backup killed midway, rerun: left %v", left)
			}

			// Restore into a second volume, killed at each step and midway.
			target := name + "-t"
			tv := decode[volume](t, ok(t, "volume", "create", target, "--size", "64MiB", "-o", "json"))
			defer blk(t, "volume", "delete", target, "--yes")
			restore := []string{"backup", "restore", b.UUID, "--to", target}
			_, _, steps, _ = faultRun(t, 0, restore...)
			// A restore's data moves over SFTP or local files, no kill
			// point: it may have no step at all.
			points := []int{-1}
			if steps > 0 {
				points = append(killPoints(steps, every), -1)
			}
			for _, n := range points {
				sh(t, "sh", "-c", "dd if=/dev/zero of="+tv.Path+" bs=1M count=64 oflag=direct status=none")
				last := "midway"
				if n < 0 {
					killMidway(t, restore...)
				} else {
					var killed bool
					if _, killed, _, last = faultRun(t, n, restore...); !killed {
						continue
					}
				}
				if r := blk(t, restore...); r.code != 0 {
					t.Errorf("restore killed after step %d (%s), rerun: exit %d %s", n, last, r.code, r.errOut)
					continue
				}
				if got := sum(t, tv.Path, 64); got != want {
					t.Errorf("restore killed after step %d (%s), rerun: the volume reads %s, want %s", n, last, got, want)
				}
				if st := decode[volume](t, ok(t, "volume", "show", target, "-o", "json")).Status; st != "available" {
					t.Errorf("restore killed after step %d (%s), rerun: volume %s", n, last, st)
				}
				if p := reconciled(t); len(p) > 0 {
					t.Errorf("restore killed after step %d (%s), rerun: %s", n, last, strings.Join(p, "; "))
				}
			}
		})
	}
}

// deleteBackupsOf deletes every backup of a volume from the repository.
func deleteBackupsOf(t *testing.T, volume string) {
	t.Helper()
	for _, b := range decode[[]backupJSON](t, ok(t, "backup", "list", volume, "-o", "json")) {
		blk(t, "backup", "delete", b.UUID, "--yes")
	}
}

// killMidway starts blk and SIGKILLs it once it has run a second: in the
// middle of its data on a 64MiB volume over SSH, or after it inside the
// guest (the rerun must then be a no-op success).
func killMidway(t *testing.T, args ...string) {
	t.Helper()
	cmd := osexec.Command(os.Getenv("BLK_BIN"), args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	cmd.Process.Kill()
	cmd.Wait()
}
