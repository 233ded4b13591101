package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func newRepo(t *testing.T) *Repo {
	t.Helper()
	r, err := Init(OS{}, filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// volumeData is n chunks and a partial one: random chunks, and zero chunks
// where zeros[i].
func volumeData(seed int64, zeros ...int) []byte {
	b := make([]byte, 5*ChunkSize+12345)
	rand.New(rand.NewSource(seed)).Read(b)
	for _, i := range zeros {
		clear(b[i*ChunkSize : min(len(b), (i+1)*ChunkSize)])
	}
	return b
}

// readLog is a source that records which chunks were read.
type readLog struct {
	*bytes.Reader
	mu   sync.Mutex
	offs []int64
}

func (r *readLog) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	r.offs = append(r.offs, off)
	r.mu.Unlock()
	return r.Reader.ReadAt(p, off)
}

// sink is a destination that records the chunks written.
type sink struct {
	mu     sync.Mutex
	b      []byte
	writes int
}

func (s *sink) WriteAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	copy(s.b[off:], p)
	return len(p), nil
}

func backup(t *testing.T, r *Repo, data []byte, opt Options) *Manifest {
	t.Helper()
	m, err := r.Backup(context.Background(), bytes.NewReader(data), int64(len(data)), opt)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func restore(t *testing.T, r *Repo, m *Manifest) []byte {
	t.Helper()
	s := &sink{b: make([]byte, m.SizeBytes)}
	if err := r.Restore(context.Background(), m, s, true, nil); err != nil {
		t.Fatal(err)
	}
	return s.b
}

func chunkFiles(t *testing.T, r *Repo) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(r.p("chunks"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return err
	})
	return out
}

func TestSecondIdenticalBackupStoresNothing(t *testing.T) {
	r := newRepo(t)
	data := volumeData(1)
	var last Progress
	calls := 0
	first := backup(t, r, data, Options{Volume: "db1", VolumeUUID: "v1", Progress: func(p Progress) { last = p; calls++ }})
	if calls < 6 || last != (Progress{Total: int64(len(data)), Done: int64(len(data)), Read: int64(len(data)), Stored: first.StoredBytes}) {
		t.Errorf("%d progress reports, the last %+v", calls, last)
	}
	if first.StoredBytes == 0 || first.ChunkCount != 6 || len(chunkFiles(t, r)) != 6 {
		t.Fatalf("first backup: stored %d bytes, %d chunks, %d files", first.StoredBytes, first.ChunkCount, len(chunkFiles(t, r)))
	}
	backup(t, r, data, Options{Volume: "db2", VolumeUUID: "v2"})
	if p, err := r.Latest("v1"); err != nil || p == nil || p.UUID != first.UUID {
		t.Fatalf("latest backup of v1: %v, %v", p, err)
	}
	second := backup(t, r, data, Options{Volume: "db1", VolumeUUID: "v1", Parent: first})
	if second.StoredBytes != 0 || len(chunkFiles(t, r)) != 6 {
		t.Errorf("an identical backup stored %d bytes, repository has %d chunk files", second.StoredBytes, len(chunkFiles(t, r)))
	}
	if second.Parent != first.UUID || second.ReadBytes != int64(len(data)) {
		t.Errorf("second backup: parent %q, read %d", second.Parent, second.ReadBytes)
	}
	if got := restore(t, r, second); !bytes.Equal(got, data) {
		t.Error("restore differs from the data backed up")
	}
}

func TestZeroChunksCostNothing(t *testing.T) {
	r := newRepo(t)
	data := volumeData(2, 0, 2, 3, 5)
	m := backup(t, r, data, Options{})
	if m.ChunkCount != 2 || len(chunkFiles(t, r)) != 2 {
		t.Fatalf("%d chunks recorded, %d files, want 2 of each", m.ChunkCount, len(chunkFiles(t, r)))
	}
	for _, i := range []int{0, 2, 3, 5} {
		if m.Chunks[i] != ZeroChunk {
			t.Errorf("chunk %d is %q, want the zero marker", i, m.Chunks[i])
		}
	}
	s := &sink{b: make([]byte, len(data))}
	if err := r.Restore(context.Background(), m, s, true, nil); err != nil {
		t.Fatal(err)
	}
	if s.writes != 2 || !bytes.Equal(s.b, data) {
		t.Errorf("restore to a zeroed volume made %d writes, want 2 (equal: %v)", s.writes, bytes.Equal(s.b, data))
	}
	// Onto a used volume zero chunks must be written.
	s = &sink{b: bytes.Repeat([]byte{0xff}, len(data))}
	if err := r.Restore(context.Background(), m, s, false, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.b, data) {
		t.Error("restore onto a used volume left its old data in zero chunks")
	}
}

