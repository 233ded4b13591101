package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/blk-project/blk/internal/owner"
)

// Owner names this process in the journal (see owner.Self).
var Owner = owner.Self

// Op is one journaled operation on an object.
type Op struct {
	s  *Store
	id int64
}

// BeginOp journals that this process starts op on object.
func (s *Store) BeginOp(ctx context.Context, op, object string) (*Op, error) {
	var o *Op
	err := s.tx(ctx, func(t tx) error {
		var err error
		o, err = s.beginOp(ctx, t, op, object)
		return err
	})
	return o, err
}

func (s *Store) beginOp(ctx context.Context, t tx, op, object string) (*Op, error) {
	ts := now()
	var id int64
	err := t.QueryRowContext(ctx, `INSERT INTO operations (op, object, owner, started_at, heartbeat, state)
		VALUES (?, ?, ?, ?, ?, 'running') RETURNING id`, op, object, Owner, ts, ts).Scan(&id)
	return &Op{s: s, id: id}, err
}

// Step records the step the operation reached, so a rerun can continue.
func (o *Op) Step(ctx context.Context, step string) error {
	return o.s.tx(ctx, func(t tx) error {
		_, err := t.ExecContext(ctx, `UPDATE operations SET step = ?, heartbeat = ? WHERE id = ?`, step, now(), o.id)
		return err
	})
}

// endTimeout bounds End: it runs after Ctrl-C or --timeout, when the
// command's own context is already done.
const endTimeout = 10 * time.Second

// End closes the operation as done or failed. It runs even when ctx is
// cancelled (that is when it matters most: an operation left running blocks
// the volume), within endTimeout.
func (o *Op) End(ctx context.Context, err error) error {
	st := "done"
	if err != nil {
		st = "failed"
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endTimeout)
	defer cancel()
	if eerr := o.s.tx(ctx, func(t tx) error {
		_, err := t.ExecContext(ctx, `UPDATE operations SET state = ?, heartbeat = ? WHERE id = ?`, st, now(), o.id)
		return err
	}); eerr != nil {
		return fmt.Errorf("record operation %d as %s: %w", o.id, st, eerr)
	}
	return nil
}

