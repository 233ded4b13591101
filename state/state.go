// Package state keeps blk's one shared SQLite file: volumes, attachments,
// snapshots, backups and the operations journal. Many blk processes, shell
// scripts and cron jobs use it at once, so every write is a short
// BEGIN IMMEDIATE transaction and every status move a compare-and-set.
package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
)

// Store is an open state file.
type Store struct {
	db     *sql.DB
	path   string
	memory bool // a dry run's stand-in for a state file that does not exist
}

// BusyTimeout is how long a writer waits for another before giving up.
const BusyTimeout = 30 * time.Second

// Open opens (creating if needed, mode 0600) and migrates the state file.
// With readOnly, nothing on disk changes: a missing file reads as empty.
func Open(ctx context.Context, path string, readOnly bool) (*Store, error) {
	dsn := fmt.Sprintf("file:%s?_busy_timeout=%d&_txlock=immediate&_foreign_keys=1", path, BusyTimeout.Milliseconds())
	if readOnly {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			dsn = "file::memory:?_foreign_keys=1"
		} else {
			dsn += "&mode=ro"
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("state %s: %w", path, err)
		}
		// SQLite gives the -wal and -shm files the mode of the database,
		// and CHAP secrets live here: make it 0600 before SQLite does.
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("state %s: %w", path, err)
		}
		f.Close()
		dsn += "&_journal_mode=WAL&_synchronous=NORMAL"
	}
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	memory := strings.Contains(dsn, ":memory:")
	if memory {
		db.SetMaxOpenConns(1) // each in-memory connection is its own database
	}
	s := &Store{db: db, path: path, memory: memory}
	if err := s.migrate(ctx, readOnly); err != nil {
		db.Close()
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) Close() error { return s.db.Close() }

// Path is the file this store uses.
func (s *Store) Path() string { return s.path }

// tx runs fn in one BEGIN IMMEDIATE transaction. The write lock is taken at
// BEGIN, so a busy database waits there (busy timeout) instead of failing
// later at the first write with "database is locked".
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	// The busy handler covers most waits; WAL recovery by another
	// process can still answer BUSY at once, so wait and try again.
	return retry.Do(ctx, retry.Policy{Within: BusyTimeout, Delay: 20 * time.Millisecond, Retry: isBusy},
		func() error { return s.tryTx(ctx, fn) })
}

func (s *Store) tryTx(ctx context.Context, fn func(*sql.Tx) error) error {
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(t); err != nil {
		t.Rollback()
		return err
	}
	return t.Commit()
}

func isBusy(err error) bool {
	var e sqlite3.Error
	return errors.As(err, &e) && (e.Code == sqlite3.ErrBusy || e.Code == sqlite3.ErrLocked)
}

func isUnique(err error) bool {
	var e sqlite3.Error
	return errors.As(err, &e) && e.ExtendedCode == sqlite3.ErrConstraintUnique
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}