func TestCorruptChunkFoundAndNamed(t *testing.T) {
	r := newRepo(t)
	m := backup(t, r, volumeData(3), Options{})
	bad := r.p(chunkName(m.Chunks[4]))
	b, _ := os.ReadFile(bad)
	b[len(b)/2] ^= 0x55
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Verify(ctx, m, false); err != nil {
		t.Fatalf("verify without reading data: %v", err)
	}
	err := r.Verify(ctx, m, true)
	var ce *ChunkError
	if !errors.As(err, &ce) || ce.Index != 4 || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("verify --read-data: %v, want chunk 4 corrupt", err)
	}
	err = r.Restore(ctx, m, &sink{b: make([]byte, m.SizeBytes)}, true, nil)
	if !errors.As(err, &ce) || ce.Index != 4 || !strings.Contains(err.Error(), m.Chunks[4]) {
		t.Fatalf("restore: %v, want an error naming chunk 4", err)
	}
	os.Remove(bad)
	if err := r.Verify(ctx, m, false); !errors.As(err, &ce) || ce.Index != 4 {
		t.Fatalf("verify with chunk 4 missing: %v", err)
	}
}

func TestTruncatedManifestRefused(t *testing.T) {
	r := newRepo(t)
	m := backup(t, r, volumeData(4), Options{})
	p := r.p(manifestName(m.UUID))
	b, _ := os.ReadFile(p)
	for _, cut := range []int{len(b) / 2, len(b) - 200} {
		os.WriteFile(p, b[:cut], 0o600)
		if _, err := r.Manifest(m.UUID); err == nil || !strings.Contains(err.Error(), "corrupt manifest") {
			t.Errorf("manifest cut at %d of %d: %v", cut, len(b), err)
		}
	}
	// Whole JSON, but a chunk list that does not cover the volume.
	short := *m
	short.Chunks = short.Chunks[:3]
	if err := r.writeManifest(&short); err == nil {
		t.Error("a manifest missing chunks was written")
	}
	if _, bad, _ := r.List(); bad[m.UUID] == nil {
		t.Error("list does not report the corrupt manifest")
	}
	if _, err := r.GC(false); err == nil || len(chunkFiles(t, r)) == 0 {
		t.Errorf("gc ran over an unreadable manifest: %v", err)
	}
}

func TestNewerFormatRefused(t *testing.T) {
	r := newRepo(t)
	m := backup(t, r, volumeData(5), Options{})
	mp := r.p(manifestName(m.UUID))
	b, _ := os.ReadFile(mp)
	os.WriteFile(mp, bytes.Replace(b, []byte(`"format":1`), []byte(`"format":2`), 1), 0o600)
	if _, err := r.Manifest(m.UUID); !errors.Is(err, ErrNewerFormat) {
		t.Errorf("manifest of format 2: %v", err)
	}
	os.WriteFile(r.p("config"), []byte(`{"format":2,"id":"x","chunk_size":4194304,"hash":"sha256","compression":"zstd","new":1}`), 0o600)
	_, err := Open(OS{}, r.root)
	if !errors.Is(err, ErrNewerFormat) || !strings.Contains(err.Error(), "upgrade blk") {
		t.Errorf("repository of format 2: %v", err)
	}
	if _, err := Open(OS{}, t.TempDir()); !errors.Is(err, ErrNotRepository) {
		t.Errorf("empty directory: %v", err)
	}
}

// faultFS fails the n-th file creation (or the one whose name has target)
// after writing half the data, as a kill or a full disk would.
type faultFS struct {
	OS
	mu     sync.Mutex
	n      int
	target string
}

var errInjected = errors.New("injected fault")

func (f *faultFS) CreateExcl(name string) (File, error) {
	fl, err := f.OS.CreateExcl(name)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 {
		return halfFile{fl.(*os.File)}, nil
	}
	return fl, nil
}

func (f *faultFS) Rename(oldname, newname string) error {
	if f.target != "" && strings.Contains(newname, f.target) {
		return errInjected
	}
	return f.OS.Rename(oldname, newname)
}

type halfFile struct{ *os.File }

func (h halfFile) Write(p []byte) (int, error) {
	n, _ := h.File.Write(p[:len(p)/2])
	return n, errInjected
}

