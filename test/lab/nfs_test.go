//go:build lab

package lab

import (
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blk-project/blk/nfs"
)

// The lab's nfs-1: 127.0.0.1:/srv/blk, exported from an ext4 LV.
const (
	nfsExport = "127.0.0.1:/srv/blk"
	nfsDir    = "/srv/blk"
)

var nfsMount = nfs.MountPoint(nfsExport)

// fileOf reads a volume's file on the export: apparent and allocated
// bytes; ok=false if there is none.
func fileOf(t *testing.T, uuid string) (size, allocated int64, ok bool) {
	t.Helper()
	out := strings.TrimSpace(sh(t, "sh", "-c", "stat -c %s,%b,%B "+nfsDir+"/volume-"+uuid+" 2>/dev/null; true"))
	if out == "" {
		return 0, 0, false
	}
	var n [3]int64
	for i, f := range strings.Split(out, ",") {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil || i > 2 {
			t.Fatalf("stat said %q", out)
		}
		n[i] = v
	}
	return n[0], n[1] * n[2], true
}

// mountedSource is what is mounted at blk's mount point of the export, or "".
func mountedSource(t *testing.T) string {
	t.Helper()
	out := sh(t, "sh", "-c", "findmnt --noheadings --output SOURCE --mountpoint "+nfsMount+"; true")
	return strings.TrimSpace(out)
}

// nfsLeftovers reports the mount and any disk of the volume in the domain.
func nfsLeftovers(t *testing.T, uuid, domain string) []string {
	t.Helper()
	var left []string
	if src := mountedSource(t); src != "" {
		left = append(left, "mount of "+src+" at "+nfsMount)
	}
	for _, flag := range []string{"", "--inactive"} {
		args := []string{"virsh", "-c", "qemu:///system", "dumpxml", domain}
		if flag != "" {
			args = append(args, flag)
		}
		if strings.Contains(sh(t, args...), uuid[:20]) {
			left = append(left, "disk in "+domain+" "+flag)
		}
	}
	return left
}

func TestNFSCreateShowListDelete(t *testing.T) {
	name := uniq("nfs")
	v := decode[volume](t, ok(t, "volume", "create", name, "--size", "256MiB", "--backend", "nfs-1", "-o", "json"))
	defer blk(t, "volume", "delete", name, "--yes")
	if v.SizeBytes != 256<<20 || !v.Thin || v.Path != nfsDir+"/volume-"+v.UUID {
		t.Errorf("created %+v", v)
	}
	size, alloc, found := fileOf(t, v.UUID)
	if !found || size != 256<<20 || alloc > 1<<20 {
		t.Fatalf("file: found %v, %d bytes, %d allocated: want a sparse 256MiB file", found, size, alloc)
	}
	shown := decode[struct {
		AllocatedBytes *int64 `json:"allocated_bytes"`
	}](t, ok(t, "volume", "show", name, "-o", "json"))
	if shown.AllocatedBytes == nil || *shown.AllocatedBytes != alloc {
		t.Errorf("show: allocated_bytes %v, stat says %d", shown.AllocatedBytes, alloc)
	}
	infos := decode[[]struct {
		Name           string `json:"name"`
		SizeBytes      int64  `json:"size_bytes"`
		FreeBytes      int64  `json:"free_bytes"`
		AllocatedBytes int64  `json:"allocated_bytes"`
	}](t, ok(t, "backend", "list", "-o", "json"))
	df := strings.Fields(sh(t, "sh", "-c", "df -B1 --output=size "+nfsDir+" | tail -1"))
	found = false
	for _, b := range infos {
		if b.Name == "nfs-1" {
			found = true
			if len(df) != 1 || strconv.FormatInt(b.SizeBytes, 10) != df[0] || b.FreeBytes <= 0 || b.AllocatedBytes < 256<<20 {
				t.Errorf("nfs-1 = %+v, df size %v", b, df)
			}
		}
	}
	if !found {
		t.Errorf("no nfs-1 in %+v", infos)
	}
	// The plan names the mount and changes nothing.
	plan := ok(t, "--dry-run", "volume", "attach", name, "--instance", "lab-vm1", "--bus", "scsi")
	for _, want := range []string{"lab: mount -t nfs -o vers=4.2 " + nfsExport + " " + nfsMount, `<disk type="file" device="disk">`, `type="raw"`} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}
	if left := nfsLeftovers(t, v.UUID, "lab-vm1"); len(left) > 0 {
		t.Errorf("dry run made: %v", left)
	}
	ok(t, "volume", "delete", name, "--yes")
	if _, _, found := fileOf(t, v.UUID); found {
		t.Error("delete left the file")
	}
}

