package lvm

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/internal/fault"
)

var ctx = context.Background()

func TestPVsParsesRealReport(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect(golden(t, "pvs.json"), "pvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "pv_name,vg_name,pv_size,pv_free")
	pvs, err := LVM{Run: f}.PVs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []PV{{"/dev/loop0", "bitest", 1069547520, 1069547520}, {"/dev/vdb", "", 8589934592, 8589934592}}
	if !slices.Equal(pvs, want) {
		t.Errorf("pvs = %+v", pvs)
	}
}

func TestDetailReadsExtentAndTags(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect(`{"report":[{"vg":[{"vg_name":"bitest","vg_size":"1069547520","vg_free":"1069547520","lv_count":"0","vg_extent_size":"4194304","vg_tags":"blk"}]}]}`,
		"vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,vg_size,vg_free,lv_count,vg_extent_size,vg_tags", "bitest")
	d, err := LVM{Run: f, VG: "bitest"}.Detail(ctx)
	if err != nil || d.ExtentBytes != 4<<20 || d.SizeBytes != 1069547520 || !slices.Equal(d.Tags, []string{"blk"}) {
		t.Fatalf("detail = %+v, %v", d, err)
	}
}

func TestPlanThinPoolAsLVMWould(t *testing.T) {
	for _, c := range []struct {
		budget    int64
		want      ThinPool
		wantError bool
	}{
		// Small: the metadata minimum (2MiB) rounded to an extent, twice (spare).
		{1 << 30, ThinPool{DataBytes: 1<<30 - 8<<20, MetadataBytes: 4 << 20, ChunkBytes: 64 << 10}, false},
		// Large: chunks double until the metadata fits 128MiB.
		{10 << 40, ThinPool{DataBytes: 10<<40 - 160<<20, MetadataBytes: 80 << 20, ChunkBytes: 8 << 20}, false},
		{8 << 20, ThinPool{}, true},
	} {
		got, err := PlanThinPool(c.budget, 4<<20)
		if (err != nil) != c.wantError || got != c.want {
			t.Errorf("PlanThinPool(%d) = %+v, %v; want %+v", c.budget, got, err, c.want)
		}
		if c.wantError && !errors.Is(err, ErrNoSpace) {
			t.Errorf("error %v is not ErrNoSpace", err)
		}
	}
}

func TestCreateThinPoolArgv(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect("", "lvcreate", "--yes", "--type", "thin-pool", "--name", "pool", "--size", "1065353216b", "--chunksize", "64k",
		"--poolmetadatasize", "4194304b", "--poolmetadataspare", "y", "--addtag", "blk", "bitest")
	p := ThinPool{DataBytes: 1065353216, MetadataBytes: 4 << 20, ChunkBytes: 64 << 10}
	if err := (LVM{Run: f, VG: "bitest"}).CreateThinPool(ctx, "pool", p); err != nil {
		t.Fatal(err)
	}
}

func TestPVOfAnotherGroupIsInUse(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.ExpectFail(5, "", "  Physical volume '/dev/loop0' is already in volume group 'bitest'\n  Unable to add physical volume '/dev/loop0' to volume group 'bitest'\n",
		"vgextend", "other", "/dev/loop0")
	f.ExpectFail(5, "", "  Can't initialize physical volume \"/dev/loop0\" of volume group \"bitest\" without -ff\n", "pvcreate", "--yes", "/dev/loop0")
	l := LVM{Run: f, VG: "other"}
	if _, err := l.ExtendGroup(ctx, GroupDetail{}, []PV{{Name: "/dev/loop0"}}); !errors.Is(err, ErrInUse) {
		t.Errorf("vgextend: %v", err)
	}
	if err := l.CreatePV(ctx, "/dev/loop0"); !errors.Is(err, ErrInUse) {
		t.Errorf("pvcreate: %v", err)
	}
}

func TestProbeDeviceNamesWhatItHolds(t *testing.T) {
	f := exectest.New(t, "stor1")
	lsblk := []string{"lsblk", "--json", "--bytes", "--paths", "--output", "NAME,TYPE,SIZE,MOUNTPOINT"}
	f.Expect(`{"blockdevices":[{"name":"/dev/vdb","type":"disk","size":8589934592,"mountpoint":null,
		"children":[{"name":"/dev/vdb1","type":"part","size":1048576,"mountpoint":null}]}]}`, append(lsblk, "/dev/disk/by-id/virtio-data")...)
	f.Expect(golden(t, "wipefs-ext4.json"), "wipefs", "--no-act", "--json", "/dev/vdb")
	d, err := ProbeDevice(ctx, f, "/dev/disk/by-id/virtio-data")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"partitions or devices on top of it (/dev/vdb1)", "an ext4 signature at offset 0x438"}
	if d.Name != "/dev/vdb" || d.SizeBytes != 8<<30 || !slices.Equal(d.Holds(), want) {
		t.Errorf("device %+v holds %q", d, d.Holds())
	}

	f.Expect(`{"blockdevices":[{"name":"/dev/loop0","type":"loop","size":67108864,"mountpoint":null}]}`, append(lsblk, "/dev/loop0")...)
	f.Expect("{\n   \"signatures\": [\n\n   ]\n}\n", "wipefs", "--no-act", "--json", "/dev/loop0")
	if d, err := ProbeDevice(ctx, f, "/dev/loop0"); err != nil || len(d.Holds()) != 0 {
		t.Errorf("blank loop: %+v %v", d, err)
	}

	f.ExpectFail(32, "", "lsblk: /tmp/x.img: not a block device\n", append(lsblk, "/tmp/x.img")...)
	if _, err := ProbeDevice(ctx, f, "/tmp/x.img"); !errors.Is(err, ErrNotBlockDevice) || !errors.Is(err, fault.ErrInvalid) {
		t.Errorf("regular file: %v", err)
	}
}

