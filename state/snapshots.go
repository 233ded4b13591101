package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Snapshot is one row of snapshots, with its volume's name and backend.
// Its statuses: creating → available | error; available → deleting → gone
// | error_deleting; available → restoring → gone (an LVM merge consumes it)
// or available (an NFS copy back keeps it).
type Snapshot struct {
	UUID        string
	Name        string
	Volume      string // the volume's UUID
	VolumeName  string
	Backend     string
	SizeBytes   int64
	Status      string
	Consistency string
	Path        string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	LastError   string
}

const snapshotSelect = `SELECT s.uuid, s.name, s.volume, v.name, v.backend, s.size_bytes, s.status,
	s.consistency, s.path, s.created_at, s.updated_at, s.last_error
	FROM snapshots s JOIN volumes v ON v.uuid = s.volume`

func scanSnapshot(row interface{ Scan(...any) error }) (Snapshot, error) {
	var sn Snapshot
	var created, updated string
	err := row.Scan(&sn.UUID, &sn.Name, &sn.Volume, &sn.VolumeName, &sn.Backend, &sn.SizeBytes, &sn.Status,
		&sn.Consistency, &sn.Path, &created, &updated, &sn.LastError)
	sn.CreatedAt, sn.UpdatedAt = parseTime(created), parseTime(updated)
	return sn, err
}

// InsertSnapshot records a new snapshot in creating, and journals this
// process's "snapshot create" of it, in one transaction. A taken name is a
// ConflictError.
func (s *Store) InsertSnapshot(ctx context.Context, sn *Snapshot) (*Op, error) {
	ts := now()
	sn.CreatedAt, sn.UpdatedAt = parseTime(ts), parseTime(ts)
	var op *Op
	err := s.tx(ctx, func(t tx) error {
		_, err := t.ExecContext(ctx, `INSERT INTO snapshots
			(uuid, name, volume, size_bytes, status, consistency, path, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			sn.UUID, sn.Name, sn.Volume, sn.SizeBytes, sn.Status, sn.Consistency, sn.Path, ts, ts)
		if err != nil {
			return err
		}
		op, err = s.beginOp(ctx, t, "snapshot create", sn.UUID)
		return err
	})
	if isUnique(err) {
		existing, gerr := s.Snapshot(ctx, sn.Name)
		if gerr != nil {
			return nil, &ConflictError{Kind: "snapshot", Volume: sn.Name, Reason: "already exists"}
		}
		return nil, &ConflictError{Kind: "snapshot", Volume: sn.Name, Status: existing.Status,
			Reason: "already exists (" + existing.Status + ")", Holder: s.holder(ctx, existing.UUID)}
	}
	return op, err
}

// Snapshot finds a snapshot by UUID, else by name.
func (s *Store) Snapshot(ctx context.Context, ref string) (Snapshot, error) {
	sn, err := scanSnapshot(s.db.QueryRowContext(ctx, snapshotSelect+` WHERE s.uuid = ?`, strings.ToLower(ref)))
	if errors.Is(err, sql.ErrNoRows) {
		sn, err = scanSnapshot(s.db.QueryRowContext(ctx, snapshotSelect+` WHERE s.name = ?`, ref))
	}
	if errors.Is(err, sql.ErrNoRows) {
		return sn, fmt.Errorf("snapshot %q: %w", ref, ErrNotFound)
	}
	return sn, err
}

// ListSnapshots lists the snapshots of the volume with UUID volume, or all
// when it is empty, by name.
func (s *Store) ListSnapshots(ctx context.Context, volume string) ([]Snapshot, error) {
	q, args := snapshotSelect, []any{}
	if volume != "" {
		q, args = q+` WHERE s.volume = ?`, append(args, volume)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY s.name`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Snapshot{}
	for rows.Next() {
		sn, err := scanSnapshot(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, sn)
	}
	return out, rows.Err()
}

// SnapshotMove is a compare-and-set of a snapshot's status, with the
// columns it records on the way.
type SnapshotMove struct {
	From        []string
	To          string
	SizeBytes   int64  // when non-zero, recorded
	Path        string // when non-empty, recorded
	Consistency string // when non-empty, recorded
	LastError   *string
}

// MoveSnapshot applies m to the snapshot uuid, or returns a ConflictError
// naming its real status and holder.
func (s *Store) MoveSnapshot(ctx context.Context, uuid string, m SnapshotMove) (Snapshot, error) {
	set := []string{"status = ?", "updated_at = ?"}
	args := []any{m.To, now()}
	if m.SizeBytes != 0 {
		set, args = append(set, "size_bytes = ?"), append(args, m.SizeBytes)
	}
	if m.Path != "" {
		set, args = append(set, "path = ?"), append(args, m.Path)
	}
	if m.Consistency != "" {
		set, args = append(set, "consistency = ?"), append(args, m.Consistency)
	}
	if m.LastError != nil {
		set, args = append(set, "last_error = ?"), append(args, *m.LastError)
	}
	args = append(args, uuid)
	for _, f := range m.From {
		args = append(args, f)
	}
	marks := strings.TrimSuffix(strings.Repeat("?,", len(m.From)), ",")
	var n int64
	err := s.tx(ctx, func(t tx) error {
		res, err := t.ExecContext(ctx, `UPDATE snapshots SET `+strings.Join(set, ", ")+
			` WHERE uuid = ? AND status IN (`+marks+`)`, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return Snapshot{}, err
	}
	sn, err := s.Snapshot(ctx, uuid)
	if err != nil {
		return sn, err
	}
	if n == 0 {
		return sn, &ConflictError{Kind: "snapshot", Volume: sn.Name, Status: sn.Status, Holder: s.holder(ctx, uuid)}
	}
	return sn, nil
}

// DeleteSnapshot removes the row if the snapshot is still in status from,
// and ends the operations running on it.
func (s *Store) DeleteSnapshot(ctx context.Context, uuid, from string) error {
	return s.tx(ctx, func(t tx) error {
		res, err := t.ExecContext(ctx, `DELETE FROM snapshots WHERE uuid = ? AND status = ?`, uuid, from)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return &ConflictError{Kind: "snapshot", Volume: uuid, Status: "not " + from}
		}
		_, err = t.ExecContext(ctx, `UPDATE operations SET state = 'done' WHERE object = ? AND state = 'running'`, uuid)
		return err
	})
}

// ClaimSnapshot is Claim for a snapshot: it moves it from one of from to
// to and journals op, unless a process that may be alive holds it.
func (s *Store) ClaimSnapshot(ctx context.Context, op, uuid string, from []string, to string) (*Op, error) {
	return s.claim(ctx, "snapshot", op, uuid, from, to)
}
