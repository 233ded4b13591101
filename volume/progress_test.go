package volume

import (
	"context"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/state"
)

type labels struct{ got []string }

func (l *labels) start(label string, total int64) Progress {
	l.got = append(l.got, label)
	return noProgress{}
}

func TestWipeProgressIsLabelledWithTheVolumeName(t *testing.T) {
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	var l labels
	s.Progress = l.start
	u := "abababab-2222-3333-4444-555555555555"
	insert(t, s, "db1", u, state.Available)
	f.Expect(lvsReport(u, "1048576"), lvsOf(u)...)
	f.Expect("", "dd", "if=/dev/zero", "of=/dev/blk/volume-"+u, "bs=4M", "seek=0", "count=1048576", "iflag=count_bytes", "oflag=seek_bytes,direct", "conv=notrunc,fsync", "status=none")
	f.Expect("", "lvremove", "--yes", "blk/volume-"+u)
	if _, err := s.Delete(context.Background(), DeleteOptions{Refs: []string{"db1"}, Wipe: true}); err != nil {
		t.Fatal(err)
	}
	if len(l.got) != 1 || l.got[0] != "wipe db1" {
		t.Errorf("labels = %q", l.got)
	}
}
