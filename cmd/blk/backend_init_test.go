package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
)

func TestBackendInitExitCodes(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	pvs := []string{"pvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "pv_name,vg_name,pv_size,pv_free"}
	lsblk := []string{"lsblk", "--json", "--bytes", "--paths", "--output", "NAME,TYPE,SIZE,MOUNTPOINT", "/dev/vdb"}

	// Bad usage: no host is contacted (the fake expects nothing).
	for _, args := range [][]string{
		{"backend", "init", "lvm-1"},
		{"backend", "init", "lvm-1", "--device", "vdb"},
		{"backend", "init", "lvm-1", "--device", "/dev/vdb", "--loop-file", "/x.img"},
		{"backend", "init", "--device", "/dev/vdb"},
		{"backend", "extend", "lvm-1"},
	} {
		if r := blk(t, dir, exectest.New(t, "stor1"), args...); r.code != ExitUsage {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.errOut)
		}
	}

	// A device holding a filesystem: refused, exit 2, naming what was found.
	f := exectest.New(t, "stor1")
	f.Expect(`{"report":[{"pv":[]}]}`, pvs...)
	f.Expect(`{"blockdevices":[{"name":"/dev/vdb","type":"disk","size":1073741824,"mountpoint":null}]}`, lsblk...)
	f.Expect(`{"signatures":[{"device":"vdb","offset":"0x438","type":"ext4"}]}`, "wipefs", "--no-act", "--json", "/dev/vdb")
	r := blk(t, dir, f, "backend", "init", "lvm-1", "--device", "/dev/vdb")
	if r.code != ExitUsage || !strings.Contains(r.errOut, "holds an ext4 signature") || !strings.Contains(r.errOut, "--force") {
		t.Errorf("used device: exit %d, stderr %q", r.code, r.errOut)
	}

	// pvcreate fails: exit 1 with host, command and LVM's words.
	f = exectest.New(t, "stor1")
	f.Expect(`{"report":[{"pv":[]}]}`, pvs...)
	f.Expect(`{"blockdevices":[{"name":"/dev/vdb","type":"disk","size":1073741824,"mountpoint":null}]}`, lsblk...)
	f.Expect(`{"signatures":[]}`, "wipefs", "--no-act", "--json", "/dev/vdb")
	f.ExpectFail(5, "", "  Volume group \"blk\" not found\n", "vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,vg_size,vg_free,lv_count,vg_extent_size,vg_tags", "blk")
	f.ExpectFail(5, "", "  Cannot use /dev/vdb: device is too small (pv_min_size)\n", "pvcreate", "--yes", "/dev/vdb")
	r = blk(t, dir, f, "backend", "init", "lvm-1", "--device", "/dev/vdb")
	if r.code != ExitFailure || !strings.Contains(r.errOut, "stor1: pvcreate --yes /dev/vdb: exit status 5: Cannot use /dev/vdb") {
		t.Errorf("pvcreate failure: exit %d, stderr %q", r.code, r.errOut)
	}
}

