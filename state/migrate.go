package state

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order, once each; user_version counts them.
// Never edit one that has shipped: add the next.
var migrations = []string{
	`CREATE TABLE volumes (
		uuid            TEXT PRIMARY KEY,
		name            TEXT NOT NULL UNIQUE,
		backend         TEXT NOT NULL,
		size_bytes      INTEGER NOT NULL,
		thin            INTEGER NOT NULL DEFAULT 0,
		status          TEXT NOT NULL,
		previous_status TEXT NOT NULL DEFAULT '',
		source          TEXT NOT NULL DEFAULT '',
		path            TEXT NOT NULL DEFAULT '',
		created_at      TEXT NOT NULL,
		updated_at      TEXT NOT NULL,
		last_error      TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX volumes_backend ON volumes(backend);
	CREATE TABLE attachments (
		volume          TEXT PRIMARY KEY REFERENCES volumes(uuid),
		instance        TEXT NOT NULL,
		host            TEXT NOT NULL,
		device          TEXT NOT NULL,
		device_path     TEXT NOT NULL DEFAULT '',
		connection_info TEXT NOT NULL DEFAULT '{}',
		status          TEXT NOT NULL,
		step            TEXT NOT NULL DEFAULT '',
		attached_at     TEXT NOT NULL DEFAULT '',
		UNIQUE (host, instance, device)
	);
	CREATE TABLE snapshots (
		uuid       TEXT PRIMARY KEY,
		name       TEXT NOT NULL UNIQUE,
		volume     TEXT NOT NULL REFERENCES volumes(uuid),
		size_bytes INTEGER NOT NULL,
		status     TEXT NOT NULL,
		path       TEXT NOT NULL DEFAULT '',
		created_at TEXT NOT NULL,
		updated_at TEXT NOT NULL
	);
	CREATE INDEX snapshots_volume ON snapshots(volume);
	CREATE TABLE backups (
		uuid         TEXT PRIMARY KEY,
		name         TEXT NOT NULL UNIQUE,
		volume       TEXT NOT NULL,
		parent       TEXT NOT NULL DEFAULT '',
		repo         TEXT NOT NULL,
		size_bytes   INTEGER NOT NULL,
		stored_bytes INTEGER NOT NULL DEFAULT 0,
		chunk_count  INTEGER NOT NULL DEFAULT 0,
		status       TEXT NOT NULL,
		created_at   TEXT NOT NULL,
		updated_at   TEXT NOT NULL
	);
	CREATE TABLE operations (
		id         INTEGER PRIMARY KEY,
		op         TEXT NOT NULL,
		object     TEXT NOT NULL,
		step       TEXT NOT NULL DEFAULT '',
		owner      TEXT NOT NULL,
		started_at TEXT NOT NULL,
		heartbeat  TEXT NOT NULL,
		state      TEXT NOT NULL
	);
	CREATE INDEX operations_object ON operations(object, state);`,
	// Snapshots: how consistent each is (filesystem, crash, clean) and why
	// the last step on it failed.
	`ALTER TABLE snapshots ADD COLUMN consistency TEXT NOT NULL DEFAULT '';
	ALTER TABLE snapshots ADD COLUMN last_error TEXT NOT NULL DEFAULT '';`,
}

func (s *Store) migrate(ctx context.Context, readOnly bool) error {
	var version int
	if err := s.db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this blk knows (%d): upgrade blk", version, len(migrations))
	}
	if version == len(migrations) {
		return nil
	}
	if readOnly && !s.memory {
		return fmt.Errorf("schema version %d is older than this blk (%d): run any command without --dry-run once to migrate", version, len(migrations))
	}
	return s.tx(ctx, func(t *sql.Tx) error {
		// Another process may have migrated while this one waited for the lock.
		if err := t.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
			return err
		}
		for i := version; i < len(migrations); i++ {
			if _, err := t.ExecContext(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		_, err := t.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations)))
		return err
	})
}
