package lvm

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/blk-project/blk/internal/exec"
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
		// The kind is for callers; the text keeps where, what and LVM's words.
		if msg := err.Error(); !strings.Contains(msg, "stor1: lvs ") || !strings.Contains(msg, strings.TrimSpace(c.stderr)) {
			t.Errorf("error text %q lacks the host, command or stderr", msg)
		}
	}
}

func lvsReport(name, size string) string {
	return `{"report":[{"lv":[{"lv_name":"` + name + `","vg_name":"blk","lv_size":"` + size +
		`","lv_tags":"blk","pool_lv":"","lv_attr":"-wi-a-----","data_percent":""}]}]}`
}

func TestCreateRoundsToSectorsTagsAndReadsBack(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect("", "lvcreate", "--yes", "--name", "volume-u", "--size", "1073742336b", "--wipesignatures", "y", "--zero", "y",
		"--addtag", "blk", "--addtag", "blk-vol-u", "blk")
	f.Expect(lvsReport("volume-u", "1077936128"), append(lvsArgs, "blk/volume-u")...)
	f.Expect("", "lvcreate", "--yes", "--name", "volume-t", "--type", "thin", "--virtualsize", "1048576b", "--thinpool", "pool",
		"--addtag", "blk", "blk")
	f.Expect(lvsReport("volume-t", "4194304"), append(lvsArgs, "blk/volume-t")...)
	l := LVM{Run: f, VG: "blk"}
	lv, err := l.Create(context.Background(), CreateOptions{Name: "volume-u", SizeBytes: 1073741825, Tags: []string{"blk", "blk-vol-u"}})
	if err != nil || lv.SizeBytes != 1077936128 {
		t.Fatalf("lv %+v, err %v: want the size LVM made", lv, err)
	}
	if _, err := l.Create(context.Background(), CreateOptions{Name: "volume-t", SizeBytes: 1 << 20, ThinPool: "pool", Tags: []string{"blk"}}); err != nil {
		t.Fatal(err)
	}
}

func TestDryRunCreatePrintsAndReturnsTheLVAsAsked(t *testing.T) {
	var out strings.Builder
	var mu sync.Mutex
	f := exectest.New(t, "stor1")
	l := LVM{Run: exec.NewDryRun(f, &out, &mu), VG: "blk"}
	lv, err := l.Create(context.Background(), CreateOptions{Name: "volume-u", SizeBytes: 1000, Tags: []string{"blk"}})
	if err != nil || lv.SizeBytes != 1024 || lv.Path() != "/dev/blk/volume-u" {
		t.Fatalf("lv %+v, err %v", lv, err)
	}
	if want := "stor1: lvcreate --yes --name volume-u --size 1024b --wipesignatures y --zero y --addtag blk blk\n"; out.String() != want {
		t.Errorf("plan %q, want %q", out.String(), want)
	}
}

func TestFitsChecksTheGroupOrThePool(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	vgs := []string{"vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,vg_size,vg_free,lv_count", "blk"}
	f.Expect(golden(t, "vgs.json"), vgs...)
	f.Expect(golden(t, "vgs.json"), vgs...)
	f.Expect(golden(t, "lvs-pool.json"), append(lvsArgs, "blk/pool")...)
	f.ExpectFail(5, "", `  Failed to find logical volume "blk/nopool"`, append(lvsArgs, "blk/nopool")...)
	l := LVM{Run: f, VG: "blk"}
	if err := l.Fits(ctx, 3208642560, ""); err != nil {
		t.Errorf("exactly the free space: %v", err)
	}
	if err := l.Fits(ctx, 3208642561, ""); !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "2.99GiB free, 2.99GiB needed (3208642560 and 3208642561 bytes)") {
		t.Errorf("one byte too many: %v", err)
	}
	if err := l.Fits(ctx, 1<<40, "pool"); err != nil {
		t.Errorf("thin over-provisioning: %v", err)
	}
	if err := l.Fits(ctx, 1, "nopool"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing pool: %v", err)
	}
}

