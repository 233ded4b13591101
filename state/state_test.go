package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenMakesPrivateMigratedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "state.db")
	s := open(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	var v int
	s.db.QueryRow(`PRAGMA user_version`).Scan(&v)
	var mode string
	s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode)
	if v != len(migrations) || mode != "wal" {
		t.Errorf("user_version = %d, journal_mode = %s", v, mode)
	}
	// Reopening applies nothing twice.
	open(t, path)
}

func TestReadOnlyChangesNothingOnDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(context.Background(), path, true)
	if err != nil {
		t.Fatal(err)
	}
	vols, err := s.ListVolumes(context.Background(), VolumeFilter{})
	s.Close()
	if err != nil || len(vols) != 0 {
		t.Fatalf("vols = %v, err = %v", vols, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read-only open created the file: %v", err)
	}
}

func TestNamesAreUniqueAndMovesAreCompareAndSet(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	v := &Volume{UUID: "u1", Name: "db1", Backend: "lvm-1", SizeBytes: 1 << 30, Status: Creating}
	if _, err := s.InsertVolume(ctx, v); err != nil {
		t.Fatal(err)
	}
	_, err := s.InsertVolume(ctx, &Volume{UUID: "u2", Name: "db1", Backend: "lvm-1", SizeBytes: 1, Status: Creating})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate name: err = %v", err)
	}
	got, err := s.MoveVolume(ctx, "u1", Move{From: []string{Creating}, To: Available, SizeBytes: 2 << 30, Path: "/dev/blk/x"})
	if err != nil || got.Status != Available || got.SizeBytes != 2<<30 || got.PreviousStatus != Creating {
		t.Fatalf("move: %+v, %v", got, err)
	}
	_, err = s.MoveVolume(ctx, "u1", Move{From: []string{Creating}, To: Error})
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Status != Available {
		t.Fatalf("stale move: err = %v", err)
	}
	if _, err := s.Volume(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing: err = %v", err)
	}
	if byUUID, err := s.Volume(ctx, "u1"); err != nil || byUUID.Name != "db1" {
		t.Errorf("by uuid: %+v %v", byUUID, err)
	}
}

// Many handles (as many processes would) racing on one file: every write
// lands once, none fails with "database is locked".
func TestConcurrentWritersOnOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(ctx, path, false)
			if err != nil {
				errs[i] = err
				return
			}
			defer s.Close()
			for j := 0; j < 20; j++ {
				v := &Volume{UUID: fmt.Sprintf("u%d-%d", i, j), Name: fmt.Sprintf("v%d-%d", i, j), Backend: "b", SizeBytes: 1, Status: Creating}
				if _, err := s.InsertVolume(ctx, v); err != nil {
					errs[i] = err
					return
				}
				if _, err := s.MoveVolume(ctx, v.UUID, Move{From: []string{Creating}, To: Available}); err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	vols, err := open(t, path).ListVolumes(ctx, VolumeFilter{Status: Available})
	if err != nil || len(vols) != n*20 {
		t.Fatalf("got %d available volumes, want %d (%v)", len(vols), n*20, err)
	}
}

// Two attaches of one volume racing from separate handles: exactly one
// reserves it; the loser learns who holds it.
func TestReserveRaceHasOneWinner(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path)
	s.InsertVolume(ctx, &Volume{UUID: "u1", Name: "db1", Backend: "b", SizeBytes: 1, Status: Creating})
	s.MoveVolume(ctx, "u1", Move{From: []string{Creating}, To: Available})
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := Open(ctx, path, false)
			if err != nil {
				errs[i] = err
				return
			}
			defer h.Close()
			_, errs[i] = h.Reserve(ctx, "u1", AttachmentRecord{Instance: fmt.Sprintf("vm%d", i), Host: "c1", Device: "vdb"})
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, ErrConflict):
			t.Errorf("loser got %v, want a conflict", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d reservations won, want 1", wins)
	}
	if _, err := s.Attachment(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
}
