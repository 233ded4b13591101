package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/blk-project/blk/internal/owner"
)

// Transitional are the statuses a volume holds only while an operation
// runs: one of them with no live operation is stuck.
var Transitional = []string{Creating, Attaching, Detaching, Deleting, Extending, BackingUp, Restoring, Snapshotting, Reverting}

// SnapshotTransitional are the same for a snapshot.
var SnapshotTransitional = []string{Creating, Deleting, Restoring}

// OpRecord is one running operation of the journal, with what this process
// can prove about its owner.
type OpRecord struct {
	ID      int64
	Op      string
	Object  string
	Step    string
	Owner   string
	Host    string // where its owner ran
	Started string
	// Gone is true when its owner is provably not running (see
	// owner.check); Why says how that is known, or why it cannot be.
	Gone bool
	Why  string
}

// RunningOps lists the operations the journal shows running.
func (s *Store) RunningOps(ctx context.Context) ([]OpRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, op, object, step, owner, started_at FROM operations
		WHERE state = 'running' ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []OpRecord
	for rows.Next() {
		var o OpRecord
		if err := rows.Scan(&o.ID, &o.Op, &o.Object, &o.Step, &o.Owner, &o.Started); err != nil {
			return nil, err
		}
		if own, ok := owner.Parse(o.Owner); ok {
			o.Host = own.Host
			var l owner.Liveness
			l, o.Why = own.Check()
			o.Gone = l == owner.Gone
		} else {
			o.Why = "its owner cannot be read"
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// EndStaleOp closes operation id as failed if it still runs and its owner
// is provably gone; it reports whether it did.
func (s *Store) EndStaleOp(ctx context.Context, id int64) (bool, error) {
	var ended bool
	err := s.tx(ctx, func(t tx) error {
		var own string
		err := t.QueryRowContext(ctx, `SELECT owner FROM operations WHERE id = ? AND state = 'running'`, id).Scan(&own)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil || !ownerGone(own) {
			return err
		}
		_, err = t.ExecContext(ctx, `UPDATE operations SET state = 'failed', heartbeat = ? WHERE id = ?`, now(), id)
		ended = err == nil
		return err
	})
	return ended, err
}

// Attachments lists every attachment, whatever its status.
func (s *Store) Attachments(ctx context.Context) ([]AttachmentRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT volume, instance, host, device, device_path, status, step, connection_info
		FROM attachments ORDER BY volume`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AttachmentRecord
	for rows.Next() {
		var a AttachmentRecord
		var conn string
		if err := rows.Scan(&a.Volume, &a.Instance, &a.Host, &a.Device, &a.DevicePath, &a.Status, &a.Step, &conn); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(conn), &a.Conn); err != nil {
			return nil, fmt.Errorf("attachment of %s: connection info: %w", a.Volume, err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// AdoptVolume records a volume found on a host with no row (rebuilt from
// its LV's tags or its file), available. A taken name or UUID is a
// ConflictError.
func (s *Store) AdoptVolume(ctx context.Context, v *Volume) error {
	ts := now()
	v.Status, v.CreatedAt, v.UpdatedAt = Available, parseTime(ts), parseTime(ts)
	err := s.tx(ctx, func(t tx) error {
		_, err := t.ExecContext(ctx, `INSERT INTO volumes
			(uuid, name, backend, size_bytes, thin, status, source, path, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			v.UUID, v.Name, v.Backend, v.SizeBytes, v.Thin, v.Status, v.Source, v.Path, ts, ts)
		return err
	})
	if isUnique(err) {
		return &ConflictError{Volume: v.Name, Reason: "cannot be adopted: its name or UUID is taken by another row"}
	}
	return err
}

// Reset is what reset-state changes, in one transaction.
type Reset struct {
	To string
	// DropAttachment removes the attachment row (reset to available).
	DropAttachment bool
	// Attached marks the attachment attached (reset to in-use).
	Attached bool
	// Reason is recorded as the volume's last error.
	Reason string
	// From, when set, is the status the caller looked at: a volume that
	// moved since (an attach took it) is left alone.
	From string
}

// ResetVolume sets the volume's status whatever it was, unless a running
// operation on it has an owner that could be alive; those whose owners are
// gone are closed as failed.
func (s *Store) ResetVolume(ctx context.Context, uuid string, r Reset) (Volume, error) {
	var held, moved bool
	err := s.tx(ctx, func(t tx) error {
		if r.From != "" {
			var st string
			err := t.QueryRowContext(ctx, `SELECT status FROM volumes WHERE uuid = ?`, uuid).Scan(&st)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("volume %s: %w", uuid, ErrNotFound)
			}
			if err != nil {
				return err
			}
			if st != r.From {
				moved = true
				return nil
			}
		}
		rows, err := t.QueryContext(ctx, `SELECT owner FROM operations WHERE object = ? AND state = 'running'`, uuid)
		if err != nil {
			return err
		}
		var owners []string
		for rows.Next() {
			var own string
			if err = rows.Scan(&own); err != nil {
				rows.Close()
				return err
			}
			owners = append(owners, own)
		}
		rows.Close()
		for _, own := range owners {
			if !ownerGone(own) {
				held = true
				return nil
			}
		}
		ts := now()
		if _, err = t.ExecContext(ctx, `UPDATE operations SET state = 'failed', heartbeat = ? WHERE object = ? AND state = 'running'`,
			ts, uuid); err != nil {
			return err
		}
		res, err := t.ExecContext(ctx, `UPDATE volumes SET previous_status = status, status = ?, updated_at = ?, last_error = ?
			WHERE uuid = ?`, r.To, ts, r.Reason, uuid)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("volume %s: %w", uuid, ErrNotFound)
		}
		switch {
		case r.DropAttachment:
			_, err = t.ExecContext(ctx, `DELETE FROM attachments WHERE volume = ?`, uuid)
		case r.Attached:
			_, err = t.ExecContext(ctx, `UPDATE attachments SET status = 'attached', step = 'attached',
				attached_at = CASE WHEN attached_at = '' THEN ? ELSE attached_at END WHERE volume = ?`, ts, uuid)
		}
		return err
	})
	if err != nil {
		return Volume{}, err
	}
	v, err := s.Volume(ctx, uuid)
	if err == nil && held {
		err = &ConflictError{Volume: v.Name, Status: v.Status, Holder: s.holder(ctx, uuid)}
	}
	if err == nil && moved {
		err = &ConflictError{Volume: v.Name, Status: v.Status, Holder: s.holder(ctx, uuid),
			Reason: fmt.Sprintf("went from %s to %s while reset-state looked: nothing was changed; look again", r.From, v.Status)}
	}
	return v, err
}
