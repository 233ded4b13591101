package volume

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/nfs"
	"github.com/blk-project/blk/state"
)

func (h *fakeHV) Domains(context.Context) ([]string, error) {
	return slices.Sorted(maps.Keys(h.domains)), nil
}

const (
	export   = "192.0.2.10:/srv/blk"
	vol2UUID = "0a0b0c0d-7777-8888-9999-444455556666"
)

var mnt = nfs.MountPoint(export)

// nfsWorld simulates the export's directory on stor1 and the mounts of
// comp1, failing the failAt-th command (1-based) of either.
type nfsWorld struct {
	files  map[string]int64
	mounts map[string]string // mount point -> source
	dirs   map[string]bool
	failAt int
	count  int
	failed string
}

func newNFSWorld() *nfsWorld {
	return &nfsWorld{files: map[string]int64{}, mounts: map[string]string{}, dirs: map[string]bool{}}
}

func (w *nfsWorld) empty() string {
	var left []string
	if len(w.mounts) > 0 {
		left = append(left, fmt.Sprintf("mounts %v", w.mounts))
	}
	if len(w.dirs) > 0 {
		left = append(left, fmt.Sprintf("directories %v", slices.Sorted(maps.Keys(w.dirs))))
	}
	return strings.Join(left, ", ")
}

func (w *nfsWorld) handle(args []string) (string, string, int, bool) {
	w.count++
	if w.count == w.failAt {
		w.failed = exec.Quote(args)
		return "", "injected failure", 1, true
	}
	last := args[len(args)-1]
	switch args[0] {
	case "stat":
		if args[1] == "--file-system" {
			return "1000\n", "", 0, true
		}
		size, ok := w.files[last]
		if !ok {
			return "", "stat: cannot statx '" + last + "': No such file or directory", 1, true
		}
		return fmt.Sprintf("%d,8,512\n", size), "", 0, true
	case "truncate":
		n, _ := strconv.ParseInt(strings.TrimPrefix(args[2], ">"), 10, 64)
		w.files[last] = n
	case "fallocate", "dd":
	case "rm":
		delete(w.files, last)
	case "df":
		return " 1B-blocks     Avail\n1020702720 950214656\n", "", 0, true
	case "findmnt":
		src, ok := w.mounts[last]
		if !ok {
			return "", "", 1, true
		}
		return fmt.Sprintf(`{"filesystems": [{"target": %q, "source": %q, "fstype": "nfs4", "options": "rw"}]}`, last, src), "", 0, true
	case "mkdir":
		w.dirs[last] = true
	case "mount":
		w.mounts[last] = args[len(args)-2]
	case "umount":
		if _, ok := w.mounts[last]; !ok {
			return "", "umount: " + last + ": not mounted.", 32, true
		}
		delete(w.mounts, last)
	case "rmdir":
		delete(w.dirs, last)
	default:
		return "", "", 0, false
	}
	return "", "", 0, true
}

// nfsService has two available file volumes, db1 and db2, on nfs-1, and
// libvirt on comp1 with web1 and web2.
func nfsService(t *testing.T, w *nfsWorld, hv *fakeHV) (*Service, *exectest.Fake, *exectest.Fake) {
	t.Helper()
	var handle func([]string) (string, string, int, bool)
	if w != nil {
		handle = w.handle
	}
	s, stor, comp := twoHostService(t, "nfs-1", config.Backend{Type: "nfs", Host: "stor1", Export: export, Path: "/srv/blk"}, handle, hv)
	for name, uuid := range map[string]string{"db1": volUUID, "db2": vol2UUID} {
		addAvailable(t, s, state.Volume{UUID: uuid, Name: name, Backend: "nfs-1", SizeBytes: 1 << 30, Thin: true, Path: "/srv/blk/volume-" + uuid})
		if w != nil {
			w.files["/srv/blk/volume-"+uuid] = 1 << 30
		}
	}
	return s, stor, comp
}

