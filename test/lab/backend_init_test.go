//go:build lab

package lab

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The backend these tests build, in a group of its own (blkinit) so the lab's
// own group blk, which the other tests use, is never touched. Its config is
// the lab's plus this backend: a backend whose group does not exist would
// make 'backend list' fail for every other test.
const initBackend = `
  lvm-init:
    type: lvm
    host: lab
    vg: blkinit
    thin_pool: pool
    portal: 127.0.0.1:3260
    iqn_prefix: iqn.2026-11.org.example.blk
`

func initConfig(t *testing.T) string {
	t.Helper()
	base, err := os.ReadFile(os.Getenv("BLK_CONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(base), "backends:\n", "backends:"+initBackend, 1)
	if cfg == string(base) {
		t.Fatalf("no backends: in %s", os.Getenv("BLK_CONFIG"))
	}
	path := filepath.Join(t.TempDir(), "blk-init.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type setup struct {
	Changed bool     `json:"changed"`
	Made    []string `json:"made"`
	Devices []string `json:"devices"`
	VG      string   `json:"vg"`
}

// removeInitGroup takes blkinit and its loop devices away, whoever made
// them (an earlier run, make demo), so each test starts from nothing.
func removeInitGroup(t *testing.T) {
	t.Helper()
	sh(t, "sh", "-c", `pvs=$(pvs --noheadings -o pv_name --select vg_name=blkinit 2>/dev/null)
vgremove -ff -y blkinit >/dev/null 2>&1
for pv in $pvs; do pvremove -y $pv >/dev/null 2>&1; case $pv in /dev/loop*) losetup -d $pv;; esac; done; true`)
}

func groupExists(t *testing.T) bool {
	return strings.TrimSpace(sh(t, "sh", "-c", "vgs blkinit >/dev/null 2>&1 && echo yes || echo no")) == "yes"
}

// guestFile is a path in the guest, removed (and its loop device freed)
// when the test ends.
func guestFile(t *testing.T, prefix string) string {
	f := "/tmp/" + uniq(prefix) + ".img"
	t.Cleanup(func() {
		sh(t, "sh", "-c", "for l in $(losetup --noheadings --output NAME --associated "+f+"); do losetup -d $l; done; rm -f "+f)
	})
	return f
}

// loopDevice makes a blank sparse file in the guest and attaches it, as an
// operator's spare disk.
func loopDevice(t *testing.T, size string) string {
	f := guestFile(t, "disk")
	sh(t, "truncate", "--size", size, f)
	return strings.TrimSpace(sh(t, "losetup", "--find", "--show", f))
}

// volumesOnInitBackend runs a thick and a thin volume through create,
// attach (scsi on lab-vm1), a write read back from the LV, detach and delete.
func volumesOnInitBackend(t *testing.T, cfg string) {
	for _, thin := range []bool{false, true} {
		name := uniq("init")
		args := []string{"--config", cfg, "volume", "create", name, "--size", "16MiB", "--backend", "lvm-init", "-o", "json"}
		if thin {
			args = append(args, "--thin")
		}
		v := decode[volume](t, ok(t, args...))
		lv := strings.Fields(sh(t, "lvs", "--noheadings", "-o", "vg_name,lv_tags,pool_lv", "blkinit/volume-"+v.UUID))
		if len(lv) < 2 || lv[0] != "blkinit" || lv[1] != "blk,blk-name-"+name+",blk-vol-"+v.UUID || thin != (len(lv) == 3 && lv[2] == "pool") {
			t.Errorf("thin=%v: LV %q", thin, lv)
		}
		a := decode[attached](t, ok(t, "--config", cfg, "volume", "attach", name, "--instance", "lab-vm1", "--bus", "scsi", "-o", "json"))
		if a.Status != "in-use" || a.Attachment == nil {
			t.Fatalf("thin=%v: attached %+v", thin, a)
		}
		sum := sh(t, "sh", "-c", "head -c 1048576 /dev/urandom > /tmp/"+name+" && dd if=/tmp/"+name+" of="+a.Attachment.DevicePath+
			" bs=1M oflag=direct status=none && sha256sum < /tmp/"+name+" && rm /tmp/"+name)
		if back := sh(t, "sh", "-c", "dd if="+v.Path+" bs=1M count=1 iflag=direct status=none | sha256sum"); back != sum {
			t.Errorf("thin=%v: the LV holds %q, wrote %q through iSCSI", thin, back, sum)
		}
		if d := decode[attached](t, ok(t, "--config", cfg, "volume", "detach", name, "-o", "json")); d.Status != "available" {
			t.Errorf("thin=%v: after detach %+v", thin, d)
		}
		if left := leftovers(t, v.UUID, "lab-vm1"); len(left) > 0 {
			t.Errorf("thin=%v: detach left %v", thin, left)
		}
		ok(t, "--config", cfg, "volume", "delete", name, "--yes")
		if out := sh(t, "lvs", "--noheadings", "-o", "lv_name", "blkinit"); strings.Contains(out, v.UUID) {
			t.Errorf("thin=%v: LV still there after delete", thin)
		}
	}
}

func poolBytes(t *testing.T) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(sh(t, "lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size", "blkinit/pool")), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBackendInitOnALoopFile(t *testing.T) {
	cfg := initConfig(t)
	removeInitGroup(t)
	defer removeInitGroup(t)
	file := guestFile(t, "backing")

	out := ok(t, "--config", cfg, "--dry-run", "backend", "init", "lvm-init", "--loop-file", file, "--size", "1GiB")
	for _, want := range []string{"lab: truncate --size 1073741824 " + file, "lab: losetup --find --show " + file,
		"lab: vgcreate --addtag blk blkinit /dev/loopN", "lab: lvcreate --yes --type thin-pool --name pool"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	if sh(t, "sh", "-c", "test -e "+file+" && echo made || true") != "" || groupExists(t) {
		t.Fatal("the dry run made something")
	}

	s := decode[setup](t, ok(t, "--config", cfg, "backend", "init", "lvm-init", "--loop-file", file, "--size", "1GiB", "-o", "json"))
	if !s.Changed || len(s.Devices) != 1 || !strings.HasPrefix(s.Devices[0], "/dev/loop") {
		t.Fatalf("init: %+v", s)
	}
	if tags := strings.TrimSpace(sh(t, "vgs", "--noheadings", "-o", "vg_tags", "blkinit")); tags != "blk" {
		t.Errorf("group tags %q", tags)
	}
	// The pool leaves room for its metadata and the spare within 95%.
	if p := poolBytes(t); p < 900<<20 || p > 1<<30*95/100 {
		t.Errorf("pool of %d bytes in a 1GiB group", p)
	}
	if spare := sh(t, "lvs", "-a", "--noheadings", "-o", "lv_name", "blkinit"); !strings.Contains(spare, "lvol0_pmspare") {
		t.Errorf("no metadata spare:\n%s", spare)
	}

	r := blk(t, "--config", cfg, "backend", "init", "lvm-init", "--loop-file", file, "--size", "1GiB", "-o", "json")
	if again := decode[setup](t, r.out); r.code != 0 || again.Changed || len(again.Made) != 0 || !strings.Contains(r.errOut, "already set up") {
		t.Errorf("rerun: exit %d %+v %q", r.code, again, r.errOut)
	}

	volumesOnInitBackend(t, cfg)
}

func TestBackendInitOnADeviceThenExtend(t *testing.T) {
	cfg := initConfig(t)
	removeInitGroup(t)
	defer removeInitGroup(t)
	dev := loopDevice(t, "1G")

	s := decode[setup](t, ok(t, "--config", cfg, "backend", "init", "lvm-init", "--device", dev, "-o", "json"))
	if !s.Changed || len(s.Devices) != 1 || s.Devices[0] != dev {
		t.Fatalf("init: %+v", s)
	}
	volumesOnInitBackend(t, cfg)

	before := poolBytes(t)
	more := loopDevice(t, "512M")
	s = decode[setup](t, ok(t, "--config", cfg, "backend", "extend", "lvm-init", "--device", more, "--grow-pool", "-o", "json"))
	if !s.Changed || !strings.Contains(sh(t, "pvs", "--noheadings", "-o", "pv_name", "--select", "vg_name=blkinit"), more) {
		t.Errorf("extend: %+v", s)
	}
	if after := poolBytes(t); after < before+400<<20 {
		t.Errorf("pool grew from %d to %d bytes, want about 508MiB more", before, after)
	}
	if s := decode[setup](t, ok(t, "--config", cfg, "backend", "extend", "lvm-init", "--device", more, "-o", "json")); s.Changed {
		t.Errorf("extend again changed something: %+v", s)
	}
}

// A device holding a filesystem is refused, by device or as a loop file,
// and not a byte of it changes; nothing is left behind.
func TestBackendInitRefusesAFilesystem(t *testing.T) {
	cfg := initConfig(t)
	removeInitGroup(t)
	file := guestFile(t, "ext4")
	sh(t, "truncate", "--size", "64M", file)
	sh(t, "mkfs.ext4", "-q", "-F", file)
	sum := sh(t, "sha256sum", file)

	dev := strings.TrimSpace(sh(t, "losetup", "--find", "--show", file))
	r := blk(t, "--config", cfg, "backend", "init", "lvm-init", "--device", dev)
	if r.code != 2 || !strings.Contains(r.errOut, "holds an ext4 signature") {
		t.Errorf("--device: exit %d, stderr %q", r.code, r.errOut)
	}
	sh(t, "losetup", "-d", dev)

	r = blk(t, "--config", cfg, "backend", "init", "lvm-init", "--loop-file", file)
	if r.code != 2 || !strings.Contains(r.errOut, "holds an ext4 signature") {
		t.Errorf("--loop-file: exit %d, stderr %q", r.code, r.errOut)
	}
	if loops := sh(t, "losetup", "--noheadings", "--output", "NAME", "--associated", file); loops != "" {
		t.Errorf("the refused loop file is still attached: %s", loops)
	}
	if after := sh(t, "sha256sum", file); after != sum {
		t.Errorf("the device changed: %s -> %s", sum, after)
	}
	if groupExists(t) {
		t.Error("a refused init made the group")
	}
}

// The lab guest keeps Debian's lvm.conf, which filters nothing, and is a
// compute host: host check passes it and warns that LVM would scan the
// iSCSI disks of attached volumes.
func TestHostCheckWarnsThatLVMScansAttachedVolumes(t *testing.T) {
	r := blk(t, "host", "check", "-o", "json")
	reports := decode[[]struct {
		Warnings []string `json:"warnings"`
	}](t, r.out)
	if r.code != 0 || len(reports) != 1 || len(reports[0].Warnings) == 0 ||
		!strings.Contains(reports[0].Warnings[0], "lvm.conf has no filter that rejects devices") ||
		!strings.Contains(r.errOut, "blk: warning: lab: lvm.conf has no filter") {
		t.Errorf("exit %d, reports %+v, stderr %q", r.code, reports, r.errOut)
	}
}
