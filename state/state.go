// Package state keeps blk's shared state: volumes, attachments, snapshots,
// backups and the operations journal, in one SQLite file (the default) or
// in PostgreSQL for several admin machines. Many blk processes, shell
// scripts and cron jobs use it at once, so every write is a short
// transaction that holds the one write lock (SQLite's BEGIN IMMEDIATE,
// PostgreSQL's transaction-scoped advisory lock) and every status move a
// compare-and-set.
package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/blk-project/blk/internal/fault"
	"github.com/blk-project/blk/internal/retry"
	sqlite3 "github.com/mattn/go-sqlite3"
)

var (
	ErrNotFound = fault.ErrNotFound
	ErrConflict = fault.ErrConflict
)

// Volume statuses, as in Cinder.
const (
	Creating  = "creating"
	Available = "available"
	Attaching = "attaching"
	InUse     = "in-use"
	Detaching = "detaching"
	Deleting  = "deleting"
	Extending = "extending"
	Error     = "error"
	// ErrorDeleting is a delete that failed part-way; delete may be rerun.
	ErrorDeleting = "error_deleting"
	// Snapshotting holds a volume while a snapshot (or a copy) of it is
	// taken: available|in-use → snapshotting → (previous).
	Snapshotting = "snapshotting"
	// Reverting is a volume being rolled back to a snapshot: available →
	// reverting → available, as Cinder's revert.
	Reverting = "reverting"
	// Restoring is a snapshot being merged or copied back into its volume,
	// or a volume a backup is being restored into.
	Restoring = "restoring"
	// BackingUp holds a volume while a backup of it is taken: available|
	// in-use → backing-up → (previous). The guest goes on using it.
	BackingUp = "backing-up"
	// ErrorRestoring is a volume whose restore from a backup failed part-way:
	// its data is neither what it was nor the backup's.
	ErrorRestoring = "error_restoring"
)

// Store is an open state file.
type Store struct {
	db     db
	path   string // the file, or the PostgreSQL URL without its password
	memory bool   // a dry run's stand-in for a state file that does not exist
	// guarded: every write transaction first checks that blk state migrate
	// has not moved the state elsewhere (set once migrated).
	guarded bool
	// TakeOver, when set, is told each time a claim takes over the
	// operation of a run that is provably gone, so people see it.
	TakeOver func(msg string)
}

// BusyTimeout is how long a writer waits for another before giving up.
var BusyTimeout = 30 * time.Second

// busyPoll is how long SQLite's own busy handler waits per try. It cannot
// see ctx, so it waits briefly and tx does the rest of the waiting, where
// Ctrl-C and --timeout end it at once.
const busyPoll = 50 * time.Millisecond

// Mode says what Open may do to the file.
type Mode int

const (
	// ReadWrite creates the file (0600) and its directory if needed.
	ReadWrite Mode = iota
	// ReadOnly changes nothing on disk; a missing file is an ErrNotFound
	// naming the path, so a mistyped --state is not an empty list.
	ReadOnly
	// ReadOnlyOrEmpty changes nothing on disk; a missing file reads as
	// empty (a dry run on a machine where blk never ran).
	ReadOnlyOrEmpty
	// Existing writes to a file that must exist, as ReadOnly refuses a
	// missing one: a command on volumes that a missing file cannot hold
	// (delete, attach, detach) must not make one for a mistyped --state.
	Existing
)

// Open opens and migrates the state file at path, taken literally: no
// character of it is an SQLite URI parameter. The file holds CHAP secrets,
// so one that others can read is refused.
func Open(ctx context.Context, path string, mode Mode) (*Store, error) {
	if IsURL(path) {
		return openPostgres(ctx, path, mode)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	params := fmt.Sprintf("_busy_timeout=%d&_txlock=immediate&_foreign_keys=1", busyPoll.Milliseconds())
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist) && (mode == ReadOnly || mode == Existing):
		return nil, &noStateError{path}
	case errors.Is(err, os.ErrNotExist) && mode == ReadOnlyOrEmpty:
		return openEmpty(ctx, path)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("state %s: %w", path, err)
	case err == nil && !fi.Mode().IsRegular():
		kind := "a device or other special file"
		if fi.IsDir() {
			kind = "a directory"
		}
		return nil, fault.New(fault.ErrInvalid, "state %s is not a regular file but %s: name the state file itself, such as /var/lib/blk/state.db",
			path, kind)
	case err == nil && fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("state %s is open to others (mode %04o) and holds CHAP secrets: make it private with 'chmod 600 %s'",
			path, fi.Mode().Perm(), shellQuote(abs))
	}
	var dsn string
	switch {
	case mode != ReadWrite && mode != Existing:
		dsn = sqliteURI(abs) + "?" + params + "&mode=ro"
	default:
		if err = os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
			return nil, fmt.Errorf("state %s: %w", path, err)
		}
		// SQLite gives the -wal and -shm files the mode of the database:
		// make it 0600 before SQLite creates it.
		var f *os.File
		if f, err = os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
			return nil, fmt.Errorf("state %s: %w", path, err)
		}
		f.Close()
		dsn = sqliteURI(abs) + "?" + params + "&_journal_mode=WAL&_synchronous=NORMAL"
	}
	sdb, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	s := &Store{db: db{DB: sdb}, path: path}
	// The first statement opens the connection, which sets WAL mode: with
	// another process opening or migrating the file at the same moment,
	// SQLite answers busy after its short wait. Wait here, as tx does.
	err = retry.Do(ctx, retry.Policy{Within: BusyTimeout, Delay: 5 * time.Millisecond, Retry: isBusy},
		func() error { return s.migrate(ctx, mode != ReadWrite && mode != Existing) })
	if err == nil {
		err = s.guard(ctx)
	}
	if err != nil {
		sdb.Close()
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	return s, nil
}

