package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/blk-project/blk/internal/fault"
	"github.com/blk-project/blk/internal/pgtest"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenMakesPrivateMigratedFile(t *testing.T) {
	sqliteOnly(t)
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

// Read-only opens change nothing on disk: a missing file is an error naming
// it (a mistyped --state is no empty list), or empty for a dry run.
func TestReadOnlyNeverCreatesTheFile(t *testing.T) {
	sqliteOnly(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "sub")
	path := filepath.Join(dir, "state.db")
	_, err := Open(ctx, path, ReadOnly)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no state file at "+path) {
		t.Errorf("read-only open of a missing file: err = %v", err)
	}
	s, err := Open(ctx, path, ReadOnlyOrEmpty)
	if err != nil {
		t.Fatal(err)
	}
	vols, err := s.ListVolumes(ctx, VolumeFilter{})
	s.Close()
	if err != nil || len(vols) != 0 {
		t.Fatalf("vols = %v, err = %v", vols, err)
	}
	if _, err = os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a read-only open created %s: %v", dir, err)
	}
	if _, err = open(t, path).InsertVolume(ctx, &Volume{UUID: "u1", Name: "db1", Backend: "b", SizeBytes: 1, Status: Available}); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(ctx, path, ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if v, err := ro.Volume(ctx, "db1"); err != nil || v.UUID != "u1" {
		t.Errorf("read-only: %+v, %v", v, err)
	}
	if _, err := ro.InsertVolume(ctx, &Volume{UUID: "u2", Name: "db2", Backend: "b", SizeBytes: 1, Status: Available}); err == nil {
		t.Error("a read-only store wrote")
	}
}

// The path is a file name, not an SQLite URI: %, #, ? and spaces are
// literal, and the file and its WAL are private.
func TestStatePathIsTakenLiterally(t *testing.T) {
	sqliteOnly(t)
	ctx := context.Background()
	for _, name := range []string{"a%41.db", "a#b.db", "a?mode=memory.db", "a b.db", "a?_busy_timeout=0#x%2F.db"} {
		dir := t.TempDir()
		path := filepath.Join(dir, name)
		s := open(t, path)
		if _, err := s.InsertVolume(ctx, &Volume{UUID: "u1", Name: "db1", Backend: "b", SizeBytes: 1, Status: Available}); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{path, path + "-wal", path + "-shm"} {
			fi, err := os.Stat(f)
			if err != nil {
				t.Errorf("%q: %v", name, err)
			} else if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
			}
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 3 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("%q made %q, want only it and its -wal and -shm", name, names)
		}
		s.Close()
		ro, err := Open(ctx, path, ReadOnly)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if _, err := ro.Volume(ctx, "db1"); err != nil {
			t.Errorf("%q read back: %v", name, err)
		}
		ro.Close()
	}
}

func TestStateFileOthersCanReadIsRefused(t *testing.T) {
	sqliteOnly(t)
	path := filepath.Join(t.TempDir(), "state.db")
	open(t, path).Close()
	os.Chmod(path, 0o644)
	for _, m := range []Mode{ReadWrite, ReadOnly} {
		_, err := Open(context.Background(), path, m)
		if err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %d: err = %v, want a refusal saying how to fix it", m, err)
		}
	}
}

// A --state naming a directory or a device is a mistake to point out, not a
// mode to fix: 'chmod 600 /dev/null' would break the machine.
func TestStatePathThatIsNoFileIsRefused(t *testing.T) {
	sqliteOnly(t)
	dir := t.TempDir()
	for _, path := range []string{dir, "/dev/null"} {
		for _, m := range []Mode{ReadWrite, ReadOnly, ReadOnlyOrEmpty} {
			_, err := Open(context.Background(), path, m)
			if err == nil || !errors.Is(err, fault.ErrInvalid) || strings.Contains(err.Error(), "chmod") ||
				!strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("%s, mode %d: err = %v, want bad input saying it is no file", path, m, err)
			}
		}
	}
}

func TestNamesAreUniqueAndMovesAreCompareAndSet(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.State(t))
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
	path := pgtest.State(t)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(ctx, path, ReadWrite)
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
	path := pgtest.State(t)
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
			h, err := Open(ctx, path, ReadWrite)
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

// A volume named as another's UUID (made before names were checked) never
// shadows it: the UUID wins.
func TestUUIDWinsOverAName(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.State(t))
	victim := "6f1c2b7e-3d4a-4b5c-8d9e-0a1b2c3d4e5f"
	for _, v := range []*Volume{
		{UUID: "11111111-2222-4333-8444-555555555555", Name: victim, Backend: "b", SizeBytes: 1, Status: Available},
		{UUID: victim, Name: "db1", Backend: "b", SizeBytes: 1, Status: Available},
	} {
		if _, err := s.InsertVolume(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := s.Volume(ctx, victim); err != nil || v.Name != "db1" {
		t.Fatalf("Volume(%s) = %q, %v; want db1", victim, v.Name, err)
	}
	if v, err := s.Volume(ctx, "db1"); err != nil || v.UUID != victim {
		t.Fatalf("by name: %+v, %v", v, err)
	}
	// A UUID pasted in upper case is the same UUID.
	if v, err := s.Volume(ctx, strings.ToUpper(victim)); err != nil || v.Name != "db1" {
		t.Fatalf("Volume(%s) = %q, %v; want db1", strings.ToUpper(victim), v.Name, err)
	}
}
