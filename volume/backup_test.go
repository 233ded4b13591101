package volume

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blk-project/blk/backup"
	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/state"
)

// fakeLVM is a volume group on stor1 whose LVs are local files: enough
// LVM, dmsetup and thin_delta for backups to run end to end.
type fakeLVM struct {
	t      *testing.T
	mu     sync.Mutex
	dir    string
	lvs    map[string]*fakeLV
	files  map[string]string // device path -> local file, for fileRunner
	nextID int
	held   bool     // the pool's metadata snapshot
	ran    []string // mutating commands and thin_delta, in order
	// failDelta makes thin_delta fail once it has been reserved.
	failDelta bool
}

type fakeLV struct {
	name string
	size int64
	tags []string
	thin bool
	id   int
}

const blockBytes = 64 << 10 // the pool's data_block_size: 128 sectors

func newFakeLVM(t *testing.T) *fakeLVM {
	return &fakeLVM{t: t, dir: t.TempDir(), lvs: map[string]*fakeLV{}, files: map[string]string{}, nextID: 1}
}

func (f *fakeLVM) file(name string) string { return filepath.Join(f.dir, name) }

// add makes an LV holding data (zeros after it up to size).
func (f *fakeLVM) add(name string, size int64, thin bool, data []byte, tags ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.file(name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		f.t.Fatal(err)
	}
	f.lvs[name] = &fakeLV{name: name, size: size, tags: tags, thin: thin, id: f.nextID}
	f.nextID++
	f.files["/dev/blk/"+name] = p
}

func (f *fakeLVM) report(lvs ...*fakeLV) string {
	rows := []map[string]string{}
	for _, lv := range lvs {
		attr, pool := "-wi-a-----", ""
		if lv.thin {
			attr, pool = "Vwi-a-tz--", "pool"
		}
		rows = append(rows, map[string]string{"lv_name": lv.name, "vg_name": "blk", "lv_size": strconv.FormatInt(lv.size, 10),
			"lv_tags": strings.Join(lv.tags, ","), "pool_lv": pool, "lv_attr": attr, "data_percent": ""})
	}
	b, _ := json.Marshal(map[string]any{"report": []any{map[string]any{"lv": rows}}})
	return string(b)
}

