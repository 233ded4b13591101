package backup

import (
	"bytes"
	"context"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/blk-project/blk/internal/directio"
)

// mixedData is compressible, random and zero chunks and a short last one,
// so stored chunks have lengths that are not whole blocks.
func mixedData() []byte {
	b := make([]byte, 6*ChunkSize+12345)
	rng := rand.New(rand.NewSource(7))
	for i := 0; i < ChunkSize; i += 64 {
		copy(b[i:], []byte("a compressible line of text, number "+string(rune('0'+rng.Intn(10)))+"\n"))
	}
	rng.Read(b[ChunkSize : 2*ChunkSize])
	// chunks 2 and 3 stay zeros
	rng.Read(b[4*ChunkSize+100 : 4*ChunkSize+5000]) // mostly zeros
	copy(b[5*ChunkSize:], b[:ChunkSize+12345])
	return b
}

func TestWriteAtomicAnyLengthAndAlignment(t *testing.T) {
	r := newRepo(t)
	src := directio.Buf(3 * directio.Align)[:3*directio.Align]
	rand.New(rand.NewSource(1)).Read(src)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"whole blocks", src[:2*directio.Align]},
		{"a tail", src[:2*directio.Align+17]},
		{"shorter than a block", src[:100]},
		{"unaligned", src[1 : 2*directio.Align+1]},
	} {
		if err := r.writeAtomic("chunks/00/"+tc.name, tc.data, false); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, err := os.ReadFile(r.p("chunks/00/" + tc.name))
		if err != nil || !bytes.Equal(got, tc.data) {
			t.Errorf("%s: read back %d bytes (want %d), %v", tc.name, len(got), len(tc.data), err)
		}
	}
	if tmp, _ := os.ReadDir(r.p("tmp")); len(tmp) != 0 {
		t.Errorf("%d files left in tmp", len(tmp))
	}
}

// Restores to a file go through an O_DIRECT descriptor: whole chunks
// directly, the short last one through the caller's.
func TestRestoreToFile(t *testing.T) {
	r := newRepo(t)
	data := mixedData()
	m := backup(t, r, data, Options{})
	if err := r.Verify(context.Background(), m, true); err != nil {
		t.Fatal(err)
	}
	for _, zeroed := range []bool{true, false} {
		name := filepath.Join(t.TempDir(), "restored")
		// Not zeroed: stale bytes everywhere, which zero chunks must overwrite.
		fill := byte(0)
		if !zeroed {
			fill = 0xaa
		}
		if err := os.WriteFile(name, bytes.Repeat([]byte{fill}, len(data)), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(name, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		var last Progress
		err = r.Restore(context.Background(), m, f, zeroed, func(p Progress) { last = p })
		f.Close()
		if err != nil {
			t.Fatalf("zeroed %v: %v", zeroed, err)
		}
		got, _ := os.ReadFile(name)
		if !bytes.Equal(got, data) {
			t.Errorf("zeroed %v: the restored file differs from the data backed up", zeroed)
		}
		if last.Done != int64(len(data)) || last.Total != int64(len(data)) || last.Read == 0 {
			t.Errorf("zeroed %v: last progress %+v", zeroed, last)
		}
	}
}