func TestNFSCreateAndDeleteRunTheSequence(t *testing.T) {
	ctx := context.Background()
	s, stor, _ := nfsService(t, nil, newFakeHV("web1"))
	u := "11111111-2222-3333-4444-555555555555"
	s.testHookUUID = u
	file := "/srv/blk/volume-" + u
	stat := []string{"stat", "--format", "%s,%b,%B", file}
	truncate := []string{"truncate", "--size", "21474836480", file}
	stor.ExpectFail(1, "", "stat: cannot statx: No such file or directory", stat...).Expect("", truncate...).
		Expect("21474836480,0,512\n", stat...)
	stor.InOrder(stat, truncate)
	v, err := s.Create(ctx, CreateOptions{Name: "files1", Size: "20GiB"})
	if err != nil || v.SizeBytes != 20<<30 || v.Path != file || !v.Thin || v.Status != state.Available {
		t.Fatalf("create = %+v, %v", v, err)
	}
	stor.Expect("21474836480,8,512\n", stat...)
	if got, err := s.Show(ctx, "files1"); err != nil || got.AllocatedBytes == nil || *got.AllocatedBytes != 4096 {
		t.Errorf("show = %+v, %v", got, err)
	}
	rm := []string{"rm", "--force", "--", file}
	stor.Expect("21474836480,8,512\n", stat...).Expect("", rm...)
	if _, err := s.Delete(ctx, DeleteOptions{Refs: []string{"files1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.State.Volume(ctx, "files1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("row left: %v", err)
	}
}

func TestNFSPreallocateChecksSpaceAndAllocates(t *testing.T) {
	ctx := context.Background()
	s, stor, _ := nfsService(t, nil, newFakeHV("web1"))
	s.testHookUUID = "11111111-2222-3333-4444-555555555555"
	file := "/srv/blk/volume-" + s.testHookUUID
	stat := []string{"stat", "--format", "%s,%b,%B", file}
	df := []string{"df", "--block-size=1", "--output=size,avail", "/srv/blk"}
	stor.ExpectFail(1, "", "No such file or directory", stat...).Expect(" 1B-blocks Avail\n2147483648 1073741824\n", df...)
	// 2 GiB does not fit in 1 GiB free: refused before anything is made.
	_, err := s.Create(ctx, CreateOptions{Name: "big", Size: "2GiB", Preallocate: true})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "1GiB free") {
		t.Fatalf("err = %v", err)
	}
	trunc := []string{"truncate", "--size", "536870912", file}
	falloc := []string{"fallocate", "--length", "536870912", file}
	stor.ExpectFail(1, "", "No such file or directory", stat...).Expect(" 1B-blocks Avail\n2147483648 1073741824\n", df...).
		Expect("", trunc...).Expect("536870912,0,512\n", stat...).Expect("", falloc...).Expect("536870912,1048576,512\n", stat...)
	stor.InOrder(trunc, falloc)
	v, err := s.Create(ctx, CreateOptions{Name: "full", Size: "512MiB", Preallocate: true})
	if err != nil || v.Thin || v.SizeBytes != 512<<20 {
		t.Fatalf("create = %+v, %v", v, err)
	}
	if _, err := s.Create(ctx, CreateOptions{Name: "x", Size: "1GiB", Preallocate: true, Thin: true}); !errors.Is(err, ErrInvalid) {
		t.Errorf("--thin --preallocate: %v", err)
	}
}

func TestNFSAttachDetachRunTheSequence(t *testing.T) {
	ctx := context.Background()
	hv := newFakeHV("web1")
	s, _, comp := nfsService(t, nil, hv)
	findmnt := []string{"findmnt", "--json", "--mountpoint", mnt}
	mkdir := []string{"mkdir", "--parents", mnt}
	mount := []string{"mount", "-t", "nfs", "-o", "vers=4.2", export, mnt}
	comp.ExpectFail(1, "", "", findmnt...).Expect("", mkdir...).Expect("", mount...)
	comp.InOrder(findmnt, mkdir, mount)
	v, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Bus: "scsi"})
	file := mnt + "/volume-" + volUUID
	if err != nil || v.Status != state.InUse || v.Attachment.DevicePath != file || v.Attachment.Device != "sdb" {
		t.Fatalf("attach = %+v %+v, %v", v, v.Attachment, err)
	}
	x, _ := hv.DomainXML(ctx, "web1", false)
	for _, want := range []string{`<disk type="file" device="disk">`, `<driver name="qemu" type="raw" cache="none" io="native">`,
		`<source file="` + file + `">`, "<serial>0a0b0c0d-1111-2222-3</serial>", `<target dev="sdb" bus="scsi">`} {
		if !strings.Contains(x, want) {
			t.Errorf("domain XML lacks %s:\n%s", want, x)
		}
	}
	rec, _ := s.State.Attachment(ctx, volUUID)
	if c := rec.Conn; c.DriverVolumeType != "nfs" || c.Export != export || c.MountPoint != mnt || c.File != file || c.Format != "raw" {
		t.Errorf("connection info = %+v", c)
	}

	umount := []string{"umount", mnt}
	rmdir := []string{"rmdir", "--ignore-fail-on-non-empty", mnt}
	comp.Expect(`{"filesystems": [{"target": "`+mnt+`", "source": "`+export+`", "fstype": "nfs4"}]}`, findmnt...).
		Expect("", umount...).Expect("", rmdir...)
	comp.InOrder(umount, rmdir)
	res, err := s.Detach(ctx, DetachOptions{Volume: "db1"})
	if err != nil || res.Volume.Status != state.Available {
		t.Fatalf("detach = %+v, %v", res, err)
	}
	if x, _ := hv.DomainXML(ctx, "web1", false); strings.Contains(x, "<serial>") {
		t.Error("disk still in the domain")
	}
}

