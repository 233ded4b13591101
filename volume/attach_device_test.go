package volume

import (
	"context"
	"testing"

	"github.com/blk-project/blk/state"
)

// An attach in progress to the same instance holds its device in the state
// file before the domain shows it: the next attach takes the next device.
func TestAttachSkipsDevicesReservedByAnAttachInProgress(t *testing.T) {
	ctx := context.Background()
	hv := newFakeHV("web1")
	s, _, _ := attachService(t, newWorld(), hv)
	other := "0a0b0c0d-9999-2222-3333-444455556666"
	op, err := s.State.InsertVolume(ctx, &state.Volume{UUID: other, Name: "db2", Backend: "lvm-1", SizeBytes: 1 << 30, Status: state.Available})
	if err != nil {
		t.Fatal(err)
	}
	op.End(ctx, nil)
	if _, err = s.State.Reserve(ctx, other, state.AttachmentRecord{Volume: other, Instance: "web1", Host: "comp1", Device: "vdb"}); err != nil {
		t.Fatal(err)
	}
	v, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"})
	if err != nil {
		t.Fatalf("attach beside an attach in progress: %v", err)
	}
	if v.Attachment == nil || v.Attachment.Device != "vdc" {
		t.Fatalf("attachment = %+v, want device vdc", v.Attachment)
	}
}
