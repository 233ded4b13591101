package volume

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/state"
)

const snapUUID = "5a5a5a5a-1111-2222-3333-444455556666"

// events is one log of what ran where, libvirt and commands together, to
// check the order freeze → snapshot → thaw.
type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(s string) { e.mu.Lock(); e.log = append(e.log, s); e.mu.Unlock() }

// loggedRunner logs each mutating command's program name.
type loggedRunner struct {
	exec.Runner
	ev *events
}

func (l loggedRunner) Run(ctx context.Context, cmd exec.Cmd) (exec.Result, error) {
	if cmd.Mutates {
		l.ev.add(cmd.Args[0])
	}
	return l.Runner.Run(ctx, cmd)
}

// loggedHV logs freezes and thaws, and whether the thaw's context was
// still live.
type loggedHV struct {
	*fakeHV
	ev *events
}

func (h loggedHV) FSFreeze(ctx context.Context, d string) (int, error) {
	h.ev.add("fsfreeze")
	return h.fakeHV.FSFreeze(ctx, d)
}

func (h loggedHV) FSThaw(ctx context.Context, d string) (int, error) {
	if ctx.Err() != nil {
		h.ev.add("fsthaw on a dead context")
	} else {
		h.ev.add("fsthaw")
	}
	return h.fakeHV.FSThaw(ctx, d)
}