func TestKilledWriteLeavesNoManifest(t *testing.T) {
	root := filepath.Join(t.TempDir(), "repo")
	if _, err := Init(OS{}, root); err != nil {
		t.Fatal(err)
	}
	data := volumeData(6)
	for _, f := range []*faultFS{{n: 3}, {target: "manifests/"}} {
		r, err := Open(f, root)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Backup(context.Background(), bytes.NewReader(data), int64(len(data)), Options{}); !errors.Is(err, errInjected) {
			t.Fatalf("backup through a failing file system: %v", err)
		}
		ms, bad, _ := r.List()
		if len(ms)+len(bad) != 0 {
			t.Fatalf("a failed backup left %d manifests", len(ms)+len(bad))
		}
		if fis, _ := os.ReadDir(filepath.Join(root, "tmp")); len(fis) != 0 {
			t.Errorf("a failed write left %d temp files", len(fis))
		}
	}
	r, _ := Open(OS{}, root)
	before := len(chunkFiles(t, r))
	m := backup(t, r, data, Options{})
	if before != 6 || m.StoredBytes != 0 {
		t.Errorf("the rerun found %d chunks of 6 and stored %d bytes, want all reused", before, m.StoredBytes)
	}
	if got := restore(t, r, m); !bytes.Equal(got, data) {
		t.Error("restore after the rerun differs")
	}
}

func TestIncrementalReadsOnlyChangedChunks(t *testing.T) {
	r := newRepo(t)
	data := volumeData(7, 1)
	base := backup(t, r, data, Options{})
	next := bytes.Clone(data)
	next[2*ChunkSize+10] ^= 1 // chunk 2
	clear(next[3*ChunkSize : 4*ChunkSize])
	copy(next[ChunkSize+5:], "hello") // chunk 1 was zero
	src := &readLog{Reader: bytes.NewReader(next)}
	changed := []Range{{2*ChunkSize + 10, 1}, {3 * ChunkSize, ChunkSize}, {ChunkSize + 5, 5}}
	m, err := r.Backup(context.Background(), src, int64(len(next)), Options{Parent: base, Changed: changed})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(src.offs); got != fmt.Sprint([]int64{ChunkSize, 2 * ChunkSize, 3 * ChunkSize}) {
		t.Errorf("read at %s, want chunks 1, 2, 3 only", got)
	}
	if !m.Incremental || m.ReadBytes != 3*ChunkSize || m.Chunks[3] != ZeroChunk || m.Chunks[0] != base.Chunks[0] {
		t.Errorf("incremental: %v, read %d bytes, chunk 3 %q", m.Incremental, m.ReadBytes, m.Chunks[3])
	}
	if got := restore(t, r, m); !bytes.Equal(got, next) {
		t.Error("restore of the incremental backup differs from the volume")
	}
	// Grown by a chunk: the old partial last chunk and the new ones are read.
	grown := append(bytes.Clone(next), volumeData(8)[:ChunkSize]...)
	src = &readLog{Reader: bytes.NewReader(grown)}
	if m, err = r.Backup(context.Background(), src, int64(len(grown)), Options{Parent: m, Changed: []Range{}}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(src.offs); got != fmt.Sprint([]int64{5 * ChunkSize, 6 * ChunkSize}) {
		t.Errorf("after growing, read at %s, want chunks 5 and 6", got)
	}
	if got := restore(t, r, m); !bytes.Equal(got, grown) {
		t.Error("restore of the grown volume differs")
	}
}

// A backup_repos path naming a directory in use (/, /var) must not become a
// repository: gc would empty its tmp/.
func TestInitRefusesADirectoryInUse(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(OS{}, root); !errors.Is(err, ErrDirInUse) {
		t.Fatalf("Init of a directory holding other files: %v, want ErrDirInUse", err)
	}
	if _, err := os.Stat(filepath.Join(root, "config")); err == nil {
		t.Error("Init wrote a config into a directory in use")
	}
	// What a killed Init leaves is taken again.
	half := filepath.Join(t.TempDir(), "repo")
	for _, d := range []string{"manifests", "tmp", "chunks/00"} {
		if err := os.MkdirAll(filepath.Join(half, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Init(OS{}, half); err != nil {
		t.Fatalf("Init after a killed Init: %v", err)
	}
}

// Changed ranges come from thin_delta's output: one that lies (negative,
// wrapping) fails the backup, not the process, and never skips a chunk.
func TestBackupRefusesChangedRangesOutOfRange(t *testing.T) {
	r := newRepo(t)
	data := volumeData(3)
	base := backup(t, r, data, Options{})
	for _, c := range []Range{{-1, 10}, {-ChunkSize * 4, ChunkSize}, {ChunkSize, math.MaxInt64}} {
		_, err := r.Backup(context.Background(), bytes.NewReader(data), int64(len(data)), Options{Parent: base, Changed: []Range{c}})
		if err == nil {
			t.Errorf("changed range %+v accepted", c)
		}
	}
}
