package volume

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/state"
)

var lvextendArgs = []string{"lvextend", "-L", "2147483648b", "blk/volume-" + volUUID}

func TestExtendAvailableLV(t *testing.T) {
	ctx := context.Background()
	s, stor, _ := attachService(t, nil, newFakeHV("web1"))
	stor.Expect(lvsReport(volUUID, "1073741824"), lvsOf(volUUID)...).Expect("", lvextendArgs...).
		Expect(lvsReport(volUUID, "2147483648"), lvsOf(volUUID)...)
	stor.InOrder(lvsOf(volUUID), lvextendArgs)
	v, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"})
	if err != nil || v.Status != state.Available || v.SizeBytes != 2<<30 || v.LastError != "" {
		t.Fatalf("extend = %+v, %v", v, err)
	}
}

// Extend only grows: the same size or less is bad input, refused before
// anything runs or moves.
func TestExtendRefusesTheSameOrASmallerSize(t *testing.T) {
	ctx := context.Background()
	s, _, _ := attachService(t, nil, newFakeHV("web1"))
	for _, size := range []string{"1GiB", "512MiB", "1G", ""} {
		_, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: size})
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("--size %q: err = %v, want invalid", size, err)
		}
		if size == "1GiB" && !strings.Contains(err.Error(), `volume "db1" is 1GiB (1073741824 bytes): extend only grows a volume`) {
			t.Errorf("message: %v", err)
		}
	}
	if v, _ := s.State.Volume(ctx, "db1"); v.Status != state.Available {
		t.Errorf("refused extend moved the volume to %s", v.Status)
	}
	if _, err := s.Extend(ctx, ExtendOptions{Volume: "nope", Size: "2GiB"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown volume: %v", err)
	}
}

// extendWorld is the attach world plus LVM and the compute host's view of
// the LUN's size, which grows only after tgtd reopened the store and the
// initiator rescanned.
type extendWorld struct {
	*world
	lvSize, tgtSize, devSize int64
	calls                    []string
	hv                       *fakeHV // to see whether the guest is paused
	onRescan                 func()
}

func (e *extendWorld) handle(args []string) (string, string, int, bool) {
	switch {
	case args[0] == "lvs":
		return lvsReport(volUUID, strconv.FormatInt(e.lvSize, 10)), "", 0, true
	case args[0] == "lvextend":
		e.calls = append(e.calls, "lvextend")
		e.lvSize, _ = strconv.ParseInt(strings.TrimSuffix(args[2], "b"), 10, 64)
		return "", "", 0, true
	case args[0] == "blockdev" && args[1] == "--getsize64":
		return strconv.FormatInt(e.devSize, 10) + "\n", "", 0, true
	case args[0] == "tgtadm" && arg(args, "--op") == "update":
		reopen := "reopen " + arg(args, "--tid") + " " + arg(args, "--params")
		if e.hv != nil && !e.hv.paused["web1"] && !e.hv.shutOff["web1"] {
			reopen += " WHILE THE GUEST RUNS"
		}
		e.calls = append(e.calls, reopen)
		e.tgtSize = e.lvSize
		return "", "", 0, true
	case args[0] == "iscsiadm" && slices.Contains(args, "-R"):
		e.calls = append(e.calls, "rescan")
		e.devSize = e.tgtSize
		if e.onRescan != nil {
			e.onRescan()
		}
		return "", "", 0, true
	}
	return e.world.handle(args)
}

