package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Volume is one row of volumes, joined with its attachment and snapshot
// count. What blk prints is volume.Volume, made from it.
type Volume struct {
	UUID           string
	Name           string
	Backend        string
	SizeBytes      int64
	Status         string
	PreviousStatus string
	Thin           bool
	Source         string
	Path           string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	LastError      string
	SnapshotCount  int
	Attachment     *Attachment
}

// Attachment is where a volume is plugged in.
type Attachment struct {
	Instance   string
	Host       string
	Device     string
	DevicePath string
	AttachedAt time.Time
}

// ConflictError says why a volume cannot move, and who holds it.
type ConflictError struct {
	Kind   string // what Volume names: "volume" when empty, or "snapshot"
	Volume string
	Status string
	Holder string // owner of the running operation, if any
	Reason string
}

func (e *ConflictError) Error() string {
	kind := e.Kind
	if kind == "" {
		kind = "volume"
	}
	msg := fmt.Sprintf("%s %q is %s", kind, e.Volume, e.Status)
	if e.Reason != "" {
		msg = fmt.Sprintf("%s %q %s", kind, e.Volume, e.Reason)
	}
	if e.Holder != "" {
		msg += ": held by " + e.Holder
	}
	return msg
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

const volumeColumns = `v.uuid, v.name, v.backend, v.size_bytes, v.status, v.previous_status, v.thin,
	v.source, v.path, v.created_at, v.updated_at, v.last_error,
	coalesce(sc.n, 0),
	a.instance, a.host, a.device, a.device_path, a.attached_at`

const volumeFrom = ` FROM volumes v
	LEFT JOIN attachments a ON a.volume = v.uuid AND a.status = 'attached'
	LEFT JOIN (SELECT volume, count(*) AS n FROM snapshots GROUP BY volume) sc ON sc.volume = v.uuid`

func scanVolume(row interface{ Scan(...any) error }) (Volume, error) {
	var v Volume
	var created, updated string
	var inst, host, dev, devPath, at sql.NullString
	err := row.Scan(&v.UUID, &v.Name, &v.Backend, &v.SizeBytes, &v.Status, &v.PreviousStatus, &v.Thin,
		&v.Source, &v.Path, &created, &updated, &v.LastError, &v.SnapshotCount,
		&inst, &host, &dev, &devPath, &at)
	if err != nil {
		return v, err
	}
	v.CreatedAt, v.UpdatedAt = parseTime(created), parseTime(updated)
	if inst.Valid {
		v.Attachment = &Attachment{Instance: inst.String, Host: host.String, Device: dev.String,
			DevicePath: devPath.String, AttachedAt: parseTime(at.String)}
	}
	return v, nil
}

// InsertVolume records a new volume and journals this process's "create"
// of it in the same transaction: no other process ever sees the row without
// its live owner (and takes it for a create that died). The caller ends the
// returned operation. A taken name is a ConflictError.
func (s *Store) InsertVolume(ctx context.Context, v *Volume) (*Op, error) {
	ts := now()
	v.CreatedAt, v.UpdatedAt = parseTime(ts), parseTime(ts)
	var op *Op
	err := s.tx(ctx, func(t tx) error {
		_, err := t.ExecContext(ctx, `INSERT INTO volumes
			(uuid, name, backend, size_bytes, thin, status, source, path, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			v.UUID, v.Name, v.Backend, v.SizeBytes, v.Thin, v.Status, v.Source, v.Path, ts, ts)
		if err != nil {
			return err
		}
		op, err = s.beginOp(ctx, t, "create", v.UUID)
		return err
	})
	if isUnique(err) {
		existing, gerr := s.Volume(ctx, v.Name)
		if gerr != nil {
			return nil, &ConflictError{Volume: v.Name, Reason: "already exists"}
		}
		return nil, &ConflictError{Volume: v.Name, Status: existing.Status,
			Reason: "already exists (" + existing.Status + ")", Holder: s.holder(ctx, existing.UUID)}
	}
	if err != nil {
		return nil, err
	}
	return op, nil
}

// Volume finds a volume by UUID, else by name: a UUID always means the
// volume it names, even if another volume is named so.
func (s *Store) Volume(ctx context.Context, ref string) (Volume, error) {
	// UUIDs are stored lower case, as uuid.NewString makes them; one typed
	// (or pasted) in upper case means the same volume.
	v, err := scanVolume(s.db.QueryRowContext(ctx, `SELECT `+volumeColumns+volumeFrom+` WHERE v.uuid = ?`, strings.ToLower(ref)))
	if errors.Is(err, sql.ErrNoRows) {
		v, err = scanVolume(s.db.QueryRowContext(ctx, `SELECT `+volumeColumns+volumeFrom+` WHERE v.name = ?`, ref))
	}
	if errors.Is(err, sql.ErrNoRows) {
		return v, fmt.Errorf("volume %q: %w", ref, ErrNotFound)
	}
	return v, err
}

// VolumeFilter narrows ListVolumes; empty fields match everything.
type VolumeFilter struct {
	Status, Backend, Instance string
}

// where renders the filter as a WHERE clause with its arguments.
func (f VolumeFilter) where() (string, []any) {
	var conds []string
	var args []any
	for _, c := range []struct{ col, val string }{{"v.status", f.Status}, {"v.backend", f.Backend}, {"a.instance", f.Instance}} {
		if c.val != "" {
			conds = append(conds, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

func (s *Store) ListVolumes(ctx context.Context, f VolumeFilter) ([]Volume, error) {
	where, args := f.where()
	rows, err := s.db.QueryContext(ctx, `SELECT `+volumeColumns+volumeFrom+where+" ORDER BY v.name", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	vols := []Volume{}
	for rows.Next() {
		v, err := scanVolume(rows)
		if err != nil {
			return nil, err
		}
		vols = append(vols, v)
	}
	return vols, rows.Err()
}

// BackendUsage is what state knows about one backend's volumes.
type BackendUsage struct {
	Volumes        int
	AllocatedBytes int64
}

func (s *Store) BackendUsage(ctx context.Context) (map[string]BackendUsage, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT backend, count(*), CAST(coalesce(sum(size_bytes), 0) AS BIGINT) FROM volumes GROUP BY backend`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]BackendUsage{}
	for rows.Next() {
		var b string
		var u BackendUsage
		if err := rows.Scan(&b, &u.Volumes, &u.AllocatedBytes); err != nil {
			return nil, err
		}
		out[b] = u
	}
	return out, rows.Err()
}

// Move is a compare-and-set of a volume's status: it succeeds only if the
// volume is still in one of from. Apply may change other columns in the same
// statement.
type Move struct {
	From      []string
	To        string
	SizeBytes int64  // when non-zero, recorded
	Path      string // when non-empty, recorded
	LastError *string
}

// MoveVolume applies m to the volume uuid, or returns a ConflictError naming
// its real status and holder.
func (s *Store) MoveVolume(ctx context.Context, uuid string, m Move) (Volume, error) {
	set := []string{"status = ?", "updated_at = ?", "previous_status = status"}
	args := []any{m.To, now()}
	if m.SizeBytes != 0 {
		set, args = append(set, "size_bytes = ?"), append(args, m.SizeBytes)
	}
	if m.Path != "" {
		set, args = append(set, "path = ?"), append(args, m.Path)
	}
	if m.LastError != nil {
		set, args = append(set, "last_error = ?"), append(args, *m.LastError)
	}
	args = append(args, uuid)
	marks := strings.TrimSuffix(strings.Repeat("?,", len(m.From)), ",")
	for _, f := range m.From {
		args = append(args, f)
	}
	var n int64
	err := s.tx(ctx, func(t tx) error {
		res, err := t.ExecContext(ctx, `UPDATE volumes SET `+strings.Join(set, ", ")+
			` WHERE uuid = ? AND status IN (`+marks+`)`, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return Volume{}, err
	}
	v, err := s.Volume(ctx, uuid)
	if err != nil {
		return v, err
	}
	if n == 0 {
		return v, &ConflictError{Volume: v.Name, Status: v.Status, Holder: s.holder(ctx, uuid)}
	}
	return v, nil
}

// DeleteVolume removes the row if the volume is still in status from.
func (s *Store) DeleteVolume(ctx context.Context, uuid, from string) error {
	return s.tx(ctx, func(t tx) error {
		res, err := t.ExecContext(ctx, `DELETE FROM volumes WHERE uuid = ? AND status = ?`, uuid, from)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return &ConflictError{Volume: uuid, Status: "not " + from}
		}
		_, err = t.ExecContext(ctx, `UPDATE operations SET state = 'done' WHERE object = ? AND state = 'running'`, uuid)
		return err
	})
}
