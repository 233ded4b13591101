package blockcopy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// memFile is a device that records which offsets were written.
type memFile struct {
	mu     sync.Mutex
	data   []byte
	writes []int64
	synced bool
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	n := copy(p, m.data[min(off, int64(len(m.data))):])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes = append(m.writes, off)
	return copy(m.data[off:], p), nil
}

func (m *memFile) Sync() error { m.synced = true; return nil }

func TestZeroBlocksAreSkippedOnlyWhenAsked(t *testing.T) {
	size := int64(3*BlockSize + 4096) // a short last block
	src := &memFile{data: make([]byte, size)}
	copy(src.data[BlockSize+7:], "data in block 1")
	copy(src.data[3*BlockSize+1:], "tail")
	for _, skip := range []bool{true, false} {
		dst := &memFile{data: make([]byte, size)}
		var done int64
		st, err := Copy(context.Background(), dst, src, size, Options{SkipZeros: skip, Progress: func(n int64) { done += n }})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dst.data, src.data) || !dst.synced || done != size {
			t.Fatalf("skip=%v: copy differs, synced=%v, progress %d of %d", skip, dst.synced, done, size)
		}
		wantWrites := 4
		if skip {
			wantWrites = 2 // blocks 0 and 2 are all zeros
		}
		if len(dst.writes) != wantWrites || st.Written+st.Skipped != size {
			t.Errorf("skip=%v: writes at %v, stats %+v", skip, dst.writes, st)
		}
	}
}

func TestShortSourceIsAnError(t *testing.T) {
	src := &memFile{data: bytes.Repeat([]byte{1}, BlockSize+100)}
	dst := &memFile{data: make([]byte, 2*BlockSize)}
	_, err := Copy(context.Background(), dst, src, 2*BlockSize, Options{})
	if err == nil || !strings.Contains(err.Error(), "short read at byte 4194304: the source ends at 4194404") {
		t.Fatalf("err = %v", err)
	}
	if dst.synced {
		t.Error("a failed copy was synced as if done")
	}
}

func TestCancelledCopyStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	src := &memFile{data: make([]byte, 8*BlockSize)}
	dst := &memFile{data: make([]byte, 8*BlockSize)}
	if _, err := Copy(ctx, dst, src, 8*BlockSize, Options{}); !errors.Is(err, context.Canceled) || len(dst.writes) != 0 {
		t.Fatalf("err = %v, writes %v", err, dst.writes)
	}
}

// Real files: a sparse target stays sparse where the source was zeros.
func TestSparseFileStaysSparse(t *testing.T) {
	dir := t.TempDir()
	size := int64(16 * BlockSize)
	src, _ := os.Create(filepath.Join(dir, "src"))
	src.Truncate(size)
	src.WriteAt([]byte("x"), 5*BlockSize)
	dst, _ := os.Create(filepath.Join(dir, "dst"))
	dst.Truncate(size)
	if _, err := Copy(context.Background(), dst, src, size, Options{SkipZeros: true}); err != nil {
		t.Fatal(err)
	}
	fi, _ := dst.Stat()
	if blocks := allocated(fi); blocks > 2*BlockSize {
		t.Errorf("target allocates %d bytes for one written block", blocks)
	}
}

// Real files, as local copies open them: whole blocks go through O_DIRECT
// descriptors where the file system takes them, a tail that is no whole
// number of pages through the page cache; every byte arrives.
func TestFilesCopyWholeWithATail(t *testing.T) {
	dir := t.TempDir()
	size := int64(2*BlockSize + 3*4096 + 100)
	want := make([]byte, size)
	for i := range want {
		want[i] = byte(i*7 + i/4096)
	}
	srcPath, dstPath := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	if err := os.WriteFile(srcPath, want, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dstPath, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(dstPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	st, err := Copy(context.Background(), dst, src, size, Options{})
	if err != nil || st.Written != size {
		t.Fatalf("copy = %+v, %v", st, err)
	}
	got, err := os.ReadFile(dstPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("the copy differs from its source")
	}
}
