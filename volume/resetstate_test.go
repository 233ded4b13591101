package volume

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/blk-project/blk/state"
)

func TestResetStateRefusesWhatRealityContradicts(t *testing.T) {
	ctx := context.Background()
	s, _, lvs, _ := reconService(t)
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	res, err := s.ResetState(ctx, ResetOptions{Volume: "db1", To: state.Available})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("reset of an attached volume to available: %v", err)
	}
	for _, want := range []string{"attachment to web1 on comp1 (attached)", "target 1 on stor1 exports it", "comp1 is logged in to it",
		"domain web1 on comp1 has its disk (vdb)", "--force"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if v, _ := s.State.Volume(ctx, "db1"); v.Status != state.InUse || len(res.Found) != 4 {
		t.Errorf("refused reset changed the volume to %s, found %q", v.Status, res.Found)
	}
	// in-use agrees with reality; error always does.
	if res, err = s.ResetState(ctx, ResetOptions{Volume: "db1", To: state.InUse}); err != nil || res.Volume.Status != state.InUse {
		t.Errorf("reset to in-use: %+v %v", res, err)
	}
	res, err = s.ResetState(ctx, ResetOptions{Volume: "db1", To: state.Error})
	if err != nil || res.Volume.Status != state.Error || res.From != state.InUse || !strings.Contains(res.Volume.LastError, "was in-use") {
		t.Fatalf("reset to error: %+v %v", res, err)
	}
	// Back to in-use: the attachment is still there and its disk in web1.
	if _, err = s.ResetState(ctx, ResetOptions{Volume: "db1", To: state.InUse}); err != nil {
		t.Fatal(err)
	}
	// Forced, it is done and says what it overrode; the attachment row goes,
	// and reconcile names what is left for --fix.
	res, err = s.ResetState(ctx, ResetOptions{Volume: "db1", To: state.Available, Force: true})
	if err != nil || res.Volume.Status != state.Available || res.Volume.Attachment != nil || len(res.Found) != 4 ||
		!strings.Contains(res.Volume.LastError, "with --force despite") {
		t.Fatalf("forced: %+v %v", res, err)
	}
	if _, err := s.State.Attachment(ctx, volUUID); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("attachment row left: %v", err)
	}
	got := kinds(reconcile(t, s, ReconcileOptions{}))
	for _, k := range []string{"orphan-target", "orphan-session", "orphan-account", "orphan-disk"} {
		if !strings.Contains(strings.Join(got, "\n"), k) {
			t.Errorf("reconcile after a forced reset lacks %s: %q", k, got)
		}
	}
	// in-use with no attachment, and available with no LV: refused.
	if _, err := s.ResetState(ctx, ResetOptions{Volume: "db1", To: state.InUse}); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "it has no attachment") {
		t.Errorf("in-use without an attachment: %v", err)
	}
	delete(lvs, "volume-"+volUUID)
	if _, err := s.ResetState(ctx, ResetOptions{Volume: "db1", To: state.Available}); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "its LV is gone on stor1") {
		t.Errorf("available without an LV: %v", err)
	}
}

// An attach killed before it made anything: only its reservation
// contradicts available; forced, it goes, and nothing is left.
func TestResetStateOfANothingMadeAttach(t *testing.T) {
	ctx := context.Background()
	s, _, _, _ := reconService(t)
	rec := state.AttachmentRecord{Volume: volUUID, Instance: "web1", Host: "comp1", Device: "vdb", Status: state.Attaching,
		Conn: state.ConnectionInfo{DriverVolumeType: "iscsi", TargetIQN: prefix + volUUID}}
	if _, err := s.State.Reserve(ctx, volUUID, rec); err != nil {
		t.Fatal(err)
	}
	res, err := s.ResetState(ctx, ResetOptions{Volume: "db1", To: state.Available})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "attachment to web1 on comp1 (attaching)") {
		t.Fatalf("with its reservation: %+v %v", res, err)
	}
	res, err = s.ResetState(ctx, ResetOptions{Volume: "db1", To: state.Available, Force: true})
	if err != nil || res.Volume.Status != state.Available || len(res.Found) != 1 {
		t.Fatalf("forced: %+v %v", res, err)
	}
	if got := kinds(reconcile(t, s, ReconcileOptions{})); len(got) != 0 {
		t.Errorf("reconcile: %q", got)
	}
}

func TestResetStateNeverOverridesALiveOperation(t *testing.T) {
	ctx := context.Background()
	s, _, _, _ := reconService(t)
	if _, err := s.State.Claim(ctx, "delete", volUUID, []string{state.Available}, state.Deleting); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResetState(ctx, ResetOptions{Volume: "db1", To: state.Error, Force: true}); !errors.Is(err, ErrConflict) ||
		!strings.Contains(err.Error(), "still running") {
		t.Errorf("err = %v", err)
	}
	if _, err := s.ResetState(ctx, ResetOptions{Volume: "db1", To: state.Deleting}); !errors.Is(err, ErrInvalid) {
		t.Errorf("--to deleting: %v", err)
	}
}