func inUseExtendService(t *testing.T, hv *fakeHV) (*Service, *extendWorld) {
	t.Helper()
	w := &extendWorld{world: newWorld(), lvSize: 1 << 30, tgtSize: 1 << 30, devSize: 1 << 30, hv: hv}
	s, stor, comp := attachService(t, nil, hv)
	stor.Handle(w.handle)
	comp.Handle(w.handle)
	if _, _, err := s.Attach(context.Background(), AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	return s, w
}

func TestExtendInUseISCSIRevealsTheSizeToTheGuest(t *testing.T) {
	ctx := context.Background()
	hv := newFakeHV("web1")
	s, w := inUseExtendService(t, hv)
	hv.calls = nil
	v, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"})
	if err != nil || v.Status != state.InUse || v.SizeBytes != 2<<30 || v.Attachment == nil {
		t.Fatalf("extend = %+v, %v", v, err)
	}
	// The LV grows, tgtd reopens it (offline, same path: online again)
	// while the guest is paused, the initiator rescans, then the guest is
	// told.
	want := []string{"lvextend", "reopen 1 online=0,path=/dev/blk/volume-" + volUUID, "rescan"}
	if !slices.Equal(w.calls, want) {
		t.Errorf("storage steps = %q, want %q", w.calls, want)
	}
	if !slices.Equal(hv.calls, []string{"suspend web1", "resume web1", "blockresize web1 vdb 2147483648"}) {
		t.Errorf("libvirt calls = %q", hv.calls)
	}
	if rec, _ := s.State.Attachment(ctx, volUUID); rec.Step != attachedStep || hv.paused["web1"] {
		t.Errorf("step %q, paused %v after the extend", rec.Step, hv.paused["web1"])
	}
}

// The exact argv of each step of an in-use extend.
func TestExtendInUseArgv(t *testing.T) {
	ctx := context.Background()
	hv := newFakeHV("web1")
	w := &extendWorld{world: newWorld(), lvSize: 1 << 30, tgtSize: 1 << 30, devSize: 1 << 30}
	s, stor, comp := attachService(t, nil, hv)
	stor.Handle(w.handle)
	comp.Handle(w.handle)
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	iqn := "iqn.2026-11.org.example.blk:" + volUUID
	link := "/dev/disk/by-path/ip-192.0.2.10:3260-iscsi-" + iqn + "-lun-1"
	reopen := []string{"tgtadm", "--lld", "iscsi", "--op", "update", "--mode", "logicalunit", "--tid", "2", "--lun", "1",
		"--params", "online=0,path=/dev/blk/volume-" + volUUID}
	rescan := []string{"iscsiadm", "-m", "node", "-T", iqn, "-p", "192.0.2.10:3260", "-R"}
	size := []string{"blockdev", "--getsize64", link}
	stor.Expect(lvsReport(volUUID, "1073741824"), lvsOf(volUUID)...).Expect("", lvextendArgs...).
		Expect(lvsReport(volUUID, "2147483648"), lvsOf(volUUID)...).Expect("Target 2: "+iqn+"\n", "tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "target").
		Expect("", reopen...)
	comp.Expect("1073741824\n", size...).Expect("", rescan...).Expect("1073741824\n", size...).Expect("2147483648\n", size...)
	stor.InOrder(lvextendArgs, reopen)
	// The device is polled until the kernel sees the new size.
	if _, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"}); err != nil {
		t.Fatal(err)
	}
}

// A failed later step cannot be undone by shrinking the LV: the volume goes
// back to in-use with the size its storage has, says how to finish, and
// the same command finishes it, skipping what is done.
func TestExtendFailureKeepsTheLargerSizeAndARerunFinishes(t *testing.T) {
	ctx := context.Background()
	hv := newFakeHV("web1")
	s, w := inUseExtendService(t, hv)
	hv.failOn = "blockresize"
	_, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"})
	if err == nil || !strings.Contains(err.Error(), "the volume stays 2GiB") || !strings.Contains(err.Error(), "'blk volume extend db1 --size 2048MiB' again") {
		t.Fatalf("err = %v", err)
	}
	v, _ := s.State.Volume(ctx, "db1")
	if v.Status != state.InUse || v.SizeBytes != 2<<30 || !strings.HasPrefix(v.LastError, extendUnfinished) {
		t.Fatalf("after failure: %s, %d bytes, last error %q", v.Status, v.SizeBytes, v.LastError)
	}
	hv.failOn, w.calls, hv.calls = "", nil, nil
	v2, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2048MiB"})
	if err != nil || v2.SizeBytes != 2<<30 || v2.LastError != "" || v2.Status != state.InUse {
		t.Fatalf("rerun = %+v, %v", v2, err)
	}
	if len(w.calls) != 0 || !slices.Equal(hv.calls, []string{"blockresize web1 vdb 2147483648"}) {
		t.Errorf("rerun ran %q and %q: only the guest was left to tell", w.calls, hv.calls)
	}
	if hv.paused["web1"] {
		t.Error("the guest was left paused")
	}
	// Finished: the same size again is refused.
	if _, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("extend to the size it has: %v", err)
	}
}