var thinPoolArgs = []string{"lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o",
	"lv_name,lv_size,pool_lv,lv_attr,data_percent,metadata_percent", "--select", `lv_name="pool" || pool_lv="pool"`, "blk"}

func TestThinPoolSumsWhatItsLVsPromise(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect(golden(t, "lvs-thinpool.json"), thinPoolArgs...)
	p, err := LVM{Run: f, VG: "blk"}.ThinPool(context.Background(), "pool")
	if err != nil {
		t.Fatal(err)
	}
	want := Pool{SizeBytes: 4294967296, DataPercent: 12.5, MetadataPercent: 3.25, ProvisionedBytes: 12884901888, ThinCount: 2}
	if p != want {
		t.Errorf("pool = %+v, want %+v", p, want)
	}
}

func TestThinPoolMissingOrNotAPool(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect(`{"report":[{"lv":[]}]}`, thinPoolArgs...)
	if _, err := (LVM{Run: f, VG: "blk"}).ThinPool(context.Background(), "pool"); !errors.Is(err, ErrNotFound) {
		t.Errorf("no pool: err = %v, want ErrNotFound", err)
	}
	f = exectest.New(t, "stor1")
	f.Expect(`{"report":[{"lv":[{"lv_name":"pool","lv_size":"1024","pool_lv":"","lv_attr":"-wi-a-----","data_percent":"","metadata_percent":""}]}]}`, thinPoolArgs...)
	if _, err := (LVM{Run: f, VG: "blk"}).ThinPool(context.Background(), "pool"); err == nil || !strings.Contains(err.Error(), "not a thin pool") {
		t.Errorf("plain LV: err = %v", err)
	}

}

func lvReport(size string) string {
	return `{"report":[{"lv":[{"lv_name":"v","vg_name":"blk","lv_size":"` + size + `","lv_tags":"blk","pool_lv":"","lv_attr":"-wi-a-----","data_percent":""}]}]}`
}

// Extend passes whole sectors in bytes, reads back what LVM made, and
// leaves an LV that is large enough alone.
func TestExtendGrowsOnlyWhatIsSmaller(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	l := LVM{Run: f, VG: "blk"}
	f.Expect(lvReport("1073741824"), append(lvsArgs, "blk/v")...).Expect("", "lvextend", "-L", "1073742336b", "blk/v").
		Expect(lvReport("1077936128"), append(lvsArgs, "blk/v")...)
	lv, err := l.Extend(ctx, "v", 1<<30+1)
	if err != nil || lv.SizeBytes != 1077936128 {
		t.Fatalf("extend = %+v, %v", lv, err)
	}
	f.Expect(lvReport("1077936128"), append(lvsArgs, "blk/v")...)
	if lv, err = l.Extend(ctx, "v", 1<<30); err != nil || lv.SizeBytes != 1077936128 {
		t.Errorf("extend of a large enough LV = %+v, %v", lv, err)
	}
}

func lvReportAttr(size, attr string) string {
	return strings.Replace(lvReport(size), "-wi-a-----", attr, 1)
}

