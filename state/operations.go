package state

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Owner names this process in the journal: host, pid and start time, so a
// later process can tell a running operation from one whose owner died.
var Owner = func() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s:%d:%d", h, os.Getpid(), time.Now().Unix())
}()

// Op is one journaled operation on an object.
type Op struct {
	s  *Store
	id int64
}

// BeginOp journals that this process starts op on object.
func (s *Store) BeginOp(ctx context.Context, op, object string) (*Op, error) {
	var id int64
	err := s.tx(ctx, func(t *sql.Tx) error {
		ts := now()
		res, err := t.ExecContext(ctx, `INSERT INTO operations (op, object, owner, started_at, heartbeat, state)
			VALUES (?, ?, ?, ?, ?, 'running')`, op, object, Owner, ts, ts)
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	return &Op{s: s, id: id}, err
}

// Step records the step the operation reached, so a rerun can continue.
func (o *Op) Step(ctx context.Context, step string) error {
	return o.s.tx(ctx, func(t *sql.Tx) error {
		_, err := t.ExecContext(ctx, `UPDATE operations SET step = ?, heartbeat = ? WHERE id = ?`, step, now(), o.id)
		return err
	})
}

// End closes the operation as done or failed.
func (o *Op) End(ctx context.Context, err error) {
	st := "done"
	if err != nil {
		st = "failed"
	}
	_ = o.s.tx(context.WithoutCancel(ctx), func(t *sql.Tx) error {
		_, err := t.ExecContext(ctx, `UPDATE operations SET state = ?, heartbeat = ? WHERE id = ?`, st, now(), o.id)
		return err
	})
}

// Holder names the owner of a running operation on object, or "".
func (s *Store) Holder(ctx context.Context, object string) string { return s.holder(ctx, object) }

// holder names the live owner of a running operation on object, or "".
func (s *Store) holder(ctx context.Context, object string) string {
	var op, owner string
	err := s.db.QueryRowContext(ctx, `SELECT op, owner FROM operations WHERE object = ? AND state = 'running'
		ORDER BY id DESC LIMIT 1`, object).Scan(&op, &owner)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%s by %s", op, owner)
}

// Stale reports whether no live process owns a running operation on
// object: the owner ran on this host and its pid is gone (or reused by a
// process that started later). Owners on other hosts are never assumed dead.
func (s *Store) Stale(ctx context.Context, object string) bool {
	var owner string
	err := s.db.QueryRowContext(ctx, `SELECT owner FROM operations WHERE object = ? AND state = 'running'
		ORDER BY id DESC LIMIT 1`, object).Scan(&owner)
	if err == sql.ErrNoRows {
		return true
	}
	if err != nil {
		return false
	}
	return ownerGone(owner)
}

func ownerGone(owner string) bool {
	parts := strings.Split(owner, ":")
	if len(parts) != 3 {
		return false
	}
	if h, _ := os.Hostname(); parts[0] != h {
		return false
	}
	pid, err := strconv.Atoi(parts[1])
	if err != nil {
		return false
	}
	if err = syscall.Kill(pid, 0); err == syscall.ESRCH {
		return true
	}
	started, _ := strconv.ParseInt(parts[2], 10, 64)
	fi, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil && fi.ModTime().Unix() > started+1
}