// An extend killed mid-way leaves the volume extending; the same command,
// once its process is gone, finishes it and puts the volume back in use.
func TestKilledExtendIsFinishedByARerun(t *testing.T) {
	ctx := context.Background()
	hv := newFakeHV("web1")
	s, w := inUseExtendService(t, hv)
	op, err := s.State.Claim(ctx, "extend", volUUID, []string{state.InUse}, state.Extending)
	if err != nil {
		t.Fatal(err)
	}
	w.lvSize = 2 << 30 // it got as far as lvextend
	op.End(ctx, errors.New("killed"))
	hv.calls = nil
	v, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"})
	if err != nil || v.Status != state.InUse || v.SizeBytes != 2<<30 {
		t.Fatalf("rerun = %+v, %v", v, err)
	}
	if slices.Contains(w.calls, "lvextend") || !slices.Contains(w.calls, "rescan") || len(hv.calls) != 3 {
		t.Errorf("rerun ran %q, libvirt %q", w.calls, hv.calls)
	}
}

// Killed while the guest was paused for the reopen: the rerun resumes it
// before anything else.
func TestKilledExtendWithThePausedGuestResumesItFirst(t *testing.T) {
	ctx := context.Background()
	hv := newFakeHV("web1")
	s, w := inUseExtendService(t, hv)
	op, err := s.State.Claim(ctx, "extend", volUUID, []string{state.InUse}, state.Extending)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := s.State.Attachment(ctx, volUUID)
	rec.Step = extendPaused
	if err := s.State.UpdateAttachment(ctx, rec); err != nil {
		t.Fatal(err)
	}
	hv.paused["web1"], w.lvSize = true, 2<<30
	op.End(ctx, errors.New("killed"))
	hv.calls = nil
	if _, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"}); err != nil {
		t.Fatal(err)
	}
	if len(hv.calls) < 1 || hv.calls[0] != "resume web1" || hv.paused["web1"] {
		t.Errorf("libvirt calls = %q, paused %v: the guest must be resumed first", hv.calls, hv.paused["web1"])
	}
	for _, c := range w.calls {
		if strings.Contains(c, "WHILE THE GUEST RUNS") {
			t.Errorf("%s", c)
		}
	}
}

// A guest the operator paused stays paused.
func TestExtendLeavesAGuestPausedByTheOperatorPaused(t *testing.T) {
	ctx := context.Background()
	hv := newFakeHV("web1")
	s, _ := inUseExtendService(t, hv)
	hv.paused["web1"], hv.calls = true, nil
	if _, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hv.calls, []string{"blockresize web1 vdb 2147483648"}) || !hv.paused["web1"] {
		t.Errorf("libvirt calls = %q, paused %v", hv.calls, hv.paused["web1"])
	}
}

func TestExtendOfADetachingVolumeConflicts(t *testing.T) {
	ctx := context.Background()
	s, _, _ := attachService(t, nil, newFakeHV("web1"))
	if _, err := s.State.MoveVolume(ctx, volUUID, state.Move{From: []string{state.Available}, To: state.Deleting}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"}); !errors.Is(err, ErrConflict) {
		t.Errorf("err = %v, want conflict", err)
	}
}

// Thick LVM has only its free extents: lvextend's refusal is a conflict
// (exit 3), and the volume is as it was.
func TestExtendWithoutRoomConflicts(t *testing.T) {
	ctx := context.Background()
	s, stor, _ := attachService(t, nil, newFakeHV("web1"))
	stor.Expect(lvsReport(volUUID, "1073741824"), lvsOf(volUUID)...).
		ExpectFail(5, "", `  Insufficient free space: 256 extents needed, but only 10 available`, lvextendArgs...)
	_, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), `extend volume "db1" to 2GiB`) {
		t.Fatalf("err = %v", err)
	}
	if v, _ := s.State.Volume(ctx, "db1"); v.Status != state.Available || v.SizeBytes != 1<<30 {
		t.Errorf("volume %s, %d bytes", v.Status, v.SizeBytes)
	}
}