// openEmpty is an in-memory state standing for one that does not exist
// yet (a dry run, a look where blk never ran): its reads are empty.
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

// Missing reports whether the state file does not exist (opened
// ReadOnlyOrEmpty): what it reads is empty, and a person should hear why.
func (s *Store) Missing() bool { return s.memory }

// noStateError is a read of a state file that does not exist.
type noStateError struct{ path string }

func (e *noStateError) Error() string {
	return fmt.Sprintf("no state %s %s (check --state, BLK_STATE or the config's state: the first volume create makes it)", Where(e.path), e.path)
}

func (e *noStateError) Unwrap() error { return ErrNotFound }

// Where is how a message names a state: a file at a path, or in a
// database ("no state file at /var/lib/blk/state.db", "no state in
// postgres://…").
func Where(state string) string {
	if IsURL(state) {
		return "in"
	}
	return "file at"
}

// sqliteURI names an absolute path as an SQLite file: URI, escaping what
// SQLite would read as a parameter (?), a fragment (#) or an escape (%).
func sqliteURI(abs string) string {
	return (&url.URL{Scheme: "file", Path: abs}).String()
}

func (s *Store) Close() error { return s.db.Close() }

// Path is the file this store uses.
func (s *Store) Path() string { return s.path }

// sqlShell is the command line a person runs to change the state by hand.
func (s *Store) sqlShell() string {
	if s.db.pg {
		return "psql " + shellQuote(s.path) + " -c"
	}
	return "sqlite3 " + shellQuote(s.path)
}

// tx runs fn in one transaction that holds the write lock from its start
// (SQLite: BEGIN IMMEDIATE; PostgreSQL: see lockPostgres), so a busy
// database waits there instead of failing later at the first write with
// "database is locked", and what fn reads no other writer changes before
// it commits.
func (s *Store) tx(ctx context.Context, fn func(tx) error) error {
	// SQLite's own busy handler waits only briefly (it cannot see ctx): the
	// rest of the wait is here, where Ctrl-C and --timeout end it at once.
	err := retry.Do(ctx, retry.Policy{Within: BusyTimeout, Delay: 5 * time.Millisecond, Retry: isBusy},
		func() error { return s.tryTx(ctx, fn) })
	switch {
	case !isBusy(err) && s.db.pg && pgFailure(err) && !strings.Contains(err.Error(), s.path):
		return fmt.Errorf("state %s: %w", s.path, err)
	case !isBusy(err):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("state %s: waiting for another writer: %w", s.path, ctx.Err())
	default:
		return fmt.Errorf("state %s: %w for %s: %s", s.path, err, BusyTimeout, s.writers())
	}
}

// writers names the operations the journal shows running, for a lock
// timeout: one of them most likely holds the lock.
func (s *Store) writers() string {
	ctx, cancel := context.WithTimeout(context.Background(), endTimeout)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT object FROM operations WHERE state = 'running' GROUP BY object ORDER BY max(id) DESC LIMIT 3`)
	if err != nil {
		return "another process holds the write lock"
	}
	var objects []string
	for rows.Next() {
		var o string
		if rows.Scan(&o) == nil {
			objects = append(objects, o)
		}
	}
	rows.Close()
	var held []string
	for _, o := range objects {
		if h := s.describeHolder(ctx, o, true); h != "" {
			held = append(held, h)
		}
	}
	if len(held) == 0 {
		if s.db.pg {
			return "no blk operation is running: a blk state migrate, or a session of another program, holds the lock (look in pg_locks)"
		}
		return "no blk operation is running: a blk state migrate, or another program (an open sqlite3 shell?), holds the write lock"
	}
	return "running now: " + strings.Join(held, "; ")
}

func (s *Store) tryTx(ctx context.Context, fn func(tx) error) error {
	st, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	t := tx{Tx: st, pg: s.db.pg}
	if t.pg {
		if err = lockPostgres(ctx, t); err != nil && ctx.Err() != nil {
			st.Rollback()
			return fmt.Errorf("state %s: waiting for another writer: %w", s.path, ctx.Err())
		}
	}
	if err == nil && s.guarded {
		// A blk that opened the state before a migrate moved it must not
		// go on writing there alone.
		err = moved(ctx, t)
	}
	if err == nil {
		err = fn(t)
	}
	if err != nil {
		st.Rollback()
		return err
	}
	return st.Commit()
}

// isBusy is a write lock another holds: wait and try again.
func isBusy(err error) bool {
	var s settledError
	if errors.As(err, &s) {
		return false
	}
	var e sqlite3.Error
	return errors.As(err, &e) && (e.Code == sqlite3.ErrBusy || e.Code == sqlite3.ErrLocked) || pgBusy(err)
}

func isUnique(err error) bool {
	var e sqlite3.Error
	return errors.As(err, &e) && e.ExtendedCode == sqlite3.ErrConstraintUnique || pgUnique(err)
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}