// Two volumes of one export on one host share one mount: the first detach
// keeps it, the second unmounts.
func TestNFSMountIsSharedAndRefcounted(t *testing.T) {
	ctx := context.Background()
	w := newNFSWorld()
	hv := newFakeHV("web1", "web2")
	s, _, _ := nfsService(t, w, hv)
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	before := w.count
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db2", Instance: "web2"}); err != nil {
		t.Fatal(err)
	}
	if len(w.mounts) != 1 || w.mounts[mnt] != export || w.count-before != 2 { // findmnt, stat -f: no second mount
		t.Fatalf("mounts %v after %d commands", w.mounts, w.count-before)
	}
	if _, err := s.Detach(ctx, DetachOptions{Volume: "db1"}); err != nil {
		t.Fatal(err)
	}
	if w.mounts[mnt] != export {
		t.Fatalf("the first detach unmounted what db2 still uses: %v", w.mounts)
	}
	if _, err := s.Detach(ctx, DetachOptions{Volume: "db2"}); err != nil {
		t.Fatal(err)
	}
	if left := w.empty(); left != "" {
		t.Errorf("the last detach left %s", left)
	}
}

// A mount at blk's mount point that something other than the export holds
// is refused; one of the export made by hand is reused.
func TestNFSAttachReusesTheExportAndRefusesAnythingElse(t *testing.T) {
	ctx := context.Background()
	w := newNFSWorld()
	w.mounts[mnt] = "192.0.2.99:/other"
	s, _, _ := nfsService(t, w, newFakeHV("web1"))
	_, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "192.0.2.99:/other") {
		t.Fatalf("err = %v", err)
	}
	if w.mounts[mnt] != "192.0.2.99:/other" {
		t.Errorf("a mount blk did not make was changed: %v", w.mounts)
	}
	w.mounts[mnt] = export
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
}

