package volume

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/state"
)

// dry makes a dry-run service over the state, runners and libvirt of s.
func dry(s *Service, plan *strings.Builder) *Service {
	hs := NewHosts(s.Config, nil, plan)
	hs.New, hs.NewHypervisor = s.Hosts.New, s.Hosts.NewHypervisor
	return NewService(s.Config, s.ConfigFile, s.State.(stateStore).Store, hs)
}

func TestDryRunAttachPrintsThePlanMaskedAndChangesNothing(t *testing.T) {
	ctx := context.Background()
	hv := newFakeHV("web1")
	real, stor, comp := attachService(t, nil, hv)
	var plan strings.Builder
	s := dry(real, &plan)
	iqn := "iqn.2026-11.org.example.blk:" + volUUID
	// Only reads reach the hosts: any other command fails the test.
	comp.Expect("InitiatorName=iqn.2026-11.org.example:comp1\n", "cat", "/etc/iscsi/initiatorname.iscsi")
	stor.Expect("Target 1: iqn.other:x\n", "tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "target")

	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	node := "comp1: iscsiadm -m node -T " + iqn + " -p 192.0.2.10:3260 "
	want := "stor1: tgtadm --lld iscsi --op new --mode target --tid 2 --targetname " + iqn + "\n" +
		"stor1: tgtadm --lld iscsi --op new --mode logicalunit --tid 2 --lun 1 --backing-store /dev/blk/volume-" + volUUID + "\n" +
		"stor1: tgtadm --lld iscsi --op bind --mode target --tid 2 --initiator-name iqn.2026-11.org.example:comp1\n" +
		"stor1: tgtadm --lld iscsi --op new --mode account --user blk-0a0b0c0d --password '***'\n" +
		"stor1: tgtadm --lld iscsi --op bind --mode account --tid 2 --user blk-0a0b0c0d\n" +
		node + "-o new\n" +
		node + "-o update -n node.startup -v automatic\n" +
		node + "-o update -n node.session.auth.authmethod -v CHAP\n" +
		node + "-o update -n node.session.auth.username -v blk-0a0b0c0d\n" +
		node + "-o update -n node.session.auth.password -v '***'\n" +
		node + "--login\n" +
		`comp1: libvirt attach-device web1 --live --config <disk type="block" device="disk"> <driver name="qemu" type="raw" cache="none" io="native"></driver> <source dev="/dev/disk/by-path/ip-192.0.2.10:3260-iscsi-` + iqn + `-lun-1"></source> <target dev="vdb" bus="virtio"></target> <serial>0a0b0c0d-1111-2222-3</serial> </disk>` + "\n"
	if plan.String() != want {
		t.Errorf("plan:\n%s\nwant:\n%s", plan.String(), want)
	}
	if strings.Contains(plan.String(), "s3cret") {
		t.Error("the plan shows the CHAP password")
	}
	checkUnchanged(t, real, hv, state.Available)
}

func checkUnchanged(t *testing.T, s *Service, hv *fakeHV, status string) {
	t.Helper()
	ctx := context.Background()
	if len(hv.calls) != 0 {
		t.Errorf("libvirt was changed: %q", hv.calls)
	}
	v, _ := s.State.Volume(ctx, "db1")
	if v.Status != status {
		t.Errorf("volume is %s, want %s", v.Status, status)
	}
	if status == state.Available {
		if _, err := s.State.Attachment(ctx, volUUID); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("attachment row: %v", err)
		}
	}
	if h := s.State.Holder(ctx, volUUID); h != "" {
		t.Errorf("an operation is left running: %s", h)
	}
}

func TestDryRunDetachPrintsThePlanAndChangesNothing(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	hv := newFakeHV("web1")
	real, _, _ := attachService(t, w, hv)
	if _, _, err := real.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	before := w.count
	hv.calls = nil
	rec, _ := real.State.Attachment(ctx, volUUID)
	var plan strings.Builder
	s := dry(real, &plan)
	res, err := s.Detach(ctx, DetachOptions{Volume: "db1"})
	if err != nil || !res.WasPresent {
		t.Fatalf("detach: %+v %v", res, err)
	}
	iqn := "iqn.2026-11.org.example.blk:" + volUUID
	node := "comp1: iscsiadm -m node -T " + iqn + " -p 192.0.2.10:3260 "
	disk := `<disk type="block" device="disk"> <driver name="qemu" type="raw" cache="none" io="native"></driver> <source dev="/dev/disk/by-path/ip-192.0.2.10:3260-iscsi-` + iqn + `-lun-1"></source> <target dev="vdb" bus="virtio"></target> <serial>0a0b0c0d-1111-2222-3</serial> </disk>`
	want := "comp1: libvirt detach-device web1 --config " + disk + "\n" +
		"comp1: libvirt detach-device web1 --live " + disk + "\n" +
		"comp1: blockdev --flushbufs /dev/sdb\n" +
		"comp1: tee /sys/block/sdb/device/delete\n" +
		node + "--logout\n" +
		node + "-o delete\n" +
		"stor1: tgtadm --lld iscsi --op delete --mode account --user blk-0a0b0c0d\n" +
		"stor1: tgtadm --lld iscsi --op unbind --mode target --tid 1 --initiator-name iqn.2026-11.org.example:comp1\n" +
		"stor1: tgtadm --lld iscsi --op delete --mode logicalunit --tid 1 --lun 1\n" +
		"stor1: tgtadm --lld iscsi --op delete --mode target --force --tid 1\n"
	if plan.String() != want {
		t.Errorf("plan:\n%s\nwant:\n%s", plan.String(), want)
	}
	if w.count != before || w.empty() == "" {
		t.Errorf("the hosts were changed: %d mutating commands, left %q", w.count-before, w.empty())
	}
	checkUnchanged(t, real, hv, state.InUse)
	if after, _ := real.State.Attachment(ctx, volUUID); after.Step != rec.Step {
		t.Errorf("attachment step moved from %q to %q", rec.Step, after.Step)
	}
}

func TestDryRunDeletePrintsTheRemovalRefusesWhatTheRealOneWouldAndChangesNothing(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	var plan strings.Builder
	real := newService(t, f, nil)
	u1, u2 := "eeeeeeee-2222-3333-4444-555555555555", "ffffffff-2222-3333-4444-555555555555"
	insert(t, real, "busy", u1, state.InUse)
	insert(t, real, "old", u2, state.Available)
	s := newService(t, f, &plan)
	s.State = newDryStore(real.State)
	f.Expect(lvsReport(u2, "629145600"), lvsOf(u2)...)
	res, err := s.Delete(ctx, DeleteOptions{Refs: []string{"busy", "old"}})
	if !errors.Is(err, ErrPartial) || res[0].Status != "failed" || !strings.Contains(res[0].Error, "detach it first") || res[1].Status != "would delete" {
		t.Errorf("err %v, results %+v", err, res)
	}
	if want := "stor1: lvremove --yes blk/volume-" + u2 + "\n"; plan.String() != want {
		t.Errorf("plan %q, want %q", plan.String(), want)
	}
	for name, status := range map[string]string{"busy": state.InUse, "old": state.Available} {
		if v, err := real.Show(ctx, name); err != nil || v.Status != status {
			t.Errorf("%s: %+v %v", name, v, err)
		}
	}
}
