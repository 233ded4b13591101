package state

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/blk-project/blk/internal/owner"
	"github.com/blk-project/blk/internal/pgtest"
)

// A pool's lock is one live holder's; a dead holder's is taken over, and
// an ended one is free again.
func TestLockIsOneLiveHoldersAndADeadOnesIsTakenOver(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.State(t))
	const pool = "pool:stor1:blk/pool"
	op, err := s.Lock(ctx, "thin_delta", pool)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock(ctx, "thin_delta", pool); !errors.Is(err, ErrConflict) {
		t.Errorf("second lock while held: %v", err)
	}
	op.End(ctx, nil)
	old := Owner
	Owner = fmt.Sprintf("%s:%s:%s:%d:1", owner.Hostname(), owner.BootID(), owner.PidNS(), deadPID(t))
	if _, err := s.Lock(ctx, "thin_delta", pool); err != nil {
		t.Fatal(err)
	}
	Owner = old
	if _, err := s.Lock(ctx, "thin_delta", pool); err != nil {
		t.Errorf("a dead holder's lock: %v", err)
	}
}

// The cache of backups keeps one row per name: the newest.
func TestRecordBackupKeepsTheNewestOfAName(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.State(t))
	for _, u := range []string{"b1", "b2"} {
		if err := s.RecordBackup(ctx, BackupRecord{UUID: u, Name: "nightly", Volume: "v1", Repo: "r", Status: Available, CreatedAt: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	var u string
	if err := s.db.QueryRowContext(ctx, `SELECT count(*), max(uuid) FROM backups`).Scan(&n, &u); err != nil || n != 1 || u != "b2" {
		t.Errorf("backups: %d rows, %q, %v", n, u, err)
	}
}
