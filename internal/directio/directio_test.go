package directio

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A file on a disk file system gets an O_DIRECT descriptor; whole aligned
// blocks go through it, an unaligned tail or buffer through the file
// itself, and every byte reads back either way.
func TestDirectAndBufferedMeet(t *testing.T) {
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "f"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := Reopen(f, true)
	if d == nil {
		t.Skip("this file system refuses O_DIRECT")
	}
	defer d.Close()
	if !usable(d, Buf(2 * Align)[:2*Align], Align) {
		t.Fatal("an aligned buffer at an aligned offset is not written directly")
	}
	block := Buf(2 * Align)[:2*Align]
	for i := range block {
		block[i] = byte(i % 251)
	}
	tail := []byte("a tail no block long")
	if _, err = WriteAt(d, f, block, 0); err != nil {
		t.Fatal(err)
	}
	if _, err = WriteAt(d, f, tail, int64(len(block))); err != nil {
		t.Fatal(err)
	}
	r := Reopen(f, false)
	if r == nil {
		t.Fatal("no O_DIRECT reader")
	}
	defer r.Close()
	got := Buf(2 * Align)[:2*Align]
	if _, err = ReadAt(r, f, got, 0); err != nil || !bytes.Equal(got, block) {
		t.Fatalf("direct read back: %v", err)
	}
	gotTail := make([]byte, len(tail))
	if _, err = ReadAt(r, f, gotTail, int64(len(block))); err != nil || !bytes.Equal(gotTail, tail) {
		t.Fatalf("tail read back %q: %v", gotTail, err)
	}
	if usable(d, block[1:Align+1], 0) || usable(d, block, 512) || usable(nil, block, 0) {
		t.Error("an unaligned buffer or offset, or no descriptor, taken for direct")
	}
}
