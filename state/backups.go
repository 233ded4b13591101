package state

import (
	"context"
	"fmt"
)

// BackupRecord caches a backup made by this blk: the repository's manifest
// is the truth, and a lost state file loses nothing but this cache.
type BackupRecord struct {
	UUID, Name, Volume, Parent, Repo, Status string
	SizeBytes, StoredBytes                   int64
	ChunkCount                               int
	CreatedAt                                string
}

// RecordBackup caches a finished backup (again, if a rerun records it).
func (s *Store) RecordBackup(ctx context.Context, b BackupRecord) error {
	return s.tx(ctx, func(t tx) error {
		ts := now()
		// Names are unique in the table but not across repositories: the
		// newest backup of a name is the one cached.
		if _, err := t.ExecContext(ctx, `DELETE FROM backups WHERE name = ? AND uuid != ?`, b.Name, b.UUID); err != nil {
			return err
		}
		_, err := t.ExecContext(ctx, `INSERT INTO backups (uuid, name, volume, parent, repo, size_bytes, stored_bytes, chunk_count,
			status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(uuid) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at`,
			b.UUID, b.Name, b.Volume, b.Parent, b.Repo, b.SizeBytes, b.StoredBytes, b.ChunkCount, b.Status, b.CreatedAt, ts)
		return err
	})
}

// ForgetBackups drops cached backups (deleted or pruned from their
// repository).
func (s *Store) ForgetBackups(ctx context.Context, uuids ...string) error {
	return s.tx(ctx, func(t tx) error {
		for _, u := range uuids {
			if _, err := t.ExecContext(ctx, `DELETE FROM backups WHERE uuid = ?`, u); err != nil {
				return err
			}
		}
		return nil
	})
}

// Lock journals op on object (not a volume or snapshot: a thin pool's one
// metadata snapshot) unless a running operation on it has an owner that
// could be alive; those of owners proven gone are closed as failed. The
// check and the journal entry are one transaction, so of two racing runs
// one gets the object. End the Op to unlock.
func (s *Store) Lock(ctx context.Context, op, object string) (*Op, error) {
	var o *Op
	var holder string
	err := s.tx(ctx, func(t tx) error {
		rows, err := t.QueryContext(ctx, `SELECT owner FROM operations WHERE object = ? AND state = 'running'`, object)
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
		if err = rows.Err(); err != nil {
			return err
		}
		for _, own := range owners {
			if !ownerGone(own) {
				holder = own
				return nil
			}
		}
		if _, err = t.ExecContext(ctx, `UPDATE operations SET state = 'failed', heartbeat = ? WHERE object = ? AND state = 'running'`,
			now(), object); err != nil {
			return err
		}
		o, err = s.beginOp(ctx, t, op, object)
		return err
	})
	if err != nil {
		return nil, err
	}
	if holder != "" {
		return nil, fmt.Errorf("%s is held by %s: %w", object, holder, ErrConflict)
	}
	return o, nil
}