// LVM grows a thick snapshot's origin only while inactive ("Snapshot origin
// volumes can be resized only while inactive", seen in the lab): Extend
// deactivates it around lvextend and activates it again, also when
// lvextend fails; an open one is refused before anything changes.
func TestExtendOfAThickOriginDeactivatesItAround(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	l := LVM{Run: f, VG: "blk"}
	f.Expect(lvReportAttr("16777216", "owi-a-s---"), append(lvsArgs, "blk/v")...).
		Expect("", "lvchange", "-an", "blk/v").
		Expect("", "lvextend", "-L", "33554432b", "blk/v").
		Expect(lvReportAttr("33554432", "owi---s---"), append(lvsArgs, "blk/v")...).
		Expect("", "lvchange", "-ay", "blk/v").
		Expect(lvReportAttr("33554432", "owi-a-s---"), append(lvsArgs, "blk/v")...)
	f.InOrder([]string{"lvchange", "-an", "blk/v"}, []string{"lvextend", "-L", "33554432b", "blk/v"}, []string{"lvchange", "-ay", "blk/v"})
	if lv, err := l.Extend(ctx, "v", 32<<20); err != nil || lv.SizeBytes != 32<<20 || !lv.Active() {
		t.Fatalf("extend = %+v, %v", lv, err)
	}

	f = exectest.New(t, "stor1")
	l = LVM{Run: f, VG: "blk"}
	f.Expect(lvReportAttr("16777216", "owi-a-s---"), append(lvsArgs, "blk/v")...).
		Expect("", "lvchange", "-an", "blk/v").
		ExpectFail(5, "", "  Insufficient free space: 4 extents needed, but only 0 available", "lvextend", "-L", "33554432b", "blk/v").
		Expect("", "lvchange", "-ay", "blk/v").
		Expect(lvReportAttr("16777216", "owi-a-s---"), append(lvsArgs, "blk/v")...)
	if _, err := l.Extend(ctx, "v", 32<<20); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("failed lvextend: %v", err)
	}

	f = exectest.New(t, "stor1")
	l = LVM{Run: f, VG: "blk"}
	f.Expect(lvReportAttr("16777216", "owi-aos---"), append(lvsArgs, "blk/v")...)
	if _, err := l.Extend(ctx, "v", 32<<20); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "only while it is inactive") {
		t.Fatalf("open origin: %v", err)
	}
}

// A killed extend of a thick origin may leave it inactive: the rerun, with
// nothing left to grow, activates it.
func TestExtendActivatesAnLVLeftInactive(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	f.Expect(lvReportAttr("33554432", "owi---s---"), append(lvsArgs, "blk/v")...).Expect("", "lvchange", "-ay", "blk/v").
		Expect(lvReportAttr("33554432", "owi-a-s---"), append(lvsArgs, "blk/v")...)
	if lv, err := (LVM{Run: f, VG: "blk"}).Extend(ctx, "v", 32<<20); err != nil || lv.SizeBytes != 32<<20 || !lv.Active() {
		t.Fatalf("extend = %+v, %v", lv, err)
	}
	// Killed between lvchange -an and lvextend: the rerun grows it and
	// activates it.
	f = exectest.New(t, "stor1")
	f.Expect(lvReportAttr("16777216", "owi---s---"), append(lvsArgs, "blk/v")...).
		Expect("", "lvextend", "-L", "33554432b", "blk/v").
		Expect(lvReportAttr("33554432", "owi---s---"), append(lvsArgs, "blk/v")...).
		Expect("", "lvchange", "-ay", "blk/v").
		Expect(lvReportAttr("33554432", "owi-a-s---"), append(lvsArgs, "blk/v")...)
	if lv, err := (LVM{Run: f, VG: "blk"}).Extend(ctx, "v", 32<<20); err != nil || lv.SizeBytes != 32<<20 || !lv.Active() {
		t.Fatalf("rerun = %+v, %v", lv, err)
	}
	// An activation that fails is the extend's failure: the volume is
	// not usable.
	f = exectest.New(t, "stor1")
	f.Expect(lvReportAttr("16777216", "owi-a-s---"), append(lvsArgs, "blk/v")...).
		Expect("", "lvchange", "-an", "blk/v").Expect("", "lvextend", "-L", "33554432b", "blk/v").
		Expect(lvReportAttr("33554432", "owi---s---"), append(lvsArgs, "blk/v")...).
		ExpectFail(5, "", "  device-mapper: reload ioctl failed", "lvchange", "-ay", "blk/v")
	if lv, err := (LVM{Run: f, VG: "blk"}).Extend(ctx, "v", 32<<20); err == nil || !strings.Contains(err.Error(), "reload ioctl failed") {
		t.Fatalf("failed activation: %+v, %v", lv, err)
	}
}
