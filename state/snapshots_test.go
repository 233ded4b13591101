package state

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/pgtest"
)

func TestSnapshotRowsMoveByCompareAndSet(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.State(t))
	v := Volume{UUID: "v1", Name: "db1", Backend: "lvm-1", SizeBytes: 1 << 30, Status: Available}
	op, err := s.InsertVolume(ctx, &v)
	if err != nil {
		t.Fatal(err)
	}
	op.End(ctx, nil)
	sn := Snapshot{UUID: "s1", Name: "snap1", Volume: "v1", SizeBytes: 1 << 30, Status: Creating}
	sop, err := s.InsertSnapshot(ctx, &sn)
	if err != nil {
		t.Fatal(err)
	}
	// Taken name: a conflict that says so.
	dup := Snapshot{UUID: "s2", Name: "snap1", Volume: "v1", Status: Creating}
	if _, err = s.InsertSnapshot(ctx, &dup); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), `snapshot "snap1" already exists (creating)`) {
		t.Errorf("duplicate: %v", err)
	}
	// A running create holds it: delete cannot claim it.
	if _, err = s.ClaimSnapshot(ctx, "snapshot delete", "s1", []string{Creating}, Deleting); !errors.Is(err, ErrConflict) ||
		!strings.Contains(err.Error(), "still running") {
		t.Errorf("claim of a held snapshot: %v", err)
	}
	got, err := s.MoveSnapshot(ctx, "s1", SnapshotMove{From: []string{Creating}, To: Available, Path: "/dev/blk/_snapshot-s1", Consistency: "filesystem"})
	if err != nil || got.Consistency != "filesystem" || got.VolumeName != "db1" || got.Backend != "lvm-1" {
		t.Fatalf("move: %+v, %v", got, err)
	}
	sop.End(ctx, nil)
	if _, err = s.MoveSnapshot(ctx, "s1", SnapshotMove{From: []string{Creating}, To: Error}); !errors.Is(err, ErrConflict) {
		t.Errorf("a move from a status it is not in: %v", err)
	}
	if vol, _ := s.Volume(ctx, "db1"); vol.SnapshotCount != 1 {
		t.Errorf("snapshot_count = %d", vol.SnapshotCount)
	}
	if list, _ := s.ListSnapshots(ctx, "v1"); len(list) != 1 || list[0].Name != "snap1" {
		t.Errorf("list = %+v", list)
	}
	if list, _ := s.ListSnapshots(ctx, "other"); len(list) != 0 {
		t.Errorf("list of another volume = %+v", list)
	}
	dop, err := s.ClaimSnapshot(ctx, "snapshot delete", "s1", []string{Available}, Deleting)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSnapshot(ctx, "s1", Deleting); err != nil {
		t.Fatal(err)
	}
	dop.End(ctx, nil)
	if _, err := s.Snapshot(ctx, "snap1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
}

// A state file of the previous schema gains the snapshot columns.
func TestSnapshotColumnsAreAddedToAnOlderFile(t *testing.T) {
	sqliteOnly(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path)
	// Back to the schema before the snapshot migration (the second).
	if _, err := s.db.Exec(`DROP TABLE moved; DROP TABLE state_id; ALTER TABLE snapshots DROP COLUMN consistency; ALTER TABLE snapshots DROP COLUMN last_error;
		PRAGMA user_version = 1`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	if _, err := s.ListSnapshots(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if v, err := s.schemaVersion(ctx); v != len(migrations) || err != nil {
		t.Errorf("schema version %d (%v), want %d", v, err, len(migrations))
	}
}