func TestBackendInitRerunSaysSoInJSON(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	f := exectest.New(t, "stor1")
	f.Expect(`{"report":[{"pv":[{"pv_name":"/dev/vdb","vg_name":"blk","pv_size":"1069547520","pv_free":"0"}]}]}`,
		"pvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "pv_name,vg_name,pv_size,pv_free")
	f.Expect(`{"blockdevices":[{"name":"/dev/vdb","type":"disk","size":1073741824,"mountpoint":null}]}`,
		"lsblk", "--json", "--bytes", "--paths", "--output", "NAME,TYPE,SIZE,MOUNTPOINT", "/dev/vdb")
	f.Expect(`{"signatures":[{"device":"vdb","offset":"0x218","type":"LVM2_member"}]}`, "wipefs", "--no-act", "--json", "/dev/vdb")
	f.Expect(`{"report":[{"vg":[{"vg_name":"blk","vg_size":"1069547520","vg_free":"0","lv_count":"1","vg_extent_size":"4194304","vg_tags":"blk"}]}]}`,
		"vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,vg_size,vg_free,lv_count,vg_extent_size,vg_tags", "blk")
	f.Expect(`{"report":[{"lv":[{"lv_size":"1061158912","lv_metadata_size":"4194304","chunk_size":"65536"}]}]}`,
		"lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "lv_size,lv_metadata_size,chunk_size", "blk/pool")
	r := blk(t, dir, f, "backend", "init", "lvm-1", "--device", "/dev/vdb", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.errOut)
	}
	var got struct {
		Changed bool     `json:"changed"`
		Made    []string `json:"made"`
		Devices []string `json:"devices"`
	}
	if err := json.Unmarshal([]byte(r.out), &got); err != nil || got.Changed || len(got.Made) != 0 || got.Devices[0] != "/dev/vdb" {
		t.Errorf("%s: %+v %v", r.out, got, err)
	}
	if !strings.Contains(r.errOut, "already set up") {
		t.Errorf("stderr %q", r.errOut)
	}
}

func TestBackendInitDryRunAsJSONIsThePlan(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	f := exectest.New(t, "stor1")
	f.Expect(`{"report":[{"pv":[]}]}`, "pvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "pv_name,vg_name,pv_size,pv_free")
	f.Expect(`{"blockdevices":[{"name":"/dev/vdb","type":"disk","size":1073741824,"mountpoint":null}]}`,
		"lsblk", "--json", "--bytes", "--paths", "--output", "NAME,TYPE,SIZE,MOUNTPOINT", "/dev/vdb")
	f.Expect(`{"signatures":[]}`, "wipefs", "--no-act", "--json", "/dev/vdb")
	f.ExpectFail(5, "", "  Volume group \"blk\" not found\n", "vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,vg_size,vg_free,lv_count,vg_extent_size,vg_tags", "blk")
	r := blk(t, dir, f, "--dry-run", "-o", "json", "backend", "init", "lvm-1", "--device", "/dev/vdb")
	var plan []planStep
	if err := json.Unmarshal([]byte(r.out), &plan); err != nil || r.code != 0 {
		t.Fatalf("%d %q %q: %v", r.code, r.out, r.errOut, err)
	}
	var cmds []string
	for _, s := range plan {
		cmds = append(cmds, strings.Fields(s.Command)[0])
	}
	if strings.Join(cmds, " ") != "pvcreate vgcreate lvcreate" {
		t.Errorf("plan = %+v", plan)
	}
}

// A host whose LVM would scan blk's volumes passes host check with a
// warning on stderr, -q or not.
func TestHostCheckWarnsOfLVMScanningVolumes(t *testing.T) {
	dir := writeConfig(t, strings.Replace(goodConfig, "thin_pool: pool, ", "", 1))
	f := exectest.New(t, "stor1")
	f.Handle(func(args []string) (string, string, int, bool) {
		switch args[0] {
		case "true", "tgtadm":
			return "", "", 0, true
		case "lvm":
			return "  LVM version:     2.03.16(2) (2022-05-18)\n", "", 0, true
		case "vgs":
			return `{"report":[{"vg":[{"vg_name":"blk","vg_size":"8589934592","vg_free":"8589934592","lv_count":"0"}]}]}`, "", 0, true
		case "dmsetup":
			return "snapshot         v1.16.0\n", "", 0, true
		case "lvmconfig":
			return "global_filter=[\"a|.*|\"]\nfilter=[\"a|.*|\"]\nscan_lvs=1\n", "", 0, true
		}
		return "", "", 0, false
	})
	r := blk(t, dir, f, "-q", "host", "check")
	if r.code != 0 || !strings.Contains(r.errOut, "blk: warning: stor1: lvm.conf sets scan_lvs = 1") {
		t.Errorf("exit %d, stderr %q", r.code, r.errOut)
	}
}