// snapService has an lvm backend with a thin pool on stor1, web1 on comp1,
// and the volume volUUID ("db1", thin when asked), in use by web1 when
// inUse.
func snapService(t *testing.T, thin, inUse bool) (*Service, *exectest.Fake, *fakeHV, *events) {
	t.Helper()
	hv := newFakeHV("web1")
	s, stor, comp := twoHostService(t, "lvm-1", config.Backend{Type: "lvm", Host: "stor1", VG: "blk", ThinPool: "pool",
		Portal: "192.0.2.10:3260", IQNPrefix: "iqn.2026-11.org.example.blk"}, nil, hv)
	_ = comp
	ev := &events{}
	s.Hosts.New = func(name string, _ config.Host) exec.Runner { return loggedRunner{stor, ev} }
	s.Hosts.NewHypervisor = func(context.Context, string, exec.Runner) (hypervisor.Hypervisor, error) {
		return loggedHV{hv, ev}, nil
	}
	addAvailable(t, s, state.Volume{UUID: volUUID, Name: "db1", Backend: "lvm-1", SizeBytes: 1 << 30, Thin: thin,
		Path: "/dev/blk/volume-" + volUUID})
	if inUse {
		ctx := context.Background()
		if _, err := s.State.Reserve(ctx, volUUID, state.AttachmentRecord{Instance: "web1", Host: "comp1", Device: "vdb"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.State.FinishAttach(ctx, volUUID); err != nil {
			t.Fatal(err)
		}
	}
	s.testHookUUID = snapUUID
	return s, stor, hv, ev
}

var snapLV = "_snapshot-" + snapUUID

func snapReport(name, size, tags string) string {
	return `{"report":[{"lv":[{"lv_name":"` + name + `","vg_name":"blk","lv_size":"` + size + `","lv_tags":"` + tags +
		`","pool_lv":"pool","lv_attr":"Vwi-a-tz-k","data_percent":"0.00"}]}]}`
}

func lvsOfName(name string) []string { return append(append([]string{}, lvsArgs...), "blk/"+name) }

var thinSnapCreate = []string{"lvcreate", "--yes", "--snapshot", "--name", snapLV, "--setactivationskip", "n", "--activate", "y",
	"--addtag", "blk", "--addtag", "blk-snap-" + snapUUID, "--addtag", "blk-vol-" + volUUID, "blk/volume-" + volUUID}

func expectThinSnapshot(f *exectest.Fake) {
	f.ExpectFail(5, "", notFound, lvsOfName(snapLV)...)
	f.Expect(poolReport, lvsOfName("pool")...)
	f.Expect("", thinSnapCreate...)
	f.Expect(snapReport(snapLV, "1073741824", "blk,blk-snap-"+snapUUID+",blk-vol-"+volUUID), lvsOfName(snapLV)...)
}

func checkVolume(t *testing.T, s *Service, status string, snapshots int) {
	t.Helper()
	v, err := s.State.Volume(context.Background(), volUUID)
	if err != nil || v.Status != status || v.SnapshotCount != snapshots {
		t.Errorf("volume: status %q with %d snapshots (want %q, %d), err %v", v.Status, v.SnapshotCount, status, snapshots, err)
	}
}

func TestSnapshotOfAnInUseVolumeFreezesTakesAndThaws(t *testing.T) {
	s, stor, _, ev := snapService(t, true, true)
	expectThinSnapshot(stor)
	sn, err := s.CreateSnapshot(context.Background(), SnapshotOptions{Volume: "db1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"fsfreeze", "lvcreate", "fsthaw"}; !slices.Equal(ev.log, want) {
		t.Errorf("ran %v, want %v", ev.log, want)
	}
	if sn.Name != "db1-snap-5a5a5a5a" || sn.Consistency != Filesystem || sn.Status != state.Available ||
		sn.SizeBytes != 1<<30 || sn.Path != "/dev/blk/"+snapLV || sn.Volume != "db1" || sn.Warning != "" {
		t.Errorf("snapshot = %+v", sn)
	}
	checkVolume(t, s, state.InUse, 1)
}

func TestThawRunsAfterAFailedSnapshot(t *testing.T) {
	s, stor, _, ev := snapService(t, true, true)
	stor.ExpectFail(5, "", notFound, lvsOfName(snapLV)...)
	stor.Expect(poolReport, lvsOfName("pool")...)
	stor.ExpectFail(5, "", "  Insufficient free space", thinSnapCreate...)
	stor.ExpectFail(5, "", notFound, lvsOfName(snapLV)...)
	_, err := s.CreateSnapshot(context.Background(), SnapshotOptions{Volume: "db1", Name: "before"})
	if err == nil || !strings.Contains(err.Error(), `snapshot volume "db1"`) {
		t.Fatalf("err = %v", err)
	}
	if want := []string{"fsfreeze", "lvcreate", "fsthaw"}; !slices.Equal(ev.log, want) {
		t.Errorf("ran %v, want %v", ev.log, want)
	}
	if _, err := s.State.Snapshot(context.Background(), "before"); !errors.Is(err, ErrNotFound) {
		t.Errorf("snapshot row left: %v", err)
	}
	checkVolume(t, s, state.InUse, 0)
}

// Ctrl-C while the snapshot is taken: the guest is thawed all the same, on
// a context of its own.
func TestThawRunsAfterCancellation(t *testing.T) {
	s, stor, _, ev := snapService(t, true, true)
	ctx, cancel := context.WithCancel(context.Background())
	stor.ExpectFail(5, "", notFound, lvsOfName(snapLV)...)
	stor.Expect(poolReport, lvsOfName("pool")...)
	stor.Handle(func(args []string) (string, string, int, bool) {
		if slices.Equal(args, thinSnapCreate) {
			cancel()
			return "", "killed", -1, true
		}
		if slices.Equal(args, lvsOfName(snapLV)) { // the undo looks
			return "", notFound, 5, true
		}
		return "", "", 0, false
	})
	if _, err := s.CreateSnapshot(ctx, SnapshotOptions{Volume: "db1"}); err == nil {
		t.Fatal("a cancelled snapshot succeeded")
	}
	if want := []string{"fsfreeze", "lvcreate", "fsthaw"}; !slices.Equal(ev.log, want) {
		t.Errorf("ran %v, want %v", ev.log, want)
	}
	checkVolume(t, s, state.InUse, 0)
}

func TestQuiesceRequireWithoutAgentTakesNothing(t *testing.T) {
	s, _, hv, ev := snapService(t, true, true)
	hv.freezeErr = hypervisor.ErrNoAgent
	// No command is expected: the fake fails the test on any.
	_, err := s.CreateSnapshot(context.Background(), SnapshotOptions{Volume: "db1", Quiesce: QuiesceRequire})
	if err == nil || !strings.Contains(err.Error(), "--quiesce require") || errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v (want a plain failure, exit 1)", err)
	}
	if want := []string{"fsfreeze"}; !slices.Equal(ev.log, want) {
		t.Errorf("ran %v, want %v", ev.log, want)
	}
	checkVolume(t, s, state.InUse, 0)
}

func TestQuiesceAutoWithoutAgentIsCrashConsistentAndSaysSo(t *testing.T) {
	s, stor, hv, ev := snapService(t, true, true)
	hv.freezeErr = hypervisor.ErrNoAgent
	expectThinSnapshot(stor)
	sn, err := s.CreateSnapshot(context.Background(), SnapshotOptions{Volume: "db1"})
	if err != nil {
		t.Fatal(err)
	}
	if sn.Consistency != Crash || !strings.Contains(sn.Warning, "crash-consistent") {
		t.Errorf("snapshot = %+v", sn)
	}
	if want := []string{"fsfreeze", "lvcreate"}; !slices.Equal(ev.log, want) {
		t.Errorf("ran %v, want %v", ev.log, want)
	}
}

// A thick snapshot has room for every block of its origin; an available
// volume is not frozen, and its snapshot is clean.
func TestThickSnapshotOfAnAvailableVolume(t *testing.T) {
	s, stor, _, ev := snapService(t, false, false)
	stor.ExpectFail(5, "", notFound, lvsOfName(snapLV)...)
	stor.Expect(vgsReport("3208642560"), vgsArgs...)
	stor.Expect("", "lvcreate", "--yes", "--snapshot", "--name", snapLV, "--size", "1092868096b",
		"--addtag", "blk", "--addtag", "blk-snap-"+snapUUID, "--addtag", "blk-vol-"+volUUID, "blk/volume-"+volUUID)
	stor.Expect(snapReport(snapLV, "1082130432", "blk,blk-snap-"+snapUUID+",blk-vol-"+volUUID), lvsOfName(snapLV)...)
	sn, err := s.CreateSnapshot(context.Background(), SnapshotOptions{Volume: volUUID, Name: "s1", Quiesce: QuiesceRequire})
	if err != nil {
		t.Fatal(err)
	}
	if sn.Consistency != Clean || sn.SizeBytes != 1<<30 || slices.Contains(ev.log, "fsfreeze") {
		t.Errorf("snapshot = %+v, ran %v", sn, ev.log)
	}
	checkVolume(t, s, state.Available, 1)
}

func takeSnapshot(t *testing.T, s *Service, stor *exectest.Fake) {
	t.Helper()
	expectThinSnapshot(stor)
	if _, err := s.CreateSnapshot(context.Background(), SnapshotOptions{Volume: "db1", Name: "s1"}); err != nil {
		t.Fatal(err)
	}
}

func TestRevertRefusedWhileInUse(t *testing.T) {
	s, stor, _, _ := snapService(t, true, true)
	takeSnapshot(t, s, stor)
	_, err := s.RevertSnapshot(context.Background(), "s1")
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "detach it first") {
		t.Fatalf("err = %v", err)
	}
	checkVolume(t, s, state.InUse, 1)
}

func TestRevertMergesAndConsumesTheSnapshot(t *testing.T) {
	s, stor, _, _ := snapService(t, true, false)
	takeSnapshot(t, s, stor)
	stor.Expect(snapReport(snapLV, "1073741824", "blk"), lvsOfName(snapLV)...)
	stor.Expect("", "lvconvert", "--yes", "--merge", "blk/"+snapLV)
	stor.ExpectFail(5, "", notFound, lvsOfName(snapLV)...)
	// The merged LV came back with the snapshot's tags: they are put right.
	stor.Expect(snapReport("volume-"+volUUID, "1073741824", "blk,blk-snap-"+snapUUID+",blk-vol-"+volUUID), lvsOf(volUUID)...)
	stor.Expect("", "lvchange", "--deltag", "blk-snap-"+snapUUID, "blk/volume-"+volUUID)
	res, err := s.RevertSnapshot(context.Background(), "s1")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Consumed || res.Volume.Status != state.Available {
		t.Errorf("result = %+v", res)
	}
	if _, err := s.State.Snapshot(context.Background(), "s1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("merged snapshot still listed: %v", err)
	}
	checkVolume(t, s, state.Available, 0)
}

func TestDeleteOfAVolumeWithSnapshotsNamesThem(t *testing.T) {
	s, stor, _, _ := snapService(t, true, false)
	takeSnapshot(t, s, stor)
	_, err := s.Delete(context.Background(), DeleteOptions{Refs: []string{"db1"}})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "snapshot(s) s1") {
		t.Fatalf("err = %v", err)
	}
}

