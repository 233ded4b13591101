package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// migrations are applied in order, once each; SQLite's user_version (or
// PostgreSQL's blk_schema table) counts them. Never edit one that has
// shipped: add the next, to both lists.
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
	// Where blk state migrate copied this state to: a blk still pointed
	// here refuses it rather than going on alone. And a random id, so a
	// copy can tell the same state under another name from another state.
	`CREATE TABLE moved (url TEXT NOT NULL, at TEXT NOT NULL);
	CREATE TABLE state_id (id TEXT NOT NULL);
	INSERT INTO state_id (id) VALUES (lower(hex(randomblob(16))));`,
}

// pgMigrations are migrations in PostgreSQL's words, one for one: 64-bit
// sizes, a real boolean, an identity column for the journal's ids, and
// every text compared and sorted byte by byte (COLLATE "C") as SQLite
// does, whatever locale the database was made with.
var pgMigrations = []string{
	`CREATE TABLE volumes (
		uuid            TEXT COLLATE "C" PRIMARY KEY,
		name            TEXT COLLATE "C" NOT NULL UNIQUE,
		backend         TEXT COLLATE "C" NOT NULL,
		size_bytes      BIGINT NOT NULL,
		thin            BOOLEAN NOT NULL DEFAULT false,
		status          TEXT COLLATE "C" NOT NULL,
		previous_status TEXT COLLATE "C" NOT NULL DEFAULT '',
		source          TEXT COLLATE "C" NOT NULL DEFAULT '',
		path            TEXT COLLATE "C" NOT NULL DEFAULT '',
		created_at      TEXT COLLATE "C" NOT NULL,
		updated_at      TEXT COLLATE "C" NOT NULL,
		last_error      TEXT COLLATE "C" NOT NULL DEFAULT ''
	);
	CREATE INDEX volumes_backend ON volumes(backend);
	CREATE TABLE attachments (
		volume          TEXT COLLATE "C" PRIMARY KEY REFERENCES volumes(uuid),
		instance        TEXT COLLATE "C" NOT NULL,
		host            TEXT COLLATE "C" NOT NULL,
		device          TEXT COLLATE "C" NOT NULL,
		device_path     TEXT COLLATE "C" NOT NULL DEFAULT '',
		connection_info TEXT COLLATE "C" NOT NULL DEFAULT '{}',
		status          TEXT COLLATE "C" NOT NULL,
		step            TEXT COLLATE "C" NOT NULL DEFAULT '',
		attached_at     TEXT COLLATE "C" NOT NULL DEFAULT '',
		UNIQUE (host, instance, device)
	);
	CREATE TABLE snapshots (
		uuid       TEXT COLLATE "C" PRIMARY KEY,
		name       TEXT COLLATE "C" NOT NULL UNIQUE,
		volume     TEXT COLLATE "C" NOT NULL REFERENCES volumes(uuid),
		size_bytes BIGINT NOT NULL,
		status     TEXT COLLATE "C" NOT NULL,
		path       TEXT COLLATE "C" NOT NULL DEFAULT '',
		created_at TEXT COLLATE "C" NOT NULL,
		updated_at TEXT COLLATE "C" NOT NULL
	);
	CREATE INDEX snapshots_volume ON snapshots(volume);
	CREATE TABLE backups (
		uuid         TEXT COLLATE "C" PRIMARY KEY,
		name         TEXT COLLATE "C" NOT NULL UNIQUE,
		volume       TEXT COLLATE "C" NOT NULL,
		parent       TEXT COLLATE "C" NOT NULL DEFAULT '',
		repo         TEXT COLLATE "C" NOT NULL,
		size_bytes   BIGINT NOT NULL,
		stored_bytes BIGINT NOT NULL DEFAULT 0,
		chunk_count  BIGINT NOT NULL DEFAULT 0,
		status       TEXT COLLATE "C" NOT NULL,
		created_at   TEXT COLLATE "C" NOT NULL,
		updated_at   TEXT COLLATE "C" NOT NULL
	);
	CREATE TABLE operations (
		id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
		op         TEXT COLLATE "C" NOT NULL,
		object     TEXT COLLATE "C" NOT NULL,
		step       TEXT COLLATE "C" NOT NULL DEFAULT '',
		owner      TEXT COLLATE "C" NOT NULL,
		started_at TEXT COLLATE "C" NOT NULL,
		heartbeat  TEXT COLLATE "C" NOT NULL,
		state      TEXT COLLATE "C" NOT NULL
	);
	CREATE INDEX operations_object ON operations(object, state);`,
	`ALTER TABLE snapshots ADD COLUMN consistency TEXT COLLATE "C" NOT NULL DEFAULT '';
	ALTER TABLE snapshots ADD COLUMN last_error TEXT COLLATE "C" NOT NULL DEFAULT '';`,
	// Where blk state migrate copied this state to: a blk still pointed
	// here refuses it rather than going on alone.
	`CREATE TABLE moved (url TEXT COLLATE "C" NOT NULL, at TEXT COLLATE "C" NOT NULL);
	CREATE TABLE state_id (id TEXT COLLATE "C" NOT NULL);
	INSERT INTO state_id (id) VALUES (gen_random_uuid()::text);`,
}

// schemaVersion is how many migrations the database has had.
func (s *Store) schemaVersion(ctx context.Context) (int, error) {
	var version int
	if !s.db.pg {
		err := s.db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version)
		return version, err
	}
	err := s.db.QueryRowContext(ctx, `SELECT version FROM blk_schema`).Scan(&version)
	if pgCode(err) == pgUndefinedTable || errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return version, err
}

func (s *Store) migrate(ctx context.Context, readOnly bool) error {
	version, err := s.schemaVersion(ctx)
	if err != nil {
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
	list := migrations
	if s.db.pg {
		list = pgMigrations
	}
	return s.tx(ctx, func(t tx) error {
		// Another process may have migrated while this one waited for the
		// lock (the PostgreSQL one is taken: DDL is transactional there).
		if t.pg {
			if _, err := t.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS blk_schema (version INTEGER NOT NULL)`); err != nil {
				return err
			}
			err := t.QueryRowContext(ctx, `SELECT version FROM blk_schema`).Scan(&version)
			if errors.Is(err, sql.ErrNoRows) {
				version = 0
				_, err = t.ExecContext(ctx, `INSERT INTO blk_schema (version) VALUES (0)`)
			}
			if err != nil {
				return err
			}
		} else if err := t.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
			return err
		}
		for i := version; i < len(list); i++ {
			if _, err := t.ExecContext(ctx, list[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		if t.pg {
			_, err := t.ExecContext(ctx, `UPDATE blk_schema SET version = ?`, len(list))
			return err
		}
		_, err := t.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(list)))
		return err
	})
}