// WipeRequested reports whether a delete of object was ever asked to wipe
// it: a later delete of what an interrupted one left must wipe too, or the
// data the operator meant to destroy stays readable on the reused extents.
func (s *Store) WipeRequested(ctx context.Context, object string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM operations WHERE object = ? AND op = 'delete --wipe'`, object).Scan(&n)
	return n > 0, err
}

// Holder describes the running operation on object for a conflict message,
// with what the operator can do about it; "" when none runs.
func (s *Store) Holder(ctx context.Context, object string) string { return s.holder(ctx, object) }

func (s *Store) holder(ctx context.Context, object string) string {
	return s.describeHolder(ctx, object, false)
}

// describeHolder is holder, naming the volume too when named.
func (s *Store) describeHolder(ctx context.Context, object string, named bool) string {
	var id int64
	var op, own, started, name string
	err := s.db.QueryRowContext(ctx, `SELECT o.id, o.op, o.owner, o.started_at, coalesce(v.name, o.object)
		FROM operations o LEFT JOIN volumes v ON v.uuid = o.object
		WHERE o.object = ? AND o.state = 'running' ORDER BY o.id DESC LIMIT 1`, object).Scan(&id, &op, &own, &started, &name)
	if err != nil {
		return ""
	}
	what := strconv.Quote(op)
	if named {
		what += " of " + strconv.Quote(name)
	}
	o, ok := owner.Parse(own)
	if !ok {
		return fmt.Sprintf("%s (owner %q since %s)", what, own, since(started))
	}
	msg := fmt.Sprintf("%s (pid %d on %s since %s)", what, o.Pid, o.Host, since(started))
	l, why := o.Check()
	rerun := rerunHint(op, name)
	switch {
	case l == owner.Alive:
		return msg + ", still running: wait for it to finish"
	case l == owner.Gone:
		return msg + "; " + why + ": " + rerun
	case o.Host != hostname():
		return fmt.Sprintf("%s; %s, and blk cannot tell from here whether it still runs: if it does, wait; if not, on %s %s",
			msg, why, o.Host, rerun)
	}
	return fmt.Sprintf("%s; %s, so blk cannot prove it gone: if pid %d on %s is no blk, mark the operation ended with "+
		`%s "UPDATE operations SET state='failed' WHERE id=%d", then %s`, msg, why, o.Pid, o.Host, s.sqlShell(), id, rerun)
}

// rerunHint is what finishes or undoes op once its owner is gone: each
// workflow takes over an operation whose owner is provably gone.
func rerunHint(op, name string) string {
	switch op {
	case "create":
		return fmt.Sprintf("rerun the same 'blk volume create %s ...' to finish it, or 'blk volume delete %s' to roll it back", name, name)
	case "delete", "delete --wipe":
		return fmt.Sprintf("rerun 'blk volume delete %s' to finish it", name)
	case "attach":
		return fmt.Sprintf("roll the killed attach back with 'blk volume detach --force %s'", name)
	case "detach":
		return fmt.Sprintf("rerun 'blk volume detach %s' to finish it (with --force if a step keeps failing)", name)
	case "snapshot", "clone":
		return fmt.Sprintf("run 'blk snapshot create %s' to take the volume back (it thaws a guest the killed run may have left frozen first), "+
			"then delete the snapshot you do not want", name)
	case "revert":
		return fmt.Sprintf("rerun the 'blk snapshot revert' of %s to finish it", name)
	case "snapshot create", "snapshot delete":
		return fmt.Sprintf("'blk snapshot delete %s' removes what it left", name)
	case "extend":
		return fmt.Sprintf("rerun the same 'blk volume extend %s --size ...' to finish it", name)
	}
	return "rerun the same command to finish or roll it back"
}

// shellQuote makes a path safe to paste into a shell.
func shellQuote(p string) string {
	if p != "" && strings.Trim(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+") == "" {
		return p
	}
	return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
}

func since(ts string) string {
	t := parseTime(ts).UTC()
	if time.Since(t) < 20*time.Hour {
		return t.Format("15:04:05 UTC")
	}
	return t.Format("2006-01-02 15:04:05 UTC")
}

func hostname() string { return owner.Hostname() }

// Stale reports whether no live process owns a running operation on
// object: there is none, or its owner is provably gone (see owner.check).
func (s *Store) Stale(ctx context.Context, object string) bool {
	var own string
	err := s.db.QueryRowContext(ctx, `SELECT owner FROM operations WHERE object = ? AND state = 'running'
		ORDER BY id DESC LIMIT 1`, object).Scan(&own)
	if err == sql.ErrNoRows {
		return true
	}
	if err != nil {
		return false
	}
	return ownerGone(own)
}

func ownerGone(own string) bool { return owner.IsGone(own) }

// Claim moves the volume uuid from one of from to status to, and journals
// op on it, in one transaction, if no running operation on it has an owner
// that could be alive (those of owners proven gone are closed as failed).
// Checked apart, two reruns of a killed command could both see the volume
// free and both go on, one could take over a volume another run had
// meanwhile finished (and undo its work), or a volume moved but not yet
// journaled could look abandoned.
func (s *Store) Claim(ctx context.Context, op, uuid string, from []string, to string) (*Op, error) {
	return s.claim(ctx, "volume", op, uuid, from, to)
}

// claim is Claim on a row of the volumes or the snapshots table (kind
// "volume" or "snapshot", never input).
func (s *Store) claim(ctx context.Context, kind, op, uuid string, from []string, to string) (*Op, error) {
	var o *Op
	var conflict *ConflictError
	var took []string // the dead runs' operations taken over
	var objName string
	table := kind + "s"
	txErr := s.tx(ctx, func(t tx) error {
		var name, st string
		err := t.QueryRowContext(ctx, `SELECT name, status FROM `+table+` WHERE uuid = ?`, uuid).Scan(&name, &st)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s %s: %w", kind, uuid, ErrNotFound)
		}
		if err != nil {
			return err
		}
		objName = name
		conflict = &ConflictError{Kind: kind, Volume: name, Status: st}
		if !slices.Contains(from, st) {
			return nil
		}
		rows, err := t.QueryContext(ctx, `SELECT op, owner, started_at FROM operations WHERE object = ? AND state = 'running'`, uuid)
		if err != nil {
			return err
		}
		var owners []string
		took = took[:0]
		for rows.Next() {
			var dead, own, started string
			if err = rows.Scan(&dead, &own, &started); err != nil {
				rows.Close()
				return err
			}
			owners = append(owners, own)
			took = append(took, fmt.Sprintf("its %s by %s since %s", dead, own, started))
		}
		rows.Close()
		if err = rows.Err(); err != nil {
			return err
		}
		for _, own := range owners {
			if !ownerGone(own) {
				return nil
			}
		}
		conflict = nil
		ts := now()
		if _, err = t.ExecContext(ctx, `UPDATE operations SET state = 'failed', heartbeat = ? WHERE object = ? AND state = 'running'`,
			ts, uuid); err != nil {
			return err
		}
		// A takeover in the same status (a rerun of a killed command)
		// keeps the status before it: a second kill must not lose it.
		set, args := `status = ?, updated_at = ?, previous_status = CASE WHEN status = ? THEN previous_status ELSE status END`, []any{to, ts, to, uuid}
		if kind == "snapshot" {
			set, args = `status = ?, updated_at = ?`, []any{to, ts, uuid}
		}
		if _, err = t.ExecContext(ctx, `UPDATE `+table+` SET `+set+` WHERE uuid = ?`, args...); err != nil {
			return err
		}
		o, err = s.beginOp(ctx, t, op, uuid)
		return err
	})
	if txErr != nil {
		return nil, txErr
	}
	if conflict != nil {
		conflict.Holder = s.holder(ctx, uuid)
		return nil, conflict
	}
	if len(took) > 0 && s.TakeOver != nil {
		s.TakeOver(fmt.Sprintf("%s %q: %s, which is gone (killed?), is taken over: this %s finishes or rolls it back",
			kind, objName, strings.Join(took, "; "), op))
	}
	return o, nil
}