func TestSnapshotDeleteRemovesTheLV(t *testing.T) {
	s, stor, _, _ := snapService(t, true, false)
	takeSnapshot(t, s, stor)
	stor.Expect(snapReport(snapLV, "1073741824", "blk"), lvsOfName(snapLV)...)
	stor.Expect("", "lvremove", "--yes", "blk/"+snapLV)
	if _, err := s.DeleteSnapshots(context.Background(), []string{"s1"}); err != nil {
		t.Fatal(err)
	}
	checkVolume(t, s, state.Available, 0)
	// The name is free again.
	_, err := s.DeleteSnapshots(context.Background(), []string{"s1"})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

func TestSnapshotNamesFollowTheRules(t *testing.T) {
	for _, o := range []SnapshotOptions{{Volume: "db1", Name: "Bad"}, {Volume: "db1", Quiesce: "sometimes"},
		{Volume: "db1", Name: snapUUID}} {
		if err := o.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", o, err)
		}
	}
	long := strings.Repeat("a", 63)
	if n := snapshotName(long, snapUUID); len(n) != 63 || CheckName("snapshot", n) != nil {
		t.Errorf("generated name %q", n)
	}
}

func TestNFSSnapshotIsASparseCopyOfAnAvailableVolume(t *testing.T) {
	hv := newFakeHV("web1")
	s, stor, _ := twoHostService(t, "nfs-1", config.Backend{Type: "nfs", Host: "stor1", Export: export, Path: "/srv/blk"}, nil, hv)
	addAvailable(t, s, state.Volume{UUID: volUUID, Name: "files1", Backend: "nfs-1", SizeBytes: 1 << 30, Thin: true,
		Path: "/srv/blk/volume-" + volUUID})
	s.testHookUUID = snapUUID
	file := "/srv/blk/snapshot-" + snapUUID
	stor.Expect("", "cp", "--sparse=always", "--", "/srv/blk/volume-"+volUUID, file)
	stor.Expect("1073741824,8,512\n", "stat", "--format", "%s,%b,%B", file)
	sn, err := s.CreateSnapshot(context.Background(), SnapshotOptions{Volume: "files1", Name: "f1"})
	if err != nil {
		t.Fatal(err)
	}
	if sn.Path != file || sn.Consistency != Clean {
		t.Errorf("snapshot = %+v", sn)
	}
	stor.Expect("", "cp", "--sparse=always", "--", file, "/srv/blk/volume-"+volUUID)
	stor.Expect("1073741824,8,512\n", "stat", "--format", "%s,%b,%B", "/srv/blk/volume-"+volUUID)
	res, err := s.RevertSnapshot(context.Background(), "f1")
	if err != nil {
		t.Fatal(err)
	}
	if res.Consumed || res.Snapshot.Status != state.Available {
		t.Errorf("an nfs revert keeps the snapshot: %+v", res)
	}
	// In use: refused, before anything runs.
	ctx := context.Background()
	s.State.Reserve(ctx, volUUID, state.AttachmentRecord{Instance: "web1", Host: "comp1", Device: "vdb"})
	s.State.FinishAttach(ctx, volUUID)
	_, err = s.CreateSnapshot(ctx, SnapshotOptions{Volume: "files1", Name: "f2"})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "detach it first") {
		t.Fatalf("err = %v", err)
	}
}