// A disk of a domain on a file under the mount keeps it mounted, whatever
// the state file says.
func TestNFSDetachKeepsAMountADomainUses(t *testing.T) {
	ctx := context.Background()
	w := newNFSWorld()
	hv := newFakeHV("web1", "web2")
	s, _, _ := nfsService(t, w, hv)
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	d := hv.domains["web2"]
	xml, _ := hypervisor.Disk{Source: mnt + "/by-hand.img", File: true, Target: "vdc", Bus: "virtio"}.XML()
	if err := hv.AttachDevice(ctx, "web2", xml, hypervisor.Flags{Live: true}); err != nil || len(d.Devices.Disks) != 2 {
		t.Fatal(err)
	}
	if _, err := s.Detach(ctx, DetachOptions{Volume: "db1"}); err != nil {
		t.Fatal(err)
	}
	if w.mounts[mnt] != export {
		t.Errorf("unmounted under web2's disk: %v", w.mounts)
	}
}

func TestNFSAttachFailureAtEveryStepLeavesNothing(t *testing.T) {
	ctx := context.Background()
	for step := 1; ; step++ {
		w := newNFSWorld()
		w.failAt = step
		hv := newFakeHV("web1")
		s, _, _ := nfsService(t, w, hv)
		_, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Bus: "scsi"})
		if w.failed == "" {
			if err != nil {
				t.Fatalf("no failure injected, yet: %v", err)
			}
			w2, hv2 := newNFSWorld(), newFakeHV("web1")
			hv2.failOn = "attach"
			s2, _, _ := nfsService(t, w2, hv2)
			_, _, err = s2.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"})
			checkNFSRolledBack(t, "libvirt attach", s2, w2, hv2, err)
			if step < 4 {
				t.Fatalf("only %d steps: the world is not being exercised", step-1)
			}
			return
		}
		checkNFSRolledBack(t, w.failed, s, w, hv, err)
	}
}

// Also with the mount there already: a failed attach takes back only what
// nobody else uses.
func TestNFSFailedAttachKeepsAMountAnotherVolumeUses(t *testing.T) {
	ctx := context.Background()
	w := newNFSWorld()
	hv := newFakeHV("web1", "web2")
	s, _, _ := nfsService(t, w, hv)
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db2", Instance: "web2"}); err != nil {
		t.Fatal(err)
	}
	hv.failOn = "attach"
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err == nil {
		t.Fatal("attach did not fail")
	}
	if w.mounts[mnt] != export {
		t.Errorf("a failed attach unmounted db2's export: %v", w.mounts)
	}
}

func checkNFSRolledBack(t *testing.T, failed string, s *Service, w *nfsWorld, hv *fakeHV, err error) {
	t.Helper()
	ctx := context.Background()
	if err == nil || !strings.Contains(err.Error(), `attach volume "db1" to "web1"`) {
		t.Errorf("failing %s: err = %v", failed, err)
	}
	if left := w.empty(); left != "" {
		t.Errorf("failing %s left %s behind", failed, left)
	}
	if x, _ := hv.DomainXML(ctx, "web1", false); strings.Contains(x, "<serial>") {
		t.Errorf("failing %s left the disk in the domain", failed)
	}
	if v, _ := s.State.Volume(ctx, "db1"); v.Status != state.Available || v.Attachment != nil {
		t.Errorf("failing %s: volume %s, attachment %+v", failed, v.Status, v.Attachment)
	}
}