func TestExtendNFSInUseTruncatesThenResizes(t *testing.T) {
	ctx := context.Background()
	w := newNFSWorld()
	hv := newFakeHV("web1")
	s, stor, _ := nfsService(t, w, hv)
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	hv.calls = nil
	file := "/srv/blk/volume-" + volUUID
	stor.InOrder([]string{"truncate", "--size", ">2147483648", file})
	v, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"})
	if err != nil || v.SizeBytes != 2<<30 || w.files[file] != 2<<30 {
		t.Fatalf("extend = %+v, %v; file %d", v, err, w.files[file])
	}
	if !slices.Equal(hv.calls, []string{"blockresize web1 vdb 2147483648"}) {
		t.Errorf("libvirt calls = %q", hv.calls)
	}
}

// A shut-off domain reads its disks' sizes when it starts: no blockresize.
func TestExtendAttachedToAShutOffDomainSkipsTheResize(t *testing.T) {
	ctx := context.Background()
	hv := newFakeHV("web1")
	s, _ := inUseExtendService(t, hv)
	hv.shutOff["web1"], hv.calls = true, nil
	if _, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"}); err != nil {
		t.Fatal(err)
	}
	if len(hv.calls) != 0 {
		t.Errorf("libvirt calls = %q", hv.calls)
	}
}

func TestDryRunExtendPrintsThePlan(t *testing.T) {
	ctx := context.Background()
	var plan strings.Builder
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	insert(t, s, "db1", volUUID, state.Available)
	real := s.State
	s.Hosts = NewHosts(s.Config, nil, &plan)
	s.Hosts.New = func(string, config.Host) exec.Runner { return f }
	s.State = newDryStore(real)
	f.Expect(lvsReport(volUUID, "629145600"), lvsOf(volUUID)...)
	v, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "1GiB"})
	if err != nil || v.SizeBytes != 1<<30 {
		t.Fatalf("dry run = %+v, %v", v, err)
	}
	if want := "stor1: lvextend -L 1073741824b blk/volume-" + volUUID + "\n"; plan.String() != want {
		t.Errorf("plan = %q, want %q", plan.String(), want)
	}
	if got, _ := real.Volume(ctx, "db1"); got.Status != state.Available || got.SizeBytes != 600<<20 {
		t.Errorf("a dry run changed the state: %+v", got)
	}
}

// A resume that fails is said loudly, and the next run resumes.
func TestFailedResumeIsReportedAndTheRerunResumes(t *testing.T) {
	ctx := context.Background()
	hv := newFakeHV("web1")
	s, _ := inUseExtendService(t, hv)
	hv.failOn = "resume"
	_, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"})
	if err == nil || !strings.Contains(err.Error(), "virsh resume web1 on comp1") || !strings.Contains(err.Error(), "again to finish") {
		t.Fatalf("err = %v", err)
	}
	hv.failOn = ""
	if _, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"}); err != nil || hv.paused["web1"] {
		t.Fatalf("rerun: %v, paused %v", err, hv.paused["web1"])
	}
}

// Interrupted (Ctrl-C, --timeout) after the LV grew: the volume is not left
// extending, and records the size its storage has.
func TestInterruptedExtendIsNotLeftExtending(t *testing.T) {
	hv := newFakeHV("web1")
	s, w := inUseExtendService(t, hv)
	ctx, cancel := context.WithCancel(context.Background())
	w.onRescan = cancel
	_, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"})
	if err == nil {
		t.Fatal("an interrupted extend succeeded")
	}
	v, _ := s.State.Volume(context.Background(), "db1")
	if v.Status != state.InUse || v.SizeBytes != 2<<30 || !strings.HasPrefix(v.LastError, extendUnfinished) {
		t.Errorf("after interruption: %s, %d bytes, %q", v.Status, v.SizeBytes, v.LastError)
	}
	if hv.paused["web1"] {
		t.Error("the guest was left paused")
	}
}