func (f *fakeLVM) handle(args []string) (string, string, int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	last := args[len(args)-1]
	switch {
	case args[0] == "lvs" && slices.Contains(args, "lv_name,thin_id"):
		lv := f.lvs[strings.TrimPrefix(last, "blk/")]
		if lv == nil {
			return "", notFound, 5, true
		}
		return `{"report":[{"lv":[{"lv_name":"` + lv.name + `","thin_id":"` + strconv.Itoa(lv.id) + `"}]}]}`, "", 0, true
	case args[0] == "lvs" && slices.Contains(args, "--select"):
		tag := strings.TrimPrefix(args[slices.Index(args, "--select")+1], "lv_tags=")
		var out []*fakeLV
		for _, n := range slices.Sorted(maps.Keys(f.lvs)) {
			if slices.Contains(f.lvs[n].tags, tag) {
				out = append(out, f.lvs[n])
			}
		}
		return f.report(out...), "", 0, true
	case args[0] == "lvs" && last == "blk/pool":
		return poolReport, "", 0, true
	case args[0] == "lvs":
		lv := f.lvs[strings.TrimPrefix(last, "blk/")]
		if lv == nil {
			return "", notFound, 5, true
		}
		return f.report(lv), "", 0, true
	case args[0] == "vgs":
		return vgsReport("3208642560"), "", 0, true
	case args[0] == "lvcreate" && slices.Contains(args, "--snapshot"):
		origin := f.lvs[strings.TrimPrefix(last, "blk/")]
		name := args[slices.Index(args, "--name")+1]
		var tags []string
		for i, a := range args {
			if a == "--addtag" {
				tags = append(tags, args[i+1])
			}
		}
		data, err := os.ReadFile(f.file(origin.name))
		if err != nil {
			f.t.Fatal(err)
		}
		f.ran = append(f.ran, "lvcreate "+name)
		f.mu.Unlock()
		f.add(name, origin.size, origin.thin, data, tags...)
		f.mu.Lock()
		return "", "", 0, true
	case args[0] == "lvcreate":
		name := args[slices.Index(args, "--name")+1]
		i := slices.Index(args, "--virtualsize")
		if i < 0 {
			i = slices.Index(args, "--size")
		}
		size, _ := strconv.ParseInt(strings.TrimSuffix(args[i+1], "b"), 10, 64)
		var tags []string
		for i, a := range args {
			if a == "--addtag" {
				tags = append(tags, args[i+1])
			}
		}
		f.ran = append(f.ran, "lvcreate "+name)
		f.mu.Unlock()
		f.add(name, size, slices.Contains(args, "thin"), nil, tags...)
		f.mu.Lock()
		return "", "", 0, true
	case args[0] == "lvchange":
		lv := f.lvs[strings.TrimPrefix(last, "blk/")]
		for i, a := range args {
			switch a {
			case "--addtag":
				lv.tags = append(lv.tags, args[i+1])
			case "--deltag":
				lv.tags = slices.DeleteFunc(lv.tags, func(t string) bool { return t == args[i+1] })
			}
		}
		f.ran = append(f.ran, "lvchange "+lv.name)
		return "", "", 0, true
	case args[0] == "lvremove":
		name := strings.TrimPrefix(last, "blk/")
		delete(f.lvs, name)
		os.Remove(f.file(name))
		f.ran = append(f.ran, "lvremove "+name)
		return "", "", 0, true
	case args[0] == "dmsetup" && args[1] == "status":
		root := "-"
		if f.held {
			root = "42"
		}
		return "0 8388608 thin-pool 7 100/1000 200/2000 " + root + " rw discard_passdown queue_if_no_space - 1024\n", "", 0, true
	case args[0] == "dmsetup" && args[1] == "message":
		switch last {
		case "reserve_metadata_snap":
			if f.held {
				return "", "device-mapper: message ioctl failed: Device or resource busy", 1, true
			}
			f.held = true
		case "release_metadata_snap":
			f.held = false
		}
		f.ran = append(f.ran, last)
		return "", "", 0, true
	case args[0] == "thin_delta":
		f.ran = append(f.ran, "thin_delta")
		if !f.held || f.failDelta {
			return "", "thin_delta: no metadata snapshot", 1, true
		}
		a, _ := strconv.Atoi(args[slices.Index(args, "--snap1")+1])
		b, _ := strconv.Atoi(args[slices.Index(args, "--snap2")+1])
		return f.delta(a, b), "", 0, true
	}
	return "", "", 0, false
}

// delta is thin_delta's answer: the blocks whose bytes differ. (The real
// one compares mappings, which say at least that much.)
func (f *fakeLVM) delta(a, b int) string {
	var da, db []byte
	for _, lv := range f.lvs {
		if lv.id == a {
			da, _ = os.ReadFile(f.file(lv.name))
		}
		if lv.id == b {
			db, _ = os.ReadFile(f.file(lv.name))
		}
	}
	var sb strings.Builder
	sb.WriteString(`<superblock uuid="" time="1" transaction="7" data_block_size="128" nr_data_blocks="0">` + "\n")
	sb.WriteString(fmt.Sprintf(`<diff left="%d" right="%d">`+"\n", a, b))
	for i := 0; i*blockBytes < len(db); i++ {
		x, y := db[i*blockBytes:(i+1)*blockBytes], []byte(nil)
		if (i+1)*blockBytes <= len(da) {
			y = da[i*blockBytes : (i+1)*blockBytes]
		}
		if !bytes.Equal(x, y) {
			sb.WriteString(fmt.Sprintf(`<different begin="%d" length="1"/>`+"\n", i))
		}
	}
	sb.WriteString("</diff>\n</superblock>\n")
	return sb.String()
}

const bkVol = 16 << 20 // 4 chunks