// A failure at any step of a detach stops it, the volume detaching; run
// again, detach finishes, leaving no mount and no disk.
func TestNFSDetachFailureAtEveryStepResumes(t *testing.T) {
	ctx := context.Background()
	for step := 1; ; step++ {
		w := newNFSWorld()
		hv := newFakeHV("web1")
		s, _, _ := nfsService(t, w, hv)
		if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
			t.Fatal(err)
		}
		w.count, w.failAt = 0, step
		_, err := s.Detach(ctx, DetachOptions{Volume: "db1"})
		if w.failed == "" {
			if err != nil {
				t.Fatalf("no failure injected, yet: %v", err)
			}
			if step < 3 {
				t.Fatalf("only %d steps", step-1)
			}
			break
		}
		if v, _ := s.State.Volume(ctx, "db1"); err == nil || v.Status != state.Detaching {
			t.Errorf("failing %s: err %v, volume %s", w.failed, err, v.Status)
		}
		w.failAt = 0
		res, err := s.Detach(ctx, DetachOptions{Volume: "db1"})
		if err != nil || res.Volume.Status != state.Available {
			t.Errorf("failing %s, then again: %+v %v", w.failed, res.Volume, err)
		}
		if left := w.empty(); left != "" {
			t.Errorf("failing %s, then again: left %s", w.failed, left)
		}
		if x, _ := hv.DomainXML(ctx, "web1", false); strings.Contains(x, "<serial>") {
			t.Errorf("failing %s: disk still in the domain", w.failed)
		}
	}
	// libvirt refusing the unplug, with --force: the volume ends available.
	w := newNFSWorld()
	hv := newFakeHV("web1")
	s, _, _ := nfsService(t, w, hv)
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	delete(hv.domains, "web1") // the domain is gone, and its disk with it
	res, err := s.Detach(ctx, DetachOptions{Volume: "db1", Force: true})
	if err != nil || res.Volume.Status != state.Available || len(res.Warnings) > 0 {
		t.Fatalf("force: %+v %v", res, err)
	}
	if left := w.empty(); left != "" {
		t.Errorf("force detach left %s", left)
	}
}

// A killed attach (reserved, mounted, no disk) is cleaned up by detach
// --force: no mount left.
func TestNFSForceDetachCleansUpAKilledAttach(t *testing.T) {
	ctx := context.Background()
	w := newNFSWorld()
	hv := newFakeHV("web1")
	s, _, _ := nfsService(t, w, hv)
	v, _ := s.State.Volume(ctx, "db1")
	conn := nfsProvider{s, "nfs-1", s.Config.Backends["nfs-1"]}.connection(v, AttachOptions{Bus: "virtio"})
	if _, err := s.State.Reserve(ctx, volUUID, state.AttachmentRecord{Volume: volUUID, Instance: "web1", Host: "comp1", Device: "vdb",
		Status: state.Attaching, Conn: conn}); err != nil {
		t.Fatal(err)
	}
	w.mounts[mnt], w.dirs[mnt] = export, true
	res, err := s.Detach(ctx, DetachOptions{Volume: "db1", Force: true})
	if err != nil || res.Volume.Status != state.Available {
		t.Fatalf("force: %+v %v", res, err)
	}
	if left := w.empty(); left != "" {
		t.Errorf("left %s", left)
	}
}

func TestNFSStaleMountIsReportedWithAHint(t *testing.T) {
	ctx := context.Background()
	w := newNFSWorld()
	w.mounts[mnt] = export
	s, _, comp := nfsService(t, w, newFakeHV("web1"))
	comp.ExpectFail(1, "", "stat: cannot read file system information for '"+mnt+"': Stale file handle", "stat", "--file-system", "--format", "%b", mnt)
	_, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"})
	if !errors.Is(err, nfs.ErrStale) || !strings.Contains(err.Error(), "umount -l") {
		t.Fatalf("err = %v", err)
	}
	if v, _ := s.State.Volume(ctx, "db1"); v.Status != state.Available {
		t.Errorf("volume %s", v.Status)
	}
}

func TestNFSBackendListReadsTheExportsFilesystem(t *testing.T) {
	s, _, _ := nfsService(t, newNFSWorld(), newFakeHV("web1"))
	infos, err := s.Backends(context.Background())
	if err != nil || len(infos) != 1 {
		t.Fatalf("%+v %v", infos, err)
	}
	if b := infos[0]; b.SizeBytes != 1020702720 || b.FreeBytes != 950214656 || b.AllocatedBytes != 2<<30 || b.VolumeCount != 2 {
		t.Errorf("nfs-1 = %+v", b)
	}
}