// A snapshot run killed between freeze and thaw left the volume held and
// maybe the guest frozen: the next snapshot takes the volume over and thaws
// the guest before anything else.
func TestTakeoverOfAKilledSnapshotThawsFirst(t *testing.T) {
	s, stor, _, ev := snapService(t, true, true)
	ctx := context.Background()
	op, err := s.State.Claim(ctx, "snapshot", volUUID, []string{state.InUse}, state.Snapshotting)
	if err != nil {
		t.Fatal(err)
	}
	op.End(ctx, errors.New("killed"))
	expectThinSnapshot(stor)
	if _, err := s.CreateSnapshot(ctx, SnapshotOptions{Volume: "db1"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"fsthaw", "fsfreeze", "lvcreate", "fsthaw"}; !slices.Equal(ev.log, want) {
		t.Errorf("ran %v, want %v", ev.log, want)
	}
	checkVolume(t, s, state.InUse, 1)
}

// A revert killed after its merge: the rerun takes the volume and the
// snapshot over, finds the merge done, and finishes.
func TestRevertKilledAfterTheMergeIsFinishedByARerun(t *testing.T) {
	s, stor, _, _ := snapService(t, true, false)
	takeSnapshot(t, s, stor)
	ctx := context.Background()
	vop, _ := s.State.Claim(ctx, "revert", volUUID, []string{state.Available}, state.Reverting)
	sop, _ := s.State.ClaimSnapshot(ctx, "snapshot revert", snapUUID, []string{state.Available}, state.Restoring)
	vop.End(ctx, errors.New("killed"))
	sop.End(ctx, errors.New("killed"))
	stor.ExpectFail(5, "", notFound, lvsOfName(snapLV)...)
	stor.Expect(snapReport("volume-"+volUUID, "1073741824", "blk,blk-vol-"+volUUID), lvsOf(volUUID)...)
	res, err := s.RevertSnapshot(ctx, "s1")
	if err != nil || !res.Consumed {
		t.Fatalf("rerun: %+v, %v", res, err)
	}
	checkVolume(t, s, state.Available, 0)
}

// A freeze that failed for another reason than a missing agent may have
// frozen some filesystems: auto goes on crash-consistent and thaws after.
func TestFailedFreezeIsThawedAll(t *testing.T) {
	s, stor, hv, ev := snapService(t, true, true)
	hv.freezeErr = errors.New("guest agent timed out")
	expectThinSnapshot(stor)
	sn, err := s.CreateSnapshot(context.Background(), SnapshotOptions{Volume: "db1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"fsfreeze", "lvcreate", "fsthaw"}; !slices.Equal(ev.log, want) || sn.Consistency != Crash {
		t.Errorf("ran %v, want %v; consistency %q", ev.log, want, sn.Consistency)
	}
}

// A snapshot create killed after its lvcreate left the volume held, the
// snapshot's row in creating and its LV: the same command again (same
// --name) takes both over and finishes with that LV, as a rerun of a
// volume create does.
func TestKilledSnapshotCreateIsFinishedByARerun(t *testing.T) {
	s, stor, _, _ := snapService(t, true, false)
	ctx := context.Background()
	vop, err := s.State.Claim(ctx, "snapshot", volUUID, []string{state.Available}, state.Snapshotting)
	if err != nil {
		t.Fatal(err)
	}
	sop, err := s.State.InsertSnapshot(ctx, &state.Snapshot{UUID: snapUUID, Name: "s1", Volume: volUUID, SizeBytes: 1 << 30, Status: state.Creating})
	if err != nil {
		t.Fatal(err)
	}
	vop.End(ctx, errors.New("killed"))
	sop.End(ctx, errors.New("killed"))
	s.testHookUUID = "6b6b6b6b-1111-2222-3333-444455556666" // the rerun's own, unused
	stor.Expect(snapReport(snapLV, "1073741824", "blk,blk-snap-"+snapUUID+",blk-vol-"+volUUID), lvsOfName(snapLV)...)
	sn, err := s.CreateSnapshot(ctx, SnapshotOptions{Volume: "db1", Name: "s1"})
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if sn.UUID != snapUUID || sn.Status != state.Available || sn.Path != "/dev/blk/"+snapLV {
		t.Errorf("snapshot = %+v", sn)
	}
	checkVolume(t, s, state.Available, 1)

	// A snapshot of that name that is not a killed create is no rerun.
	if _, err := s.CreateSnapshot(ctx, SnapshotOptions{Volume: "db1", Name: "s1"}); !errors.Is(err, ErrConflict) {
		t.Errorf("create of an existing snapshot's name: err = %v, want a conflict", err)
	}
	checkVolume(t, s, state.Available, 1)
}

// Nor is a create still running: its row is left to it.
func TestSnapshotCreateRunningIsNotTakenOver(t *testing.T) {
	s, _, _, _ := snapService(t, true, false)
	ctx := context.Background()
	if _, err := s.State.InsertSnapshot(ctx, &state.Snapshot{UUID: snapUUID, Name: "s1", Volume: volUUID, SizeBytes: 1 << 30, Status: state.Creating}); err != nil {
		t.Fatal(err)
	}
	s.testHookUUID = "6b6b6b6b-1111-2222-3333-444455556666"
	if _, err := s.CreateSnapshot(ctx, SnapshotOptions{Volume: "db1", Name: "s1"}); !errors.Is(err, ErrConflict) {
		t.Errorf("err = %v, want a conflict", err)
	}
	if sn, err := s.State.Snapshot(ctx, "s1"); err != nil || sn.Status != state.Creating || sn.UUID != snapUUID {
		t.Errorf("snapshot = %+v, %v; want it left creating", sn, err)
	}
	checkVolume(t, s, state.Available, 1)
}

// A rerun killed too holds the volume once more: the status to go back to
// must survive both takeovers.
func TestTwiceKilledSnapshotIsTakenOverStill(t *testing.T) {
	s, stor, _, _ := snapService(t, true, true)
	ctx := context.Background()
	for _, from := range []string{state.InUse, state.Snapshotting} {
		op, err := s.State.Claim(ctx, "snapshot", volUUID, []string{from}, state.Snapshotting)
		if err != nil {
			t.Fatal(err)
		}
		op.End(ctx, errors.New("killed"))
	}
	expectThinSnapshot(stor)
	if _, err := s.CreateSnapshot(ctx, SnapshotOptions{Volume: "db1"}); err != nil {
		t.Fatal(err)
	}
	checkVolume(t, s, state.InUse, 1)
}

// A merge done and a later step failed: the snapshot's LV is gone, so it
// must not be listed available again (a later revert to it would "succeed"
// by doing nothing); the volume says to rerun, and the rerun finishes.
func TestRevertFailingAfterTheMergeKeepsTheSnapshotForTheRerun(t *testing.T) {
	s, stor, _, _ := snapService(t, true, false)
	takeSnapshot(t, s, stor)
	ctx := context.Background()
	stor.Expect(snapReport(snapLV, "1073741824", "blk"), lvsOfName(snapLV)...)
	stor.Expect("", "lvconvert", "--yes", "--merge", "blk/"+snapLV)
	stor.ExpectFail(5, "", notFound, lvsOfName(snapLV)...)
	stor.ExpectFail(5, "", "connection reset", lvsOf(volUUID)...)
	if _, err := s.RevertSnapshot(ctx, "s1"); err == nil {
		t.Fatal("revert whose last step failed succeeded")
	}
	if sn, err := s.State.Snapshot(ctx, "s1"); err != nil || sn.Status == state.Available {
		t.Errorf("merged snapshot after the failure: %+v, %v; want it not available", sn, err)
	}
	if v, _ := s.State.Volume(ctx, volUUID); v.Status != state.Error || !strings.Contains(v.LastError, "rerun") {
		t.Errorf("volume %q (%q), want error asking for a rerun", v.Status, v.LastError)
	}
	stor.ExpectFail(5, "", notFound, lvsOfName(snapLV)...)
	stor.Expect(snapReport("volume-"+volUUID, "1073741824", "blk,blk-vol-"+volUUID), lvsOf(volUUID)...)
	if res, err := s.RevertSnapshot(ctx, "s1"); err != nil || !res.Consumed {
		t.Fatalf("rerun: %+v, %v", res, err)
	}
	checkVolume(t, s, state.Available, 0)
}

// A volume extended since its snapshot keeps its size when reverted (as
// Cinder extends it again after the revert): the file copied back is the
// snapshot's size, and would be shorter than the volume's record.
func TestNFSRevertKeepsTheSizeTheVolumeGrewTo(t *testing.T) {
	hv := newFakeHV("web1")
	s, stor, _ := twoHostService(t, "nfs-1", config.Backend{Type: "nfs", Host: "stor1", Export: export, Path: "/srv/blk"}, nil, hv)
	addAvailable(t, s, state.Volume{UUID: volUUID, Name: "files1", Backend: "nfs-1", SizeBytes: 1 << 30, Thin: true,
		Path: "/srv/blk/volume-" + volUUID})
	s.testHookUUID = snapUUID
	file, vol := "/srv/blk/snapshot-"+snapUUID, "/srv/blk/volume-"+volUUID
	stor.Expect("", "cp", "--sparse=always", "--", vol, file)
	stor.Expect("1073741824,8,512\n", "stat", "--format", "%s,%b,%B", file)
	ctx := context.Background()
	if _, err := s.CreateSnapshot(ctx, SnapshotOptions{Volume: "files1", Name: "f1"}); err != nil {
		t.Fatal(err)
	}
	s.State.MoveVolume(ctx, volUUID, state.Move{From: []string{state.Available}, To: state.Available, SizeBytes: 2 << 30}) // extended
	stor.Expect("", "cp", "--sparse=always", "--", file, vol)
	stor.Expect("1073741824,8,512\n", "stat", "--format", "%s,%b,%B", vol)
	stor.Expect("1073741824,8,512\n", "stat", "--format", "%s,%b,%B", vol)
	stor.Expect("", "truncate", "--size", ">2147483648", vol)
	stor.Expect("2147483648,8,512\n", "stat", "--format", "%s,%b,%B", vol)
	res, err := s.RevertSnapshot(ctx, "f1")
	if err != nil {
		t.Fatal(err)
	}
	if res.Volume.SizeBytes != 2<<30 {
		t.Errorf("volume after the revert: %d bytes", res.Volume.SizeBytes)
	}
}

// The same for LVM: a merge gives the volume its snapshot's size, which
// an extend since outgrew; the volume is grown back.
func TestLVMRevertKeepsTheSizeTheVolumeGrewTo(t *testing.T) {
	s, stor, _, _ := snapService(t, true, false)
	takeSnapshot(t, s, stor)
	ctx := context.Background()
	s.State.MoveVolume(ctx, volUUID, state.Move{From: []string{state.Available}, To: state.Available, SizeBytes: 2 << 30}) // extended
	stor.Expect(snapReport(snapLV, "1073741824", "blk"), lvsOfName(snapLV)...)
	stor.Expect("", "lvconvert", "--yes", "--merge", "blk/"+snapLV)
	stor.ExpectFail(5, "", notFound, lvsOfName(snapLV)...)
	stor.Expect(snapReport("volume-"+volUUID, "1073741824", "blk,blk-vol-"+volUUID), lvsOf(volUUID)...)
	stor.Expect(snapReport("volume-"+volUUID, "1073741824", "blk,blk-vol-"+volUUID), lvsOf(volUUID)...)
	stor.Expect("", "lvextend", "-L", "2147483648b", "blk/volume-"+volUUID)
	stor.Expect(snapReport("volume-"+volUUID, "2147483648", "blk,blk-vol-"+volUUID), lvsOf(volUUID)...)
	res, err := s.RevertSnapshot(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Consumed || res.Volume.SizeBytes != 2<<30 {
		t.Errorf("result = %+v", res)
	}
}
