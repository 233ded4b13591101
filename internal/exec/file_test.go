package exec

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Files open over SFTP in the runner's one SSH connection, read and write
// at offsets, and are never created by opening.
func TestSSHOpenFileOverSFTP(t *testing.T) {
	cfg := realSSHD(t)
	s := NewSSH(cfg)
	defer s.Close()
	ctx := context.Background()
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	data := bytes.Repeat([]byte("blk "), 3<<20)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, make([]byte, len(data)), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := OpenFile(ctx, s, src, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := OpenFile(ctx, s, dst, true)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5<<20)
	if _, err := r.ReadAt(buf, 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(buf, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got[1<<20:6<<20], data[1<<20:6<<20]) || got[0] != 0 {
		t.Error("what was written over SFTP differs")
	}
	if s.Dials() != 1 {
		t.Errorf("%d SSH connections, want the one", s.Dials())
	}
	if _, err := OpenFile(ctx, s, filepath.Join(dir, "nope"), true); err == nil || !strings.Contains(err.Error(), "sftp open") {
		t.Errorf("opening a missing file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); err == nil {
		t.Error("opening for writing created the file")
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	var out strings.Builder
	d := NewDryRun(&Local{Name: "stor1"}, &out, &sync.Mutex{})
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("keep"), 0o600)
	f, err := OpenFile(context.Background(), d, p, true)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("gone"), 0)
	f.Close()
	if b, _ := os.ReadFile(p); string(b) != "keep" || out.String() != "stor1: write "+p+" (streamed copy)\n" {
		t.Errorf("file %q, printed %q", b, out.String())
	}
}
