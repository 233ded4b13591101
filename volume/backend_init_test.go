package volume

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
)

var (
	pvsArgs      = []string{"pvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "pv_name,vg_name,pv_size,pv_free"}
	vgsDetail    = []string{"vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,vg_size,vg_free,lv_count,vg_extent_size,vg_tags", "blk"}
	poolSizeArgs = []string{"lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "lv_size,lv_metadata_size,chunk_size", "blk/pool"}
	lsblkArgs    = []string{"lsblk", "--json", "--bytes", "--paths", "--output", "NAME,TYPE,SIZE,MOUNTPOINT"}
	// The thin pool a fresh 2GiB group gets at 95%: LVM's own sizing.
	poolCreate = []string{"lvcreate", "--yes", "--type", "thin-pool", "--name", "pool", "--size", "2025848832b", "--chunksize", "64k",
		"--poolmetadatasize", "4194304b", "--poolmetadataspare", "y", "--addtag", "blk", "blk"}
)

const vgNotFound = "  Volume group \"blk\" not found\n  Cannot process volume group blk\n"

func pvsReport(pvs ...[2]string) string {
	var rows []string
	for _, p := range pvs {
		rows = append(rows, `{"pv_name":"`+p[0]+`","vg_name":"`+p[1]+`","pv_size":"1069547520","pv_free":"1069547520"}`)
	}
	return `{"report":[{"pv":[` + strings.Join(rows, ",") + `]}]}`
}

func vgsDetailReport(size, free string) string {
	return `{"report":[{"vg":[{"vg_name":"blk","vg_size":"` + size + `","vg_free":"` + free +
		`","lv_count":"0","vg_extent_size":"4194304","vg_tags":"blk"}]}]}`
}

// blank answers lsblk and wipefs for a device holding nothing.
func blank(f *exectest.Fake, dev, name string, size string) {
	f.Expect(`{"blockdevices":[{"name":"`+name+`","type":"disk","size":`+size+`,"mountpoint":null}]}`, append(slices.Clone(lsblkArgs), dev)...)
	f.Expect(`{"signatures":[]}`, "wipefs", "--no-act", "--json", name)
}

// lvmMember answers lsblk and wipefs for a device that is a PV.
func lvmMember(f *exectest.Fake, name, typ string) {
	f.Expect(`{"blockdevices":[{"name":"`+name+`","type":"`+typ+`","size":2147483648,"mountpoint":null}]}`, append(slices.Clone(lsblkArgs), name)...)
	f.Expect(`{"signatures":[{"device":"x","offset":"0x218","type":"LVM2_member"}]}`, "wipefs", "--no-act", "--json", name)
}

func TestBackendInitOnTwoDisks(t *testing.T) {
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	f.Expect(pvsReport(), pvsArgs...)
	blank(f, "/dev/disk/by-id/virtio-a", "/dev/vdb", "1073741824")
	blank(f, "/dev/vdc", "/dev/vdc", "1073741824")
	f.ExpectFail(5, "", vgNotFound, vgsDetail...)
	f.Expect("", "pvcreate", "--yes", "/dev/vdb")
	f.Expect("", "pvcreate", "--yes", "/dev/vdc")
	f.Expect("", "vgcreate", "--addtag", "blk", "blk", "/dev/vdb", "/dev/vdc")
	f.Expect(vgsDetailReport("2143289344", "2143289344"), vgsDetail...)
	f.Expect("", poolCreate...)
	res, err := s.BackendInit(context.Background(), BackendInitOptions{Backend: "lvm-1", Devices: []string{"/dev/disk/by-id/virtio-a", "/dev/vdc"}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || len(res.Made) != 4 || !slices.Equal(res.Devices, []string{"/dev/vdb", "/dev/vdc"}) {
		t.Errorf("result %+v", res)
	}
}

func TestBackendInitRefusesAUsedDevice(t *testing.T) {
	for _, c := range []struct {
		name, wipefs, pvs, want string
		force                   bool
	}{
		{"filesystem", `{"signatures":[{"device":"vdb","offset":"0x438","type":"ext4","uuid":"u","label":null}]}`, pvsReport(),
			"holds an ext4 signature at offset 0x438: refusing", false},
		{"partition table", `{"signatures":[{"device":"vdb","offset":"0x200","type":"gpt"},{"device":"vdb","offset":"0x1fe","type":"PMBR"}]}`, pvsReport(),
			"a gpt partition table at offset 0x200, a PMBR partition table", false},
		{"raid", `{"signatures":[{"device":"vdb","offset":"0x1000","type":"linux_raid_member"}]}`, pvsReport(),
			"a RAID member signature (linux_raid_member)", false},
		{"another group's PV", "", pvsReport([2]string{"/dev/vdb", "vg0"}),
			`physical volume of volume group "vg0" on stor1: blk will not take it, even with --force`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := exectest.New(t, "stor1")
			s := newService(t, f, nil)
			f.Expect(c.pvs, pvsArgs...)
			if c.wipefs != "" {
				f.Expect(`{"blockdevices":[{"name":"/dev/vdb","type":"disk","size":1073741824,"mountpoint":null}]}`, append(slices.Clone(lsblkArgs), "/dev/vdb")...)
				f.Expect(c.wipefs, "wipefs", "--no-act", "--json", "/dev/vdb")
			} else {
				lvmMember(f, "/dev/vdb", "disk")
			}
			// Nothing else may run: the fake fails on any pvcreate.
			_, err := s.BackendInit(context.Background(), BackendInitOptions{Backend: "lvm-1", Devices: []string{"/dev/vdb"}, Force: c.force})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, c.want)
			}
		})
	}
}

func TestBackendInitForceWipes(t *testing.T) {
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	f.Expect(pvsReport(), pvsArgs...)
	f.Expect(`{"blockdevices":[{"name":"/dev/vdb","type":"disk","size":2147483648,"mountpoint":null}]}`, append(slices.Clone(lsblkArgs), "/dev/vdb")...)
	f.Expect(`{"signatures":[{"device":"vdb","offset":"0x438","type":"ext4"}]}`, "wipefs", "--no-act", "--json", "/dev/vdb")
	f.ExpectFail(5, "", vgNotFound, vgsDetail...)
	f.Expect("", "pvcreate", "--yes", "/dev/vdb")
	f.Expect("", "vgcreate", "--addtag", "blk", "blk", "/dev/vdb")
	f.Expect(vgsDetailReport("2143289344", "2143289344"), vgsDetail...)
	f.Expect("", poolCreate...)
	if _, err := s.BackendInit(context.Background(), BackendInitOptions{Backend: "lvm-1", Devices: []string{"/dev/vdb"}, Force: true}); err != nil {
		t.Fatal(err)
	}
}

func TestBackendInitRerunChangesNothing(t *testing.T) {
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	f.Expect(pvsReport([2]string{"/dev/vdb", "blk"}), pvsArgs...)
	lvmMember(f, "/dev/vdb", "disk")
	f.Expect(vgsDetailReport("1069547520", "0"), vgsDetail...)
	f.Expect(`{"report":[{"lv":[{"lv_size":"1061158912","lv_metadata_size":"4194304","chunk_size":"65536"}]}]}`, poolSizeArgs...)
	res, err := s.BackendInit(context.Background(), BackendInitOptions{Backend: "lvm-1", Devices: []string{"/dev/vdb"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed || len(res.Made) != 0 || len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "already set up") {
		t.Errorf("result %+v", res)
	}
}

func TestBackendInitOnAnExistingGroupWithOtherDevicesConflicts(t *testing.T) {
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	f.Expect(pvsReport([2]string{"/dev/vdb", "blk"}), pvsArgs...)
	blank(f, "/dev/vdc", "/dev/vdc", "1073741824")
	f.Expect(vgsDetailReport("1069547520", "0"), vgsDetail...)
	_, err := s.BackendInit(context.Background(), BackendInitOptions{Backend: "lvm-1", Devices: []string{"/dev/vdc"}})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "blk backend extend lvm-1") {
		t.Fatalf("err = %v", err)
	}
}

func TestBackendInitRollsBack(t *testing.T) {
	for _, step := range []string{"vgcreate", "read-back", "pool"} {
		t.Run(step, func(t *testing.T) {
			f := exectest.New(t, "stor1")
			s := newService(t, f, nil)
			f.Expect(pvsReport(), pvsArgs...)
			blank(f, "/dev/vdb", "/dev/vdb", "2147483648")
			f.ExpectFail(5, "", vgNotFound, vgsDetail...)
			f.Expect("", "pvcreate", "--yes", "/dev/vdb")
			switch step {
			case "vgcreate":
				f.ExpectFail(5, "", "  Device /dev/vdb excluded by a filter.\n", "vgcreate", "--addtag", "blk", "blk", "/dev/vdb")
			case "read-back":
				// vgcreate made the group; reading it back failed: the
				// group goes before its PV, or pvremove would fail on it.
				f.Expect("", "vgcreate", "--addtag", "blk", "blk", "/dev/vdb")
				f.ExpectFail(5, "", "  /run/lock/lvm/V_blk: open failed: Too many open files\n", vgsDetail...)
				f.Expect("", "vgremove", "--yes", "blk")
				f.InOrder([]string{"vgremove", "--yes", "blk"}, []string{"pvremove", "--yes", "/dev/vdb"})
			default:
				f.Expect("", "vgcreate", "--addtag", "blk", "blk", "/dev/vdb")
				f.Expect(vgsDetailReport("2143289344", "2143289344"), vgsDetail...)
				f.ExpectFail(5, "", "  thin-pool: Required device-mapper target(s) not detected in your kernel.\n", poolCreate...)
				f.Expect("", "vgremove", "--yes", "blk")
			}
			f.Expect("", "pvremove", "--yes", "/dev/vdb")
			_, err := s.BackendInit(context.Background(), BackendInitOptions{Backend: "lvm-1", Devices: []string{"/dev/vdb"}})
			if err == nil || errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `init backend "lvm-1" on stor1`) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

var loopList = []string{"losetup", "--list", "--json", "--output", "NAME", "--associated", "/var/lib/blk/lvm-1.img"}

func TestBackendInitLoopFile(t *testing.T) {
	for _, systemd := range []bool{false, true} {
		t.Run(map[bool]string{false: "no systemd", true: "systemd"}[systemd], func(t *testing.T) {
			f := exectest.New(t, "stor1")
			s := newService(t, f, nil)
			f.Expect(`{"loopdevices":[]}`, loopList...)
			f.ExpectFail(1, "", "", "test", "-e", "/var/lib/blk/lvm-1.img")
			f.Expect("", "truncate", "--size", "2147483648", "/var/lib/blk/lvm-1.img")
			f.Expect("/dev/loop3\n", "losetup", "--find", "--show", "/var/lib/blk/lvm-1.img")
			f.Expect(pvsReport(), pvsArgs...)
			blank(f, "/dev/loop3", "/dev/loop3", "2147483648")
			f.Expect(pvsReport(), pvsArgs...)
			f.ExpectFail(5, "", vgNotFound, vgsDetail...)
			f.Expect("", "pvcreate", "--yes", "/dev/loop3")
			f.Expect("", "vgcreate", "--addtag", "blk", "blk", "/dev/loop3")
			f.Expect(vgsDetailReport("2143289344", "2143289344"), vgsDetail...)
			f.Expect("", poolCreate...)
			unit := "/etc/systemd/system/blk-loop-lvm-1.service"
			if systemd {
				f.Expect("", "test", "-d", "/run/systemd/system")
				f.ExpectFail(1, "", "cat: "+unit+": No such file or directory", "cat", unit)
				f.Expect("", "tee", unit)
				f.Expect("", "systemctl", "daemon-reload")
				f.Expect("", "systemctl", "enable", "blk-loop-lvm-1.service")
			} else {
				f.ExpectFail(1, "", "", "test", "-d", "/run/systemd/system")
			}
			res, err := s.BackendInit(context.Background(), BackendInitOptions{Backend: "lvm-1", LoopFile: "/var/lib/blk/lvm-1.img", LoopSize: "2GiB"})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Devices, []string{"/dev/loop3"}) || len(res.Made) != 5 {
				t.Errorf("result %+v", res)
			}
			notes := strings.Join(res.Notes, "\n")
			if !strings.Contains(notes, "not for production") {
				t.Errorf("no warning: %q", notes)
			}
			if systemd {
				written := f.Stdins["tee "+unit]
				if res.LoopUnit != "blk-loop-lvm-1.service" || !strings.Contains(written, "ExecStart=/sbin/losetup --find --show /var/lib/blk/lvm-1.img\nExecStartPost=/sbin/vgchange --activate ay blk\n") {
					t.Errorf("unit %q:\n%s", res.LoopUnit, written)
				}
			} else if res.LoopUnit != "" || !strings.Contains(notes, "run 'blk backend init lvm-1 --loop-file /var/lib/blk/lvm-1.img' again") {
				t.Errorf("unit %q, notes %q", res.LoopUnit, notes)
			}
		})
	}
}

func TestBackendInitLoopFileRollsBackEverything(t *testing.T) {
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	f.Expect(`{"loopdevices":[]}`, loopList...)
	f.ExpectFail(1, "", "", "test", "-e", "/var/lib/blk/lvm-1.img")
	f.Expect("", "truncate", "--size", "2147483648", "/var/lib/blk/lvm-1.img")
	f.Expect("/dev/loop3\n", "losetup", "--find", "--show", "/var/lib/blk/lvm-1.img")
	f.Expect(pvsReport(), pvsArgs...)
	blank(f, "/dev/loop3", "/dev/loop3", "2147483648")
	f.Expect(pvsReport(), pvsArgs...)
	f.ExpectFail(5, "", vgNotFound, vgsDetail...)
	f.Expect("", "pvcreate", "--yes", "/dev/loop3")
	f.Expect("", "vgcreate", "--addtag", "blk", "blk", "/dev/loop3")
	f.Expect(vgsDetailReport("2143289344", "2143289344"), vgsDetail...)
	f.ExpectFail(5, "", "  Insufficient free space", poolCreate...)
	f.Expect("", "vgremove", "--yes", "blk")
	f.Expect("", "pvremove", "--yes", "/dev/loop3")
	f.Expect("", "losetup", "--detach", "/dev/loop3")
	f.Expect("", "rm", "-f", "/var/lib/blk/lvm-1.img")
	if _, err := s.BackendInit(context.Background(), BackendInitOptions{Backend: "lvm-1", LoopFile: "/var/lib/blk/lvm-1.img", LoopSize: "2GiB"}); err == nil {
		t.Fatal("no error")
	}
}

// A group that could not be removed still holds data in the file: the
// undo keeps the file rather than delete it under the group.
func TestBackendInitRollbackKeepsALoopFileItCouldNotEmpty(t *testing.T) {
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	f.Expect(`{"loopdevices":[]}`, loopList...)
	f.ExpectFail(1, "", "", "test", "-e", "/var/lib/blk/lvm-1.img")
	f.Expect("", "truncate", "--size", "2147483648", "/var/lib/blk/lvm-1.img")
	f.Expect("/dev/loop3\n", "losetup", "--find", "--show", "/var/lib/blk/lvm-1.img")
	f.Expect(pvsReport(), pvsArgs...)
	blank(f, "/dev/loop3", "/dev/loop3", "2147483648")
	f.Expect(pvsReport(), pvsArgs...)
	f.ExpectFail(5, "", vgNotFound, vgsDetail...)
	f.Expect("", "pvcreate", "--yes", "/dev/loop3")
	f.Expect("", "vgcreate", "--addtag", "blk", "blk", "/dev/loop3")
	f.Expect(vgsDetailReport("2143289344", "2143289344"), vgsDetail...)
	f.ExpectFail(5, "", "  Insufficient free space", poolCreate...)
	f.ExpectFail(5, "", "  Logical volume blk/x in use.", "vgremove", "--yes", "blk")
	f.ExpectFail(5, "", "  PV /dev/loop3 is used by VG blk", "pvremove", "--yes", "/dev/loop3")
	f.Expect("", "losetup", "--detach", "/dev/loop3")
	_, err := s.BackendInit(context.Background(), BackendInitOptions{Backend: "lvm-1", LoopFile: "/var/lib/blk/lvm-1.img", LoopSize: "2GiB"})
	if err == nil || !strings.Contains(err.Error(), "kept /var/lib/blk/lvm-1.img: vgremove blk, pvremove /dev/loop3 could not be undone") {
		t.Fatalf("err = %v", err)
	}
}

func TestBackendExtendDryRunGrowsThePoolByWhatTheDevicesWouldAdd(t *testing.T) {
	f := exectest.New(t, "stor1")
	var out strings.Builder
	s := newService(t, f, &out)
	f.Expect(vgsDetailReport("1069547520", "0"), vgsDetail...)
	f.Expect(pvsReport([2]string{"/dev/vdb", "blk"}), pvsArgs...)
	blank(f, "/dev/vdc", "/dev/vdc", "1073741824")
	f.Expect(`{"report":[{"lv":[{"lv_size":"1061158912","lv_metadata_size":"4194304","chunk_size":"65536"}]}]}`, poolSizeArgs...)
	res, err := s.BackendExtend(context.Background(), BackendExtendOptions{Backend: "lvm-1", Devices: []string{"/dev/vdc"}, GrowPool: true})
	if err != nil || len(res.Made) != 3 {
		t.Fatalf("%+v %v", res, err)
	}
	// As the real run above: 1GiB less its first MiB, in whole extents.
	want := `stor1: pvcreate --yes /dev/vdc
stor1: vgextend blk /dev/vdc
stor1: lvextend --yes --size +1069547520b blk/pool
`
	if out.String() != want {
		t.Errorf("dry run printed:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestBackendInitLoopFileRerun(t *testing.T) {
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	f.Expect(`{"loopdevices":[{"name":"/dev/loop3"}]}`, loopList...)
	f.Expect(pvsReport([2]string{"/dev/loop3", "blk"}), pvsArgs...)
	lvmMember(f, "/dev/loop3", "loop")
	f.Expect(pvsReport([2]string{"/dev/loop3", "blk"}), pvsArgs...)
	f.Expect(vgsDetailReport("2143289344", "0"), vgsDetail...)
	f.Expect(`{"report":[{"lv":[{"lv_size":"2029010944","lv_metadata_size":"4194304","chunk_size":"65536"}]}]}`, poolSizeArgs...)
	f.ExpectFail(1, "", "", "test", "-d", "/run/systemd/system")
	res, err := s.BackendInit(context.Background(), BackendInitOptions{Backend: "lvm-1", LoopFile: "/var/lib/blk/lvm-1.img", LoopSize: "2GiB"})
	if err != nil || res.Changed || !strings.Contains(res.Notes[0], "already set up") {
		t.Fatalf("%+v %v", res, err)
	}
}

// After a reboot without the unit: the file is there, detached. Init
// attaches it again and activates the group, and makes nothing else.
func TestBackendInitLoopFileReattachesAfterReboot(t *testing.T) {
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	f.Expect(`{"loopdevices":[]}`, loopList...)
	f.Expect("", "test", "-e", "/var/lib/blk/lvm-1.img")
	f.Expect("2147483648\n", "stat", "--format=%s", "/var/lib/blk/lvm-1.img")
	f.Expect("/dev/loop5\n", "losetup", "--find", "--show", "/var/lib/blk/lvm-1.img")
	f.Expect(pvsReport([2]string{"/dev/loop5", "blk"}), pvsArgs...)
	lvmMember(f, "/dev/loop5", "loop")
	f.Expect(pvsReport([2]string{"/dev/loop5", "blk"}), pvsArgs...)
	f.Expect(vgsDetailReport("2143289344", "0"), vgsDetail...)
	f.Expect("", "vgchange", "--activate", "ay", "blk")
	f.Expect(`{"report":[{"lv":[{"lv_size":"2025848832","lv_metadata_size":"4194304","chunk_size":"65536"}]}]}`, poolSizeArgs...)
	f.ExpectFail(1, "", "", "test", "-d", "/run/systemd/system")
	res, err := s.BackendInit(context.Background(), BackendInitOptions{Backend: "lvm-1", LoopFile: "/var/lib/blk/lvm-1.img"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Made, []string{"attached loop device /dev/loop5 to /var/lib/blk/lvm-1.img", "activated volume group blk"}) {
		t.Errorf("made %q", res.Made)
	}
}

func TestBackendInitDryRunPrintsEveryCommand(t *testing.T) {
	f := exectest.New(t, "stor1")
	var out strings.Builder
	s := newService(t, f, &out)
	f.Expect(`{"loopdevices":[]}`, loopList...)
	f.ExpectFail(1, "", "", "test", "-e", "/var/lib/blk/lvm-1.img")
	f.Expect(pvsReport(), pvsArgs...)
	f.ExpectFail(5, "", vgNotFound, vgsDetail...)
	f.ExpectFail(1, "", "", "test", "-d", "/run/systemd/system")
	res, err := s.BackendInit(context.Background(), BackendInitOptions{Backend: "lvm-1", LoopFile: "/var/lib/blk/lvm-1.img", LoopSize: "2GiB"})
	if err != nil {
		t.Fatal(err)
	}
	want := `stor1: truncate --size 2147483648 /var/lib/blk/lvm-1.img
stor1: losetup --find --show /var/lib/blk/lvm-1.img
stor1: pvcreate --yes /dev/loopN
stor1: vgcreate --addtag blk blk /dev/loopN
stor1: lvcreate --yes --type thin-pool --name pool --size 2025848832b --chunksize 64k --poolmetadatasize 4194304b --poolmetadataspare y --addtag blk blk
`
	if out.String() != want {
		t.Errorf("dry run printed:\n%s\nwant:\n%s", out.String(), want)
	}
	if len(res.Made) != 5 {
		t.Errorf("made %q", res.Made)
	}
}

func TestBackendExtendGrowsThePool(t *testing.T) {
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	f.Expect(vgsDetailReport("1069547520", "0"), vgsDetail...)
	f.Expect(pvsReport([2]string{"/dev/vdb", "blk"}), pvsArgs...)
	blank(f, "/dev/vdc", "/dev/vdc", "1073741824")
	f.Expect("", "pvcreate", "--yes", "/dev/vdc")
	f.Expect("", "vgextend", "blk", "/dev/vdc")
	f.Expect(vgsDetailReport("2139095040", "1069547520"), vgsDetail...) // read back: the space vdc added
	f.Expect(`{"report":[{"lv":[{"lv_size":"1061158912","lv_metadata_size":"4194304","chunk_size":"65536"}]}]}`, poolSizeArgs...)
	// 2GiB of data still needs only the smallest metadata: data grows by all it added.
	f.Expect("", "lvextend", "--yes", "--size", "+1069547520b", "blk/pool")
	res, err := s.BackendExtend(context.Background(), BackendExtendOptions{Backend: "lvm-1", Devices: []string{"/dev/vdc"}, GrowPool: true})
	if err != nil || !res.Changed || len(res.Made) != 3 {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestBackendExtendRollsBackWhenThePoolCannotGrow(t *testing.T) {
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	f.Expect(vgsDetailReport("1069547520", "0"), vgsDetail...)
	f.Expect(pvsReport([2]string{"/dev/vdb", "blk"}), pvsArgs...)
	blank(f, "/dev/vdc", "/dev/vdc", "1073741824")
	f.Expect("", "pvcreate", "--yes", "/dev/vdc")
	f.Expect("", "vgextend", "blk", "/dev/vdc")
	f.Expect(vgsDetailReport("2139095040", "1069547520"), vgsDetail...) // read back: the space vdc added
	f.ExpectFail(5, "", "  Failed to find logical volume \"blk/pool\"", poolSizeArgs...)
	f.Expect("", "vgreduce", "blk", "/dev/vdc")
	f.Expect("", "pvremove", "--yes", "/dev/vdc")
	_, err := s.BackendExtend(context.Background(), BackendExtendOptions{Backend: "lvm-1", Devices: []string{"/dev/vdc"}, GrowPool: true})
	if err == nil {
		t.Fatal("no error")
	}
}

func TestBackendExtendWithoutAGroupIsNotFound(t *testing.T) {
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	f.ExpectFail(5, "", vgNotFound, vgsDetail...)
	_, err := s.BackendExtend(context.Background(), BackendExtendOptions{Backend: "lvm-1", Devices: []string{"/dev/vdc"}})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "blk backend init lvm-1") {
		t.Fatalf("err = %v", err)
	}
}

func TestBackendInitValidate(t *testing.T) {
	for _, o := range []BackendInitOptions{
		{},
		{Devices: []string{"/dev/vdb"}, LoopFile: "/x.img"},
		{Devices: []string{"vdb"}},
		{Devices: []string{"/dev/vdb", "/dev/vdb"}},
		{LoopFile: "relative.img", LoopSize: "1GiB"},
		{LoopFile: "/a b.img", LoopSize: "1GiB"},
		{LoopFile: "/x.img", LoopSize: "20"},
		{Devices: []string{"/dev/vdb"}, LoopSize: "1GiB"},
		{Devices: []string{"/dev/vdb"}, ThinPoolSize: "101%"},
		{Devices: []string{"/dev/vdb"}, ThinPoolSize: "lots"},
	} {
		if err := o.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err = %v", o, err)
		}
	}
	if err := (BackendInitOptions{LoopFile: "/var/lib/blk/a.img", LoopSize: "2GiB", ThinPoolSize: "50%"}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestLVMFilterAcceptsTheHostsPVsByStableName(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect(`{"report":[{"pv":[
		{"pv_name":"/dev/sda3","vg_name":"root","pv_size":"1","pv_free":"0"},
		{"pv_name":"/dev/vdb","vg_name":"blk","pv_size":"1","pv_free":"0"},
		{"pv_name":"/dev/sdc","vg_name":"guestvg","pv_size":"1","pv_free":"0"},
		{"pv_name":"/dev/vdd","vg_name":"","pv_size":"1","pv_free":"0"}]}]}`, pvsArgs...)
	// The loop device of the request is matched by pattern, never asked about;
	// the orphan PV vdd is no group's and is not accepted.
	f.Expect("disk/by-path/pci-0000:00:1f.2-ata-1-part3 disk/by-id/wwn-0x5000-part3 disk/by-id/ata-DISK_1-part3\n", "udevadm", "info", "--query=symlink", "--name=/dev/sda3")
	f.Expect("disk/by-id/lvm-pv-uuid-abc disk/by-id/virtio-labdata2\n", "udevadm", "info", "--query=symlink", "--name=/dev/vdb")
	f.Expect("disk/by-path/ip-127.0.0.1:3260-iscsi-iqn.2026-11.org.example.blk:u-lun-1\n", "udevadm", "info", "--query=symlink", "--name=/dev/sdc")
	line, notes, err := lvmFilter(context.Background(), f, "blk", []string{"/dev/loop0"})
	if err != nil {
		t.Fatal(err)
	}
	want := `global_filter = [ "a|^/dev/disk/by-id/ata-DISK_1-part3$|", "a|^/dev/disk/by-id/virtio-labdata2$|", "a|^/dev/loop[0-9]+$|", "r|.*|" ]`
	if line != want {
		t.Errorf("line\n%s\nwant\n%s", line, want)
	}
	if len(notes) != 2 || !strings.Contains(notes[1], "update-initramfs -u") {
		t.Errorf("notes %q", notes)
	}
}
