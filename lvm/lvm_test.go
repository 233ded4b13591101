package lvm

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
)

func golden(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var lvsArgs = []string{"lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", lvFields}

func TestTaggedParsesRealReport(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect(golden(t, "lvs-tagged.json"), append(lvsArgs, "--select", "lv_tags=blk", "blk")...)
	lvs, err := LVM{Run: f, VG: "blk"}.Tagged(context.Background(), Tag)
	if err != nil {
		t.Fatal(err)
	}
	if len(lvs) != 1 {
		t.Fatalf("got %d LVs, want 1", len(lvs))
	}
	lv := lvs[0]
	if lv.SizeBytes != 2147483648 || lv.Pool != "pool" || lv.Path() != "/dev/blk/volume-aaaaaaaa-2222-3333-4444-555555555555" {
		t.Errorf("lv = %+v", lv)
	}
	if len(lv.Tags) != 2 || lv.Tags[1] != VolumeTag("aaaaaaaa-2222-3333-4444-555555555555") {
		t.Errorf("tags = %q", lv.Tags)
	}
}

func TestGroupParsesRealReport(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect(golden(t, "vgs.json"), "vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,vg_size,vg_free,lv_count", "blk")
	vg, err := LVM{Run: f, VG: "blk"}.Group(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if vg != (VG{Name: "blk", SizeBytes: 8585740288, FreeBytes: 3208642560, LVCount: 3}) {
		t.Errorf("vg = %+v", vg)
	}
}

func TestPoolDataPercent(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect(golden(t, "lvs-pool.json"), append(lvsArgs, "blk/pool")...)
	lv, err := LVM{Run: f, VG: "blk"}.LV(context.Background(), "pool")
	if err != nil || lv.SizeBytes != 4294967296 || lv.Attr[0] != 't' {
		t.Fatalf("lv = %+v, err = %v", lv, err)
	}
}

// Messages as LVM prints them under LC_ALL=C, captured in the lab.
func TestKnownFailuresAreTyped(t *testing.T) {
	cases := []struct {
		stderr string
		want   error
	}{
		{`  Failed to find logical volume "blk/nope"`, ErrNotFound},
		{`  Volume group "blk" has insufficient free space (765 extents): 25600 required.`, ErrNoSpace},
		{`  Logical Volume "x" already exists in volume group "blk"`, ErrExists},
		{`  Logical volume blk/x in use.`, ErrInUse},
	}
	for _, c := range cases {
		f := exectest.New(t, "stor1")
		f.ExpectFail(5, "", c.stderr, append(lvsArgs, "blk/x")...)
		_, err := LVM{Run: f, VG: "blk"}.LV(context.Background(), "x")
		if !errors.Is(err, c.want) {
			t.Errorf("%q: err = %v, want %v", c.stderr, err, c.want)
		}
		if err != nil && err.Error() == "" {
			t.Errorf("empty error text")
		}
	}
}

func TestCreateRoundsToSectorsAndTags(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect("", "lvcreate", "--yes", "--name", "volume-u", "--size", "1073742336b", "--wipesignatures", "y", "--zero", "y",
		"--addtag", "blk", "--addtag", "blk-vol-u", "blk")
	f.Expect("", "lvcreate", "--yes", "--name", "volume-t", "--type", "thin", "--virtualsize", "1048576b", "--thinpool", "pool",
		"--addtag", "blk", "blk")
	l := LVM{Run: f, VG: "blk"}
	if err := l.Create(context.Background(), CreateOptions{Name: "volume-u", SizeBytes: 1073741825, Tags: []string{"blk", "blk-vol-u"}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Create(context.Background(), CreateOptions{Name: "volume-t", SizeBytes: 1 << 20, ThinPool: "pool", Tags: []string{"blk"}}); err != nil {
		t.Fatal(err)
	}
}
