package lvm

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
)

func lvJSON(name, size, tags string) string {
	return `{"report":[{"lv":[{"lv_name":"` + name + `","vg_name":"blk","lv_size":"` + size + `","lv_tags":"` + tags +
		`","pool_lv":"pool","lv_attr":"Vwi-a-tz--","data_percent":"0.00"}]}]}`
}

func TestThinSnapshotIsActiveAndTagged(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect("", "lvcreate", "--yes", "--snapshot", "--name", "_snapshot-s1", "--setactivationskip", "n", "--activate", "y",
		"--addtag", "blk", "--addtag", "blk-snap-s1", "--addtag", "blk-vol-v1", "blk/volume-v1")
	f.Expect(lvJSON("_snapshot-s1", "1073741824", "blk,blk-snap-s1,blk-vol-v1"), append(lvsArgs, "blk/_snapshot-s1")...)
	lv, err := LVM{Run: f, VG: "blk"}.Snapshot(context.Background(), SnapshotOptions{Name: "_snapshot-s1", Origin: "volume-v1",
		Tags: []string{Tag, SnapshotTag("s1"), VolumeTag("v1")}})
	if err != nil || lv.SizeBytes != 1073741824 {
		t.Fatalf("lv = %+v, err = %v", lv, err)
	}
}

// A thick snapshot is given room for every block of its origin; a tag LVM
// copied from the origin is taken off, so the clone is not taken for it.
func TestThickSnapshotSizedToOriginAndForeignTagDropped(t *testing.T) {
	f := exectest.New(t, "stor1")
	origin := int64(1 << 30)
	f.Expect("", "lvcreate", "--yes", "--snapshot", "--name", "volume-v2", "--size", "1092868096b",
		"--addtag", "blk", "--addtag", "blk-vol-v2", "blk/volume-v1")
	f.Expect(lvJSON("volume-v2", "1082130432", "blk,blk-vol-v1,blk-vol-v2"), append(lvsArgs, "blk/volume-v2")...)
	f.Expect("", "lvchange", "--deltag", "blk-vol-v1", "blk/volume-v2")
	_, err := LVM{Run: f, VG: "blk"}.Snapshot(context.Background(), SnapshotOptions{Name: "volume-v2", Origin: "volume-v1",
		SizeBytes: ThickSnapshotSize(origin), Tags: []string{Tag, VolumeTag("v2")}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestMergeArgv(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect("", "lvconvert", "--yes", "--merge", "blk/_snapshot-s1")
	f.ExpectFail(5, "", `  Failed to find logical volume "blk/_snapshot-s1"`, append(lvsArgs, "blk/_snapshot-s1")...)
	f.Expect("", "lvconvert", "--yes", "--merge", "--interval", "1", "blk/_snapshot-s2")
	f.ExpectFail(5, "", `  Failed to find logical volume "blk/_snapshot-s2"`, append(lvsArgs, "blk/_snapshot-s2")...)
	l := LVM{Run: f, VG: "blk"}
	ctx := context.Background()
	if err := l.Merge(ctx, "_snapshot-s1", true); err != nil {
		t.Fatal(err)
	}
	if err := l.Merge(ctx, "_snapshot-s2", false); err != nil {
		t.Fatal(err)
	}
}

// A merge LVM deferred leaves the snapshot: said, not taken for done.
func TestDeferredMergeIsAnError(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect("  Delaying merge since origin is open.", "lvconvert", "--yes", "--merge", "blk/_snapshot-s1")
	f.Expect(lvJSON("_snapshot-s1", "1073741824", "blk"), append(lvsArgs, "blk/_snapshot-s1")...)
	err := LVM{Run: f, VG: "blk"}.Merge(context.Background(), "_snapshot-s1", true)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "deferred the merge") {
		t.Fatalf("err = %v", err)
	}
}
