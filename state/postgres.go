package state

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/blk-project/blk/internal/fault"
	"github.com/blk-project/blk/internal/retry"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// IsURL reports whether state names a PostgreSQL database rather than a
// file.
func IsURL(state string) bool {
	s := strings.ToLower(state)
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
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
	for _, k := range []string{"password", "sslpassword"} {
		if q.Has(k) {
			q.Set(k, "xxxxx")
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}

// connectTimeout bounds a connect when the URL sets none
// (connect_timeout=), so an unreachable server is an error, not a hang.
const connectTimeout = 10 * time.Second

// lockKey is the advisory lock every write transaction takes, with the
// schema's hash as its second key. Advisory locks are per database, so
// two blk states, in two databases or in two schemas of one
// (search_path=), never wait for each other.
const lockKey = 0x626c6b // "blk"

// lockSQL takes the write lock: see lockPostgres.
var lockSQL = fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d, hashtext(current_schema()))`, lockKey)

func openPostgres(ctx context.Context, rawURL string, mode Mode) (*Store, error) {
	shown := Redact(rawURL)
	// pgx knows the scheme in lower case only.
	scheme, rest, _ := strings.Cut(rawURL, "://")
	cfg, err := pgx.ParseConfig(strings.ToLower(scheme) + "://" + rest)
	if err != nil {
		// pgx's parse errors may quote the URL, password and all.
		return nil, fault.New(fault.ErrInvalid, "state %s: not a PostgreSQL URL blk can use (postgres://user@host:port/database?sslmode=…)", shown)
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
	// blk never idles inside a transaction: one that does is a blk stopped
	// (SIGSTOP, a hung machine) holding the write lock from everyone.
	cfg.RuntimeParams["idle_in_transaction_session_timeout"] = "60s"
	// A partitioned admin machine's session, lock and all, ends within
	// about a minute instead of the kernel's two hours.
	cfg.RuntimeParams["tcp_keepalives_idle"] = "30"
	cfg.RuntimeParams["tcp_keepalives_interval"] = "10"
	cfg.RuntimeParams["tcp_keepalives_count"] = "3"
	sdb := stdlib.OpenDB(*cfg)
	// One blk process runs one workflow: two connections are plenty, and
	// none stays open through a long external step (an attach, a backup),
	// so fifty processes at once, from several machines, leave
	// max_connections to those talking to the server now.
	sdb.SetMaxOpenConns(2)
	sdb.SetMaxIdleConns(1)
	sdb.SetConnMaxIdleTime(2 * time.Second)
	s := &Store{db: db{DB: sdb, pg: true}, path: shown}
	var version int
	err = retry.Do(ctx, retry.Policy{Within: BusyTimeout, Delay: 50 * time.Millisecond, Retry: isBusy}, func() (err error) {
		version, err = s.schemaVersion(ctx) // the first connection: the server may be full for a moment
		return err
	})
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
		err = s.guard(ctx)
	}
	if err != nil {
		sdb.Close()
		return nil, fmt.Errorf("state %s: %w", shown, err)
	}
	return s, nil
}

// lockPostgres takes the write lock for the rest of the transaction. It is
// a transaction-scoped advisory lock, released by COMMIT or ROLLBACK on the
// same connection, so a pooled connection never carries it into another
// use, and a blk killed mid-transaction releases it when its connection
// drops. Waiting writers queue in the server; Ctrl-C cancels the wait.
func lockPostgres(ctx context.Context, t tx) error {
	_, err := t.ExecContext(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = %d; %s`, BusyTimeout.Milliseconds(), lockSQL))
	return err
}

// PostgreSQL error codes (SQLSTATE) blk acts on.
const (
	pgUniqueViolation      = "23505"
	pgSerializationFailure = "40001"
	pgDeadlock             = "40P01"
	pgLockNotAvailable     = "55P03"
	pgUndefinedTable       = "42P01"
	pgTooManyConnections   = "53300"
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
	case pgSerializationFailure, pgDeadlock, pgLockNotAvailable, pgTooManyConnections:
		return true
	}
	return false
}

// pgFailure is an error of the server or of the connection to it, which
// needs the state's name to mean anything to a person.
func pgFailure(err error) bool {
	var pe *pgconn.PgError
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &pe) || errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, driver.ErrBadConn)
}

func pgUnique(err error) bool { return pgCode(err) == pgUniqueViolation }