// An attach in progress of another volume of the export (reserved, its
// disk not plugged yet) holds the mount through the state file alone.
func TestNFSDetachKeepsAMountAnAttachInProgressNeeds(t *testing.T) {
	ctx := context.Background()
	w := newNFSWorld()
	hv := newFakeHV("web1", "web2")
	s, _, _ := nfsService(t, w, hv)
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	v2, _ := s.State.Volume(ctx, "db2")
	conn := nfsProvider{s, "nfs-1", s.Config.Backends["nfs-1"]}.connection(v2, AttachOptions{Bus: "virtio"})
	if _, err := s.State.Reserve(ctx, vol2UUID, state.AttachmentRecord{Volume: vol2UUID, Instance: "web2", Host: "comp1", Device: "vdb",
		Status: state.Attaching, Conn: conn}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Detach(ctx, DetachOptions{Volume: "db1"}); err != nil {
		t.Fatal(err)
	}
	if w.mounts[mnt] != export {
		t.Errorf("unmounted under db2's attach: %v", w.mounts)
	}
}

func TestNFSDryRunPrintsTheMountTruncateAndUnmount(t *testing.T) {
	ctx := context.Background()
	w := newNFSWorld()
	hv := newFakeHV("web1")
	real, _, _ := nfsService(t, w, hv)
	var plan strings.Builder
	s := dry(real, &plan)
	s.testHookUUID = "11111111-2222-3333-4444-555555555555"
	if _, err := s.Create(ctx, CreateOptions{Name: "files1", Size: "1GiB"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	want := "stor1: truncate --size 1073741824 /srv/blk/volume-11111111-2222-3333-4444-555555555555\n" +
		"comp1: mkdir --parents " + mnt + "\n" +
		"comp1: mount -t nfs -o vers=4.2 " + export + " " + mnt + "\n" +
		`comp1: libvirt attach-device web1 --live --config <disk type="file" device="disk"> <driver name="qemu" type="raw" cache="none" io="native"></driver> <source file="` + mnt + `/volume-` + volUUID + `"></source> <target dev="vdb" bus="virtio"></target> <serial>0a0b0c0d-1111-2222-3</serial> </disk>` + "\n"
	if plan.String() != want {
		t.Errorf("plan:\n%s\nwant:\n%s", plan.String(), want)
	}
	if len(w.files) != 2 || len(w.mounts) != 0 || len(hv.calls) != 0 {
		t.Errorf("a dry run changed something: files %v, mounts %v, libvirt %q", w.files, w.mounts, hv.calls)
	}

	if _, _, err := real.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	plan.Reset()
	s = dry(real, &plan)
	if _, err := s.Detach(ctx, DetachOptions{Volume: "db1"}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(plan.String(), "comp1: umount "+mnt+"\ncomp1: rmdir --ignore-fail-on-non-empty "+mnt+"\n") {
		t.Errorf("detach plan:\n%s", plan.String())
	}
	if w.mounts[mnt] != export {
		t.Errorf("a dry run unmounted")
	}
}

// A preallocated create killed after truncate, run again, allocates the
// file it finds instead of taking it as it is.
func TestNFSPreallocatedCreateRerunAllocates(t *testing.T) {
	ctx := context.Background()
	s, stor, _ := nfsService(t, nil, newFakeHV("web1"))
	u := "11111111-2222-3333-4444-555555555555"
	s.testHookUUID = u
	file := "/srv/blk/volume-" + u
	op, err := s.State.InsertVolume(ctx, &state.Volume{UUID: u, Name: "full", Backend: "nfs-1", SizeBytes: 512 << 20, Status: state.Creating})
	if err != nil {
		t.Fatal(err)
	}
	op.End(ctx, errors.New("killed")) // its process is gone: stale
	stat := []string{"stat", "--format", "%s,%b,%B", file}
	falloc := []string{"fallocate", "--length", "536870912", file}
	stor.Expect("536870912,0,512\n", stat...).Expect("", falloc...).Expect("536870912,1048576,512\n", stat...)
	v, err := s.Create(ctx, CreateOptions{Name: "full", Size: "512MiB", Preallocate: true})
	if err != nil || v.Status != state.Available {
		t.Fatalf("rerun = %+v, %v", v, err)
	}
}
