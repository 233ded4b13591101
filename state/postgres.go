package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/blk-project/blk/internal/retry"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// IsURL reports whether state names a PostgreSQL database rather than a
// file.
func IsURL(state string) bool {
	return strings.HasPrefix(state, "postgres://") || strings.HasPrefix(state, "postgresql://")
}

// Redact is a PostgreSQL URL fit to print: no password, in the user part
// or as a parameter. Anything else comes back as it is.
func Redact(state string) string {
	if !IsURL(state) {
		return state
	}
	u, err := url.Parse(state)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// connectTimeout bounds a connect when the URL sets none
// (connect_timeout=), so an unreachable server is an error, not a hang.
const connectTimeout = 10 * time.Second

// lockKey is the advisory lock every write transaction takes. Advisory
// locks are per database, so two blk installations in one server do not
// share it.
const lockKey = 0x626c6b // "blk"

func openPostgres(ctx context.Context, rawURL string, mode Mode) (*Store, error) {
	shown := Redact(rawURL)
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		// pgx's parse errors may quote the URL, password and all.
		return nil, fmt.Errorf("state %s: not a PostgreSQL URL blk can use (postgres://user@host:port/database?sslmode=…)", shown)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	readOnly := mode != ReadWrite && mode != Existing
	if readOnly {
		// The server refuses any write, whatever a bug here might try.
		cfg.RuntimeParams["default_transaction_read_only"] = "on"
	}
	cfg.RuntimeParams["application_name"] = "blk"
	sdb := stdlib.OpenDB(*cfg)
	// One blk process runs one workflow: a few connections are plenty,
	// and fifty processes at once must not exhaust max_connections.
	sdb.SetMaxOpenConns(2)
	s := &Store{db: db{DB: sdb, pg: true}, path: shown}
	version, err := s.schemaVersion(ctx)
	if err != nil {
		sdb.Close()
		return nil, fmt.Errorf("state %s: %w", shown, err)
	}
	if version == 0 && readOnly || version == 0 && mode == Existing {
		sdb.Close()
		if mode == ReadOnlyOrEmpty {
			// A dry run against a database blk never used reads as empty.
			return openEmpty(ctx, shown)
		}
		return nil, &noStateError{shown}
	}
	err = retry.Do(ctx, retry.Policy{Within: BusyTimeout, Delay: 5 * time.Millisecond, Retry: isBusy},
		func() error { return s.migrate(ctx, readOnly) })
	if err == nil {
		err = s.checkMoved(ctx)
	}
	if err != nil {
		sdb.Close()
		return nil, fmt.Errorf("state %s: %w", shown, err)
	}
	return s, nil
}

// openEmpty is an in-memory state standing for one that does not exist yet.
func openEmpty(ctx context.Context, shown string) (*Store, error) {
	sdb, err := sql.Open("sqlite3", "file::memory:?_foreign_keys=1")
	if err != nil {
		return nil, err
	}
	sdb.SetMaxOpenConns(1) // each in-memory connection is its own database
	s := &Store{db: db{DB: sdb}, path: shown, memory: true}
	if err := s.migrate(ctx, true); err != nil {
		sdb.Close()
		return nil, err
	}
	return s, nil
}

// lockPostgres takes the write lock for the rest of the transaction. It is
// a transaction-scoped advisory lock, released by COMMIT or ROLLBACK on the
// same connection, so a pooled connection never carries it into another
// use, and a blk killed mid-transaction releases it when its connection
// drops. Waiting writers queue in the server; Ctrl-C cancels the wait.
func lockPostgres(ctx context.Context, t tx) error {
	_, err := t.ExecContext(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = %d; SELECT pg_advisory_xact_lock(%d)`,
		BusyTimeout.Milliseconds(), lockKey))
	return err
}

// PostgreSQL error codes (SQLSTATE) blk acts on.
const (
	pgUniqueViolation      = "23505"
	pgSerializationFailure = "40001"
	pgDeadlock             = "40P01"
	pgLockNotAvailable     = "55P03"
	pgUndefinedTable       = "42P01"
)

func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func pgBusy(err error) bool {
	switch pgCode(err) {
	case pgSerializationFailure, pgDeadlock, pgLockNotAvailable:
		return true
	}
	return false
}

func pgUnique(err error) bool { return pgCode(err) == pgUniqueViolation }