func TestNFSPreallocate(t *testing.T) {
	name := uniq("nfsfull")
	v := decode[volume](t, ok(t, "volume", "create", name, "--size", "16MiB", "--backend", "nfs-1", "--preallocate", "-o", "json"))
	defer blk(t, "volume", "delete", name, "--yes")
	if size, alloc, found := fileOf(t, v.UUID); !found || v.Thin || size != 16<<20 || alloc < 16<<20 {
		t.Errorf("thin %v; file: found %v, %d bytes, %d allocated: want 16MiB allocated", v.Thin, found, size, alloc)
	}
}

// Two volumes of the export on lab-vm1 share one mount; bytes written
// through the compute host's view of one come back from its file on the
// export; the first detach keeps the mount, the second unmounts it.
func TestNFSAttachWriteReadDetachRefcount(t *testing.T) {
	if src := mountedSource(t); src != "" {
		t.Fatalf("%s is mounted at %s before the test: unmount it", src, nfsMount)
	}
	var vols [2]attached
	for i := range vols {
		name := uniq("nfsatt" + strconv.Itoa(i))
		v := decode[volume](t, ok(t, "volume", "create", name, "--size", "32MiB", "--backend", "nfs-1", "-o", "json"))
		defer blk(t, "volume", "delete", name, "--yes")
		defer blk(t, "volume", "detach", name, "--force")
		vols[i] = decode[attached](t, ok(t, "volume", "attach", name, "--instance", "lab-vm1", "--bus", "scsi", "-o", "json"))
		a := vols[i]
		file := nfsMount + "/volume-" + v.UUID
		if a.Status != "in-use" || a.Attachment == nil || a.Attachment.DevicePath != file {
			t.Fatalf("attached volume = %+v %+v", a.volume, a.Attachment)
		}
		for _, flag := range []string{"", "--inactive"} {
			args := []string{"virsh", "-c", "qemu:///system", "dumpxml", "lab-vm1"}
			if flag != "" {
				args = append(args, flag)
			}
			x := sh(t, args...)
			for _, want := range []string{"<serial>" + v.UUID[:20] + "</serial>", "<source file='" + file + "'", "type='raw'"} {
				if !strings.Contains(x, want) {
					t.Errorf("domain XML %s lacks %s:\n%s", flag, want, x)
				}
			}
		}
		if src := mountedSource(t); src != nfsExport {
			t.Fatalf("after attach %d: %q mounted at %s", i+1, src, nfsMount)
		}
	}
	if n := strings.Count(sh(t, "findmnt", "--noheadings", "--output", "TARGET", "--source", nfsExport), "\n"); n != 1 {
		t.Errorf("%d mounts of %s, want one for both volumes", n, nfsExport)
	}

	a := vols[0]
	sum := sh(t, "sh", "-c", "head -c 16777216 /dev/urandom > /tmp/"+a.Name+" && dd if=/tmp/"+a.Name+" of="+a.Attachment.DevicePath+
		" bs=1M oflag=direct conv=notrunc status=none && sha256sum < /tmp/"+a.Name+" && rm /tmp/"+a.Name)
	back := sh(t, "sh", "-c", "dd if="+nfsDir+"/volume-"+a.UUID+" bs=1M count=16 status=none | sha256sum")
	if sum != back {
		t.Errorf("the file on the export holds %q, wrote %q", back, sum)
	}

	ok(t, "volume", "detach", vols[0].Name)
	if src := mountedSource(t); src != nfsExport {
		t.Errorf("the first detach unmounted what %s still uses (%q mounted)", vols[1].Name, src)
	}
	if left := nfsLeftovers(t, vols[0].UUID, "lab-vm1"); len(left) != 1 {
		t.Errorf("after the first detach: %v, want only the mount", left)
	}
	d := decode[attached](t, ok(t, "volume", "detach", vols[1].Name, "-o", "json"))
	if d.Status != "available" || d.Attachment != nil {
		t.Errorf("after detach: %+v", d)
	}
	for _, v := range vols {
		if left := nfsLeftovers(t, v.UUID, "lab-vm1"); len(left) > 0 {
			t.Errorf("the last detach left: %v", left)
		}
	}
}