// backupService is snapService with a fake volume group and a local
// repository; the volume holds data.
func backupService(t *testing.T, thin, inUse bool, data []byte) (*Service, *fakeLVM, string) {
	t.Helper()
	s, stor, hv, ev := snapService(t, thin, inUse)
	fl := newFakeLVM(t)
	stor.Handle(fl.handle)
	fl.add("volume-"+volUUID, bkVol, thin, data, "blk", "blk-vol-"+volUUID)
	st := state.Available
	if inUse {
		st = state.InUse
	}
	s.State.MoveVolume(context.Background(), volUUID, state.Move{From: []string{st}, To: st, SizeBytes: bkVol})
	fr := fileRunner{loggedRunner{stor, ev}, fl.files}
	s.Hosts.New = func(string, config.Host) exec.Runner { return fr }
	_ = hv
	repo := filepath.Join(t.TempDir(), "repo")
	s.Config.Hosts["here"] = config.Host{Local: true}
	s.Config.BackupRepos = map[string]config.BackupRepo{"r1": {Host: "here", Path: repo}}
	s.testHookUUID = ""
	return s, fl, repo
}

func randomData(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func backupLVs(fl *fakeLVM) []string {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	var out []string
	for n := range fl.lvs {
		if isBackupSnap(n) {
			out = append(out, n)
		}
	}
	return out
}

func restoreTo(t *testing.T, s *Service, repo string, m Backup) []byte {
	t.Helper()
	r, err := backup.Open(backup.OS{}, repo)
	if err != nil {
		t.Fatal(err)
	}
	man, err := r.Find(m.UUID)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := r.Restore(context.Background(), man, f, false, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(dst)
	return b
}

func TestBackupOfAThickVolumeReadsASnapshotAndRemovesIt(t *testing.T) {
	data := randomData(6 << 20) // chunks 2 and 3 are zeros
	s, fl, repo := backupService(t, false, false, data)
	b, err := s.CreateBackup(context.Background(), BackupOptions{Volume: "db1", Name: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = s.CreateBackup(context.Background(), BackupOptions{Volume: "db1", Name: "n1"}); !errors.Is(err, ErrConflict) {
		t.Errorf("a second backup named n1: %v", err)
	}
	if b.Name != "n1" || b.Volume != "db1" || b.Repo != "r1" || b.SizeBytes != bkVol || b.ReadBytes != bkVol ||
		b.ChunkCount != 2 || b.Incremental || b.Consistency != Clean || b.Status != "available" {
		t.Errorf("backup = %+v", b)
	}
	if left := backupLVs(fl); len(left) != 0 {
		t.Errorf("backup snapshots left: %v", left)
	}
	checkVolume(t, s, state.Available, 0)
	want := append(data, make([]byte, bkVol-len(data))...)
	if got := restoreTo(t, s, repo, b); !bytes.Equal(got, want) {
		t.Error("the restored backup differs from the volume")
	}
	// A second backup of a thick volume reads it all, and stores nothing.
	b2, err := s.CreateBackup(context.Background(), BackupOptions{Volume: "db1"})
	if err != nil {
		t.Fatal(err)
	}
	if b2.ReadBytes != bkVol || b2.StoredBytes != 0 || b2.Parent != b.UUID || b2.Incremental {
		t.Errorf("second backup = %+v", b2)
	}
}

// The point of a thin base: the second backup reads only the chunks
// thin_delta names, and is still complete.
func TestIncrementalBackupOfAThinVolumeReadsOnlyWhatChanged(t *testing.T) {
	data := randomData(bkVol)
	s, fl, repo := backupService(t, true, false, data)
	ctx := context.Background()
	b1, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"})
	if err != nil {
		t.Fatal(err)
	}
	bases := backupLVs(fl)
	if len(bases) != 1 || !slices.Contains(fl.lvs[bases[0]].tags, backupTag(b1.UUID)) {
		t.Fatalf("after the first backup, bases %v", bases)
	}
	// Change 100 bytes in chunk 2.
	f, _ := os.OpenFile(fl.file("volume-"+volUUID), os.O_RDWR, 0)
	f.WriteAt(bytes.Repeat([]byte{1}, 100), 2*backup.ChunkSize+12345)
	f.Close()
	fl.ran = nil
	b2, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"})
	if err != nil {
		t.Fatal(err)
	}
	if !b2.Incremental || b2.Parent != b1.UUID || b2.ReadBytes != backup.ChunkSize || len(b2.Warnings) != 0 {
		t.Errorf("incremental backup = %+v", b2)
	}
	now, _ := os.ReadFile(fl.file("volume-" + volUUID))
	if got := restoreTo(t, s, repo, b2); !bytes.Equal(got, now) {
		t.Error("the incremental backup's restore differs from the volume")
	}
	// The old base went, the new one stays; the metadata snapshot was
	// reserved for thin_delta and released.
	after := backupLVs(fl)
	if len(after) != 1 || after[0] == bases[0] || !slices.Contains(fl.lvs[after[0]].tags, backupTag(b2.UUID)) {
		t.Errorf("bases %v after the second backup (first %v)", after, bases)
	}
	if fl.held {
		t.Error("the pool's metadata snapshot is still held")
	}
	i := slices.Index(fl.ran, "reserve_metadata_snap")
	if i < 0 || i+2 >= len(fl.ran) || fl.ran[i+1] != "thin_delta" || fl.ran[i+2] != "release_metadata_snap" {
		t.Errorf("ran %v", fl.ran)
	}
	// --full reads it all again.
	b3, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1", Full: true})
	if err != nil || b3.Incremental || b3.ReadBytes != bkVol {
		t.Errorf("full backup = %+v, %v", b3, err)
	}
}

func TestBackupWithoutItsBaseReadsEverythingAndSaysSo(t *testing.T) {
	s, fl, _ := backupService(t, true, false, randomData(bkVol))
	ctx := context.Background()
	if _, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range backupLVs(fl) {
		fl.handle([]string{"lvremove", "--yes", "blk/" + n})
	}
	b, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Incremental || b.ReadBytes != bkVol || len(b.Warnings) != 1 || !strings.Contains(b.Warnings[0], "is gone") {
		t.Errorf("backup = %+v", b)
	}
}

// A killed backup may have left the pool's metadata snapshot reserved: the
// next one releases it first, and a failed thin_delta still releases its
// own.
func TestBackupReleasesAMetadataSnapshotLeftAndItsOwn(t *testing.T) {
	s, fl, _ := backupService(t, true, false, randomData(bkVol))
	ctx := context.Background()
	if _, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"}); err != nil {
		t.Fatal(err)
	}
	fl.held = true
	b, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"})
	if err != nil || !b.Incremental {
		t.Fatalf("backup = %+v, %v", b, err)
	}
	base := backupLVs(fl)
	fl.failDelta = true
	_, err = s.CreateBackup(ctx, BackupOptions{Volume: "db1"})
	if err == nil || !strings.Contains(err.Error(), "thin_delta") {
		t.Fatalf("err = %v, want thin_delta's failure", err)
	}
	if fl.held {
		t.Error("the failed backup left the metadata snapshot held")
	}
	if got := backupLVs(fl); !slices.Equal(got, base) {
		t.Errorf("bases %v after a failed backup, want the old %v only", got, base)
	}
	checkVolume(t, s, state.Available, 0)
}

func TestBackupOfAnInUseVolumeIsQuiescedAndGoesBackInUse(t *testing.T) {
	s, _, _ := backupService(t, true, true, randomData(bkVol))
	b, err := s.CreateBackup(context.Background(), BackupOptions{Volume: "db1"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Consistency != Filesystem {
		t.Errorf("consistency %q", b.Consistency)
	}
	checkVolume(t, s, state.InUse, 0)
}

func TestBackupRefusesAVolumeInTheMiddleOfSomethingElse(t *testing.T) {
	s, _, _ := backupService(t, true, false, nil)
	ctx := context.Background()
	s.State.MoveVolume(ctx, volUUID, state.Move{From: []string{state.Available}, To: state.Extending})
	_, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"})
	if !errors.Is(err, ErrConflict) {
		t.Errorf("backup of an extending volume: %v", err)
	}
}

func TestRestoreToAVolumeAndToANewOne(t *testing.T) {
	data := randomData(bkVol)
	s, fl, _ := backupService(t, true, false, data)
	ctx := context.Background()
	b, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"})
	if err != nil {
		t.Fatal(err)
	}
	// Over the volume itself, after it changed.
	f, _ := os.OpenFile(fl.file("volume-"+volUUID), os.O_RDWR, 0)
	f.WriteAt(bytes.Repeat([]byte{7}, 3<<20), 1<<20)
	f.Close()
	v, err := s.RestoreBackup(ctx, RestoreOptions{Backup: b.Name, To: "db1"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != state.Available {
		t.Errorf("volume %+v", v)
	}
	if got, _ := os.ReadFile(fl.file("volume-" + volUUID)); !bytes.Equal(got, data) {
		t.Error("restored --to differs from the backup")
	}
	// Into a new thin volume: the state file knows nothing of the backup.
	s.testHookUUID = cloneUUID
	nv, err := s.RestoreBackup(ctx, RestoreOptions{Backup: b.UUID, New: "db2", Thin: true})
	if err != nil {
		t.Fatal(err)
	}
	if nv.Source != "backup:"+b.UUID || nv.SizeBytes != bkVol || !nv.Thin || nv.Status != state.Available {
		t.Errorf("new volume %+v", nv)
	}
	if got, _ := os.ReadFile(fl.file("volume-" + cloneUUID)); !bytes.Equal(got, data) {
		t.Error("restored --new differs from the backup")
	}
}

func TestRestoreRefusesASmallerVolumeAndAFailedOneLeavesErrorRestoring(t *testing.T) {
	data := randomData(bkVol)
	s, fl, repo := backupService(t, false, false, data)
	ctx := context.Background()
	b, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"})
	if err != nil {
		t.Fatal(err)
	}
	s.State.MoveVolume(ctx, volUUID, state.Move{From: []string{state.Available}, To: state.Available, SizeBytes: bkVol - 1})
	if _, err = s.RestoreBackup(ctx, RestoreOptions{Backup: b.Name, To: "db1"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("restore into a smaller volume: %v", err)
	}
	s.State.MoveVolume(ctx, volUUID, state.Move{From: []string{state.Available}, To: state.Available, SizeBytes: bkVol})
	// A damaged chunk fails the restore part-way, naming the chunk.
	r, _ := backup.Open(backup.OS{}, repo)
	m, _ := r.Find(b.UUID)
	chunk := filepath.Join(repo, "chunks", m.Chunks[2][:2], m.Chunks[2])
	good, _ := os.ReadFile(chunk)
	os.WriteFile(chunk, []byte("garbage"), 0o600)
	_, err = s.RestoreBackup(ctx, RestoreOptions{Backup: b.Name, To: "db1"})
	if err == nil || !strings.Contains(err.Error(), m.Chunks[2]) {
		t.Errorf("restore of a damaged backup: %v", err)
	}
	checkVolume(t, s, state.ErrorRestoring, 0)
	// Repaired, the same command restores it; so does it after a run
	// killed while restoring.
	os.WriteFile(chunk, good, 0o600)
	if _, err := s.RestoreBackup(ctx, RestoreOptions{Backup: b.Name, To: "db1"}); err != nil {
		t.Fatal(err)
	}
	asDeadProcess(t, func() {
		if _, err := s.State.Claim(ctx, "restore", volUUID, []string{state.Available}, state.Restoring); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := s.RestoreBackup(ctx, RestoreOptions{Backup: b.Name, To: "db1"}); err != nil {
		t.Fatal(err)
	}
	checkVolume(t, s, state.Available, 0)
	if got, _ := os.ReadFile(fl.file("volume-" + volUUID)); !bytes.Equal(got, data) {
		t.Error("the rerun restore differs from the backup")
	}
}

// reconcile finds a backup snapshot no volume's base and a metadata
// snapshot a killed backup left, and --fix removes and releases them; the
// base of a thin volume's last backup is no drift.
func TestReconcileFindsOrphanBackupSnapshotsAndAHeldMetadataSnapshot(t *testing.T) {
	s, fl, _ := backupService(t, true, false, randomData(bkVol))
	ctx := context.Background()
	if _, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"}); err != nil {
		t.Fatal(err)
	}
	base := backupLVs(fl)
	killed := backupSnapPrefix(volUUID) + "deadbeef"
	fl.add(killed, bkVol, true, nil, "blk", "blk-vol-"+volUUID, backupBaseTag)
	gone := backupSnapPrefix("0e0e0e0e-1111-2222-3333-444455556666") + "01234567"
	fl.add(gone, bkVol, true, nil, "blk", backupBaseTag, backupTag("x"))
	fl.held = true
	compare, err := lookBackupSnaps(ctx, s, "stor1")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	drift := compare(snap)
	var got []string
	for _, d := range drift {
		got = append(got, d.Kind+" "+d.Object)
		if err := d.fix(ctx); err != nil {
			t.Error(err)
		}
	}
	want := []string{DriftOrphanBackupSnap + " blk/" + killed, DriftOrphanBackupSnap + " blk/" + gone, DriftHeldMetadataSnap + " blk/pool"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("drift %q, want %q", got, want)
	}
	if left := backupLVs(fl); !slices.Equal(left, base) || fl.held {
		t.Errorf("after --fix: backup snapshots %v (want %v), metadata snapshot held %v", left, base, fl.held)
	}
}

// A thin volume's backup base is blk's: delete removes it with the volume
// (no "has snapshots" refusal), and snapshot list never shows it.
func TestDeleteRemovesAThinVolumesBackupBase(t *testing.T) {
	s, fl, _ := backupService(t, true, false, randomData(bkVol))
	ctx := context.Background()
	if _, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"}); err != nil {
		t.Fatal(err)
	}
	if sns, err := s.ListSnapshots(ctx, ""); err != nil || len(sns) != 0 {
		t.Errorf("snapshot list: %v, %v", sns, err)
	}
	if _, err := s.Delete(ctx, DeleteOptions{Refs: []string{"db1"}}); err != nil {
		t.Fatal(err)
	}
	if left := backupLVs(fl); len(left) != 0 {
		t.Errorf("backup snapshots left: %v", left)
	}
	if _, ok := fl.lvs["volume-"+volUUID]; ok {
		t.Error("the volume's LV is still there")
	}
}

// A backup killed mid-way left the volume backing-up, its snapshot and the
// pool's metadata snapshot: the rerun takes the volume over, releases the
// metadata snapshot, removes the leftover, and the volume is in-use again;
// the stale lock on the pool is taken over too.
func TestBackupRerunTakesOverAKilledOne(t *testing.T) {
	s, fl, _ := backupService(t, true, true, randomData(bkVol))
	ctx := context.Background()
	b1, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"})
	if err != nil {
		t.Fatal(err)
	}
	base := backupLVs(fl)
	asDeadProcess(t, func() {
		if _, err = s.State.Claim(ctx, "backup", volUUID, []string{state.InUse}, state.BackingUp); err != nil {
			t.Fatal(err)
		}
		if _, err = s.State.Lock(ctx, "thin_delta", poolObject("stor1", "blk", "pool")); err != nil {
			t.Fatal(err)
		}
	})
	left := backupSnapPrefix(volUUID) + "deadbeef"
	fl.add(left, bkVol, true, nil, "blk", "blk-vol-"+volUUID, backupBaseTag)
	fl.held = true
	b2, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"})
	if err != nil {
		t.Fatal(err)
	}
	if !b2.Incremental || b2.Parent != b1.UUID {
		t.Errorf("rerun backup = %+v", b2)
	}
	checkVolume(t, s, state.InUse, 0)
	if got := backupLVs(fl); len(got) != 1 || got[0] == base[0] || got[0] == left || fl.held {
		t.Errorf("after the rerun: backup snapshots %v (first base %v), metadata snapshot held %v", got, base, fl.held)
	}
}

// An available nfs volume is read as it is (held backing-up, nothing can
// attach it), with no copy; an in-use one is refused.
func TestBackupOfAnNFSVolume(t *testing.T) {
	s, stor, _ := nfsService(t, nil, newFakeHV("web1"))
	ctx := context.Background()
	data := randomData(5 << 20)
	fr := fileRunner{stor, map[string]string{}}
	device(t, fr, "/srv/blk/volume-"+volUUID, 8<<20, data)
	s.Hosts.New = func(string, config.Host) exec.Runner { return fr }
	s.State.MoveVolume(ctx, volUUID, state.Move{From: []string{state.Available}, To: state.Available, SizeBytes: 8 << 20})
	repo := filepath.Join(t.TempDir(), "repo")
	s.Config.Hosts["here"] = config.Host{Local: true}
	s.Config.BackupRepos = map[string]config.BackupRepo{"r1": {Host: "here", Path: repo}}
	b, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"})
	if err != nil {
		t.Fatal(err)
	}
	if b.ReadBytes != 8<<20 || b.ChunkCount != 2 || b.Consistency != Clean {
		t.Errorf("backup = %+v", b)
	}
	if got := restoreTo(t, s, repo, b); !bytes.Equal(got, append(data, make([]byte, 3<<20)...)) {
		t.Error("the restored backup differs from the volume")
	}
	checkVolume(t, s, state.Available, 0)
	s.State.MoveVolume(ctx, volUUID, state.Move{From: []string{state.Available}, To: state.InUse})
	if _, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"}); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "detach it first") {
		t.Errorf("backup of an in-use nfs volume: %v", err)
	}
}

// A volume a restore left part-written can be deleted.
func TestAVolumeLeftErrorRestoringCanBeDeleted(t *testing.T) {
	s, _, _ := backupService(t, true, false, nil)
	ctx := context.Background()
	s.State.MoveVolume(ctx, volUUID, state.Move{From: []string{state.Available}, To: state.ErrorRestoring})
	if _, err := s.Delete(ctx, DeleteOptions{Refs: []string{"db1"}}); err != nil {
		t.Fatal(err)
	}
}

// cancelAfter is a runner whose context ends (Ctrl-C) once a command
// starting with word has run.
type cancelAfter struct {
	fileRunner
	word   string
	cancel func()
}

func (c cancelAfter) Run(ctx context.Context, cmd exec.Cmd) (exec.Result, error) {
	res, err := c.fileRunner.Run(ctx, cmd)
	if cmd.Args[0] == c.word {
		c.cancel()
	}
	return res, err
}

// Ctrl-C after the backup is complete, while it tidies, still gives the
// volume back: it must not stay backing-up.
func TestBackupInterruptedWhileTidyingGivesTheVolumeBack(t *testing.T) {
	s, _, _ := backupService(t, false, false, randomData(bkVol))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fr := s.Hosts.New("stor1", config.Host{}).(fileRunner)
	s.Hosts.New = func(string, config.Host) exec.Runner { return cancelAfter{fr, "lvremove", cancel} }
	if _, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"}); err != nil {
		t.Errorf("a complete backup interrupted while tidying: %v", err)
	}
	checkVolume(t, s, state.Available, 0)
}

// lostAnswer runs a command holding word, then says it failed: the
// connection dropped after the host did it.
type lostAnswer struct {
	fileRunner
	word string
}

func (l lostAnswer) Run(ctx context.Context, cmd exec.Cmd) (exec.Result, error) {
	res, err := l.fileRunner.Run(ctx, cmd)
	if err == nil && slices.Contains(cmd.Args, l.word) {
		return res, exec.NewError("stor1", cmd, -1, nil, exec.ErrConnLost)
	}
	return res, err
}

// A reserve whose answer was lost may have reserved it: the pool's one
// metadata snapshot is released all the same.
func TestBackupReleasesAMetadataSnapshotWhoseReserveFailed(t *testing.T) {
	s, fl, _ := backupService(t, true, false, randomData(bkVol))
	ctx := context.Background()
	fr := s.Hosts.New("stor1", config.Host{}).(fileRunner)
	s.Hosts.New = func(string, config.Host) exec.Runner { return lostAnswer{fr, "reserve_metadata_snap"} }
	if _, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"}); err != nil {
		t.Fatal(err) // the first has no parent: no thin_delta
	}
	if _, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"}); err == nil {
		t.Fatal("backup whose reserve failed succeeded")
	}
	if fl.held {
		t.Error("the failed reserve left the pool's metadata snapshot held")
	}
	checkVolume(t, s, state.Available, 0)
}

// Reconcile --fix acts after it looked: a backup that started meanwhile
// holds the pool's metadata snapshot for its thin_delta (released under
// it, thin_delta would read freed metadata), and a killed run's snapshot
// may have become a volume's base. Both are left alone.
func TestReconcileFixLeavesWhatABackupTookSinceItLooked(t *testing.T) {
	s, fl, _ := backupService(t, true, false, randomData(bkVol))
	ctx := context.Background()
	unbased := backupSnapPrefix(volUUID) + "deadbeef"
	fl.add(unbased, bkVol, true, nil, "blk", "blk-vol-"+volUUID, backupBaseTag)
	fl.held = true
	compare, err := lookBackupSnaps(ctx, s, "stor1")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Since: a backup of another volume of the pool is at its thin_delta,
	// and the killed run's snapshot was made a base.
	op, err := s.State.Lock(ctx, "thin_delta", poolObject("stor1", "blk", "pool"))
	if err != nil {
		t.Fatal(err)
	}
	defer op.End(ctx, nil)
	fl.mu.Lock()
	fl.lvs[unbased].tags = append(fl.lvs[unbased].tags, backupTag("0f0f0f0f-1111-2222-3333-444455556666"))
	fl.mu.Unlock()
	for _, d := range compare(snap) {
		if err := d.fix(ctx); err == nil && d.Kind == DriftHeldMetadataSnap {
			t.Errorf("%s fixed while a backup holds the pool", d.Kind)
		}
	}
	if !fl.held {
		t.Error("--fix released the metadata snapshot a running backup holds")
	}
	if left := backupLVs(fl); !slices.Contains(left, unbased) {
		t.Errorf("--fix removed %s, a base now", unbased)
	}
}

// A backup killed between freeze and thaw left the volume backing-up and
// maybe its guest frozen: reconcile --fix, putting the volume back, thaws
// the guest first, as a rerun of the backup would.
func TestReconcileFixOfAKilledBackupThawsTheGuest(t *testing.T) {
	s, _, _, ev := snapService(t, true, true)
	ctx := context.Background()
	op, err := s.State.Claim(ctx, "backup", volUUID, []string{state.InUse}, state.BackingUp)
	if err != nil {
		t.Fatal(err)
	}
	op.End(ctx, errors.New("killed"))
	v, _ := s.State.Volume(ctx, volUUID)
	if err := resumers[state.BackingUp].run(ctx, s, v); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ev.log, []string{"fsthaw"}) {
		t.Errorf("ran %v, want the guest thawed", ev.log)
	}
	checkVolume(t, s, state.InUse, 0)
}

// One thin_delta per pool at a time: a backup waits for the pool's lock
// (poolLockWait at most), and takes it once the holder lets go.
func TestPoolLockWaitsForItsHolder(t *testing.T) {
	ctx := context.Background()
	s, _, _ := backupService(t, true, false, nil)
	b := s.Config.Backends["lvm-1"]
	release, err := s.lockPool(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	setGlobal(t, &poolLockWait, 10*time.Millisecond)
	if _, err = s.lockPool(ctx, b); !errors.Is(err, ErrConflict) {
		t.Fatalf("a held pool: %v", err)
	}
	setGlobal(t, &poolLockWait, 10*time.Second)
	time.AfterFunc(50*time.Millisecond, release)
	start := time.Now()
	again, err := s.lockPool(ctx, b)
	if err != nil {
		t.Fatalf("after the holder let go: %v (%v)", err, time.Since(start))
	}
	again()
}