func TestLoopOf(t *testing.T) {
	f := exectest.New(t, "stor1")
	args := []string{"losetup", "--list", "--json", "--output", "NAME", "--associated"}
	f.Expect(`{"loopdevices":[{"name":"/dev/loop3"}]}`, append(args, "/var/lib/blk/a.img")...)
	f.Expect("{\n   \"loopdevices\": [\n\n   ]\n}\n", append(args, "/var/lib/blk/b.img")...)
	if dev, err := LoopOf(ctx, f, "/var/lib/blk/a.img"); dev != "/dev/loop3" || err != nil {
		t.Errorf("attached: %q %v", dev, err)
	}
	if dev, err := LoopOf(ctx, f, "/var/lib/blk/b.img"); dev != "" || err != nil {
		t.Errorf("not attached: %q %v", dev, err)
	}
}

func TestCreateGroupReadsBackWhatLVMMade(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect("", "vgcreate", "--addtag", "blk", "bitest", "/dev/vdb", "/dev/vdc")
	f.Expect(`{"report":[{"vg":[{"vg_name":"bitest","vg_size":"17171480576","vg_free":"17171480576","lv_count":"0","vg_extent_size":"4194304","vg_tags":"blk"}]}]}`,
		"vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,vg_size,vg_free,lv_count,vg_extent_size,vg_tags", "bitest")
	l := LVM{Run: f, VG: "bitest"}
	devs := []PV{{Name: "/dev/vdb", SizeBytes: 8 << 30}, {Name: "/dev/vdc", SizeBytes: 8 << 30}}
	if err := l.CreateGroup(ctx, devs); err != nil {
		t.Fatal(err)
	}
	d, err := l.NewGroup(ctx, devs)
	if err != nil || d.SizeBytes != 17171480576 || d.ExtentBytes != 4<<20 {
		t.Fatalf("group %+v, %v", d, err)
	}
}

func TestDryRunCreateGroupSizesTheGroupFromItsDevices(t *testing.T) {
	var out strings.Builder
	var mu sync.Mutex
	f := exectest.New(t, "stor1") // expects nothing: the read-back is skipped too
	l := LVM{Run: exec.NewDryRun(f, &out, &mu), VG: "bitest"}
	devs := []PV{{Name: "/dev/vdb", SizeBytes: 8 << 30}, {Name: "/dev/loop0", SizeBytes: 1 << 30}}
	if err := l.CreateGroup(ctx, devs); err != nil {
		t.Fatal(err)
	}
	d, err := l.NewGroup(ctx, devs)
	// Each device loses its first MiB, then rounds down to 4MiB extents.
	if want := int64(8<<30 - 4<<20 + 1<<30 - 4<<20); err != nil || d.SizeBytes != want || d.FreeBytes != want || d.ExtentBytes != 4<<20 {
		t.Fatalf("group %+v, %v; want %d bytes", d, err, want)
	}
	if want := "stor1: vgcreate --addtag blk bitest /dev/vdb /dev/loop0\n"; out.String() != want {
		t.Errorf("plan %q, want %q", out.String(), want)
	}
	out.Reset()
	d, err = l.ExtendGroup(ctx, d, []PV{{Name: "/dev/vdc", SizeBytes: 2 << 30}})
	if want := int64(8<<30 - 4<<20 + 1<<30 - 4<<20 + 2<<30 - 4<<20); err != nil || d.FreeBytes != want {
		t.Fatalf("extended group %+v, %v; want %d free", d, err, want)
	}
	if want := "stor1: vgextend bitest /dev/vdc\n"; out.String() != want {
		t.Errorf("plan %q, want %q", out.String(), want)
	}
}
