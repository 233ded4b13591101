package exec

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/blk-project/blk/backup"
)

// memFile is a volume in memory, read and written at offsets.
type memFile struct{ b []byte }

func (m *memFile) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m.b[off:]), nil }
func (m *memFile) WriteAt(p []byte, off int64) (int, error) { return copy(m.b[off:], p), nil }

// A repository on a host reached over SSH is written and read through SFTP
// in the runner's one connection, by a real sshd's internal-sftp: the
// rename, fsync and exclusive-create extensions the repository needs are
// there.
func TestRepositoryOverSFTP(t *testing.T) {
	cfg := realSSHD(t)
	s := NewSSH(cfg)
	defer s.Close()
	ctx := context.Background()
	c, err := SFTP(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	root := filepath.Join(t.TempDir(), "repo")
	fsys := backup.SFTP{C: c}
	r, err := backup.Init(fsys, root)
	if err != nil {
		t.Fatal(err)
	}
	// 3 chunks and a bit: random, zeros, the random chunk again, a tail.
	src := make([]byte, 3*backup.ChunkSize+4096)
	rand.Read(src[:backup.ChunkSize])
	copy(src[2*backup.ChunkSize:], src[:backup.ChunkSize])
	rand.Read(src[3*backup.ChunkSize:])
	l, err := r.Lock(backup.Shared, "backup")
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Backup(ctx, &memFile{src}, int64(len(src)), backup.Options{Volume: "db1", VolumeUUID: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if m.ChunkCount != 3 || m.Chunks[1] != backup.ZeroChunk {
		t.Errorf("manifest: %d chunks, chunk 1 %q", m.ChunkCount, m.Chunks[1])
	}
	if err = l.Unlock(); err != nil {
		t.Fatal(err)
	}
	// Opened again, as the next blk would.
	r, err = backup.Open(fsys, root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Find(m.UUID)
	if err != nil {
		t.Fatal(err)
	}
	dst := &memFile{bytes.Repeat([]byte{0xee}, len(src))}
	if err := r.Restore(ctx, got, dst, false, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.b, src) {
		t.Error("the restore differs from the source")
	}
	if err := r.Verify(ctx, got, true); err != nil {
		t.Error(err)
	}
	// sshd wrote the same files the local file system sees.
	if _, err := os.Stat(filepath.Join(root, "manifests", m.UUID+".json")); err != nil {
		t.Error(err)
	}
	if locks, _ := os.ReadDir(filepath.Join(root, "locks")); len(locks) != 0 {
		t.Errorf("locks left: %d", len(locks))
	}
	// Private, as a local repository: the chunks are volumes' data.
	for _, d := range []string{root, filepath.Join(root, "chunks"), filepath.Join(root, "chunks", "ab")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want 0700", d, fi.Mode(), err)
		}
	}
}
