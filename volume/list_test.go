package volume

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/state"
)

// The fast JSON list (rendered by SQLite, or PostgreSQL) and the typed one (encoding/json of
// Volume) are one contract: same objects, same fields, same values.
func TestListJSONIsTheVolumeContract(t *testing.T) {
	ctx := context.Background()
	s := newService(t, exectest.New(t, "stor1"), nil)
	hostile := "tgtadm: \"quoted\"\nnew line\ttab \\ back <html> & ünïcødé \x01"
	for i, v := range []state.Volume{
		{UUID: "00000000-0000-0000-0000-00000000000a", Name: "plain", Backend: "lvm-1", SizeBytes: 1 << 30, Status: state.Available, Path: "/dev/blk/volume-a"},
		{UUID: "00000000-0000-0000-0000-00000000000b", Name: "thin.one", Backend: "lvm-1", SizeBytes: 5 << 30, Thin: true, Status: state.Available, Source: "snapshot:x"},
		{UUID: "00000000-0000-0000-0000-00000000000c", Name: "broken_1", Backend: "lvm-2", SizeBytes: 1 << 20, Status: state.Creating},
	} {
		if _, err := s.State.InsertVolume(ctx, &v); err != nil {
			t.Fatal(i, err)
		}
	}
	msg := hostile
	if _, err := s.State.MoveVolume(ctx, "00000000-0000-0000-0000-00000000000c", state.Move{From: []string{state.Creating}, To: state.Error, LastError: &msg}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.State.Reserve(ctx, "00000000-0000-0000-0000-00000000000a", state.AttachmentRecord{Instance: "web1", Host: "comp1", Device: "vdb"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.State.FinishAttach(ctx, "00000000-0000-0000-0000-00000000000a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.State.InsertSnapshot(ctx, &state.Snapshot{UUID: "s1", Name: "snap1", Volume: "00000000-0000-0000-0000-00000000000b",
		SizeBytes: 1, Status: state.Available}); err != nil {
		t.Fatal(err)
	}

	for _, f := range []ListOptions{{}, {Status: state.InUse}, {Backend: "lvm-2"}, {Instance: "web1"}, {Status: "nosuch"}} {
		vols, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		typed, err := json.Marshal(vols)
		if err != nil {
			t.Fatal(err)
		}
		var fast bytes.Buffer
		if err := s.WriteListJSON(ctx, f, &fast); err != nil {
			t.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal(typed, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(fast.Bytes(), &b); err != nil {
			t.Fatalf("filter %+v: fast JSON does not parse: %v\n%s", f, err, fast.Bytes())
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("filter %+v:\n typed %s\n fast  %s", f, typed, fast.Bytes())
		}
		if f == (ListOptions{}) && (len(vols) != 3 || vols[0].LastError != hostile || vols[1].Attachment == nil || vols[2].SnapshotCount != 1) {
			t.Errorf("fixture not as meant: %+v", vols)
		}
	}
}