func TestNFSDeleteWipe(t *testing.T) {
	name := uniq("nfswipe")
	v := decode[volume](t, ok(t, "volume", "create", name, "--size", "8MiB", "--backend", "nfs-1", "-o", "json"))
	sh(t, "dd", "if=/dev/urandom", "of="+nfsDir+"/volume-"+v.UUID, "bs=1M", "count=2", "conv=notrunc", "status=none")
	res := decode[[]struct {
		Status string `json:"status"`
		Wiped  bool   `json:"wiped"`
	}](t, ok(t, "volume", "delete", name, "--wipe", "--yes", "-o", "json"))
	if len(res) != 1 || res[0].Status != "deleted" || !res[0].Wiped {
		t.Errorf("delete --wipe = %+v", res)
	}
	if _, _, found := fileOf(t, v.UUID); found {
		t.Error("delete --wipe left the file")
	}
}

// An attach killed with SIGKILL once the export is mounted, then detach
// --force: no mount, no disk.
func TestNFSKilledAttachIsCleanedByForceDetach(t *testing.T) {
	if src := mountedSource(t); src != "" {
		t.Fatalf("%s is mounted at %s before the test: unmount it", src, nfsMount)
	}
	name := uniq("nfskill")
	v := decode[volume](t, ok(t, "volume", "create", name, "--size", "8MiB", "--backend", "nfs-1", "-o", "json"))
	defer blk(t, "volume", "delete", name, "--yes")
	cmd := osexec.Command(os.Getenv("BLK_BIN"), "volume", "attach", name, "--instance", "lab-vm1", "--bus", "scsi")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for mountedSource(t) == "" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if r := blk(t, "volume", "delete", name, "--yes"); r.code != 3 {
		t.Errorf("delete of a half-attached volume: exit %d %s", r.code, r.errOut)
	}
	r := blk(t, "volume", "detach", name, "--force")
	if r.code != 0 {
		t.Fatalf("detach --force: %d %s", r.code, r.errOut)
	}
	if left := nfsLeftovers(t, v.UUID, "lab-vm1"); len(left) > 0 {
		t.Errorf("after kill and detach --force: %v\ndetach said: %s", left, r.errOut)
	}
	if got := decode[attached](t, ok(t, "volume", "show", name, "-o", "json")); got.Status != "available" || got.Attachment != nil {
		t.Errorf("volume = %+v", got)
	}
}

// virtio on lab-vm2, whose kernel answers the unplug: the last detach
// unmounts.
func TestNFSAttachVirtioDetach(t *testing.T) {
	waitForKernel(t, "lab-vm2")
	if src := mountedSource(t); src != "" {
		t.Fatalf("%s is mounted at %s before the test: unmount it", src, nfsMount)
	}
	name := uniq("nfsvirtio")
	v := decode[volume](t, ok(t, "volume", "create", name, "--size", "16MiB", "--backend", "nfs-1", "-o", "json"))
	defer blk(t, "volume", "delete", name, "--yes")
	a := decode[attached](t, ok(t, "volume", "attach", name, "--instance", "lab-vm2", "--bus", "virtio", "-o", "json"))
	if a.Attachment == nil || !strings.HasPrefix(a.Attachment.Device, "vd") {
		t.Fatalf("attached = %+v", a.Attachment)
	}
	if x := sh(t, "virsh", "-c", "qemu:///system", "dumpxml", "lab-vm2"); !strings.Contains(x, "<source file='"+nfsMount+"/volume-"+v.UUID+"'") {
		t.Errorf("lab-vm2 lacks the file disk:\n%s", x)
	}
	ok(t, "volume", "detach", name)
	if left := nfsLeftovers(t, v.UUID, "lab-vm2"); len(left) > 0 {
		t.Errorf("detach left: %v", left)
	}
}