// The plan of an in-use extend pauses and resumes the guest around the
// reopen.
func TestDryRunInUseExtendPlan(t *testing.T) {
	ctx := context.Background()
	hv := newFakeHV("web1")
	s, w := inUseExtendService(t, hv)
	var plan strings.Builder
	real := s.State
	hv.calls = nil
	hs := NewHosts(s.Config, nil, &plan)
	hs.New, hs.NewHypervisor = s.Hosts.New, s.Hosts.NewHypervisor
	s.Hosts, s.State = hs, newDryStore(real)
	if _, err := s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"}); err != nil {
		t.Fatal(err)
	}
	iqn := "iqn.2026-11.org.example.blk:" + volUUID
	want := "stor1: lvextend -L 2147483648b blk/volume-" + volUUID + "\n" +
		"comp1: libvirt suspend web1\n" +
		"stor1: tgtadm --lld iscsi --op update --mode logicalunit --tid 1 --lun 1 --params online=0,path=/dev/blk/volume-" + volUUID + "\n" +
		"comp1: libvirt resume web1\n" +
		"comp1: iscsiadm -m node -T " + iqn + " -p 192.0.2.10:3260 -R\n" +
		"comp1: libvirt blockresize web1 vdb 2147483648b\n"
	if plan.String() != want {
		t.Errorf("plan:\n%s\nwant:\n%s", plan.String(), want)
	}
	if len(w.calls) != 0 || len(hv.calls) != 0 {
		t.Errorf("a dry run ran %q, libvirt %q", w.calls, hv.calls)
	}
	if v, _ := real.Volume(ctx, "db1"); v.Status != state.InUse || v.SizeBytes != 1<<30 {
		t.Errorf("a dry run changed the state: %+v", v)
	}
}

// Reconcile's way to finish a killed extend: the size it asked for is not
// recorded, the storage's is taken.
func TestFinishExtendTakesTheStoragesSize(t *testing.T) {
	ctx := context.Background()
	hv := newFakeHV("web1")
	s, w := inUseExtendService(t, hv)
	op, err := s.State.Claim(ctx, "extend", volUUID, []string{state.InUse}, state.Extending)
	if err != nil {
		t.Fatal(err)
	}
	w.lvSize = 3 << 30
	op.End(ctx, errors.New("killed"))
	v, err := s.FinishExtend(ctx, "db1")
	if err != nil || v.Status != state.InUse || v.SizeBytes != 3<<30 || w.devSize != 3<<30 {
		t.Fatalf("finish = %+v, %v (device %d)", v, err, w.devSize)
	}
}

// LVM cannot grow an open thick snapshot origin: an in-use thick volume with
// snapshots is refused up front, naming them, and nothing runs or moves.
func TestExtendOfAnInUseThickVolumeWithSnapshotsIsRefused(t *testing.T) {
	ctx := context.Background()
	s, w := inUseExtendService(t, newFakeHV("web1"))
	sop, err := s.State.InsertSnapshot(ctx, &state.Snapshot{UUID: snapUUID, Name: "s1", Volume: volUUID, SizeBytes: 1 << 30, Status: state.Available})
	if err != nil {
		t.Fatal(err)
	}
	sop.End(ctx, nil)
	_, err = s.Extend(ctx, ExtendOptions{Volume: "db1", Size: "2GiB"})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "has snapshot(s) s1") || !strings.Contains(err.Error(), "detach it or delete the snapshots") {
		t.Fatalf("err = %v", err)
	}
	if v, _ := s.State.Volume(ctx, "db1"); v.Status != state.InUse || v.SizeBytes != 1<<30 || v.LastError != "" {
		t.Errorf("refused extend changed the volume: %+v", v)
	}
	if len(w.calls) != 0 {
		t.Errorf("refused extend ran %q", w.calls)
	}
}
