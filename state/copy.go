package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/blk-project/blk/internal/fault"
	"github.com/blk-project/blk/internal/owner"
)

// tables are the state's tables in the order a copy fills them (each
// after those it references), with every column: TestCopyTablesAreTheSchema
// keeps them equal to the migrations'.
var tables = []struct {
	name string
	cols []string
}{
	{"volumes", []string{"uuid", "name", "backend", "size_bytes", "thin", "status", "previous_status", "source", "path",
		"created_at", "updated_at", "last_error"}},
	{"attachments", []string{"volume", "instance", "host", "device", "device_path", "connection_info", "status", "step", "attached_at"}},
	{"snapshots", []string{"uuid", "name", "volume", "size_bytes", "status", "path", "created_at", "updated_at", "consistency", "last_error"}},
	{"backups", []string{"uuid", "name", "volume", "parent", "repo", "size_bytes", "stored_bytes", "chunk_count", "status",
		"created_at", "updated_at"}},
	{"operations", []string{"id", "op", "object", "step", "owner", "started_at", "heartbeat", "state"}},
}

// Copied is how many rows of each table a copy moved, in table order.
type Copied []TableRows

type TableRows struct {
	Table string `json:"table" yaml:"table"`
	Rows  int    `json:"rows" yaml:"rows"`
}

// ErrCopiedBefore is a copy whose target already held exactly the source:
// a migrate killed after its copy committed and before it retired the
// source. CopyTo then only retires the source.
var ErrCopiedBefore = errors.New("the target already holds exactly this state")

// CopyTo copies everything s holds into dst, which must hold nothing (a
// new database or file): blk state migrate. It holds s's write lock
// throughout, so no blk changes s meanwhile, and refuses while an
// operation whose process may still run is journaled (it would go on
// writing to s). Then it marks s as moved, so a blk left pointing at s
// refuses to use it instead of going on alone. A dry run makes the same
// checks and counts what it would copy: dst may be opened read-only.
//
// A target that already holds exactly what s holds (a migrate killed
// between its two commits) is taken as copied: s is retired, and the error
// is ErrCopiedBefore, for the caller to say so.
func (s *Store) CopyTo(ctx context.Context, dst *Store, dryRun bool) (Copied, error) {
	if s.memory {
		return nil, &noStateError{s.path}
	}
	// Copying a state into itself (another spelling of its URL, a link to
	// its file) would wait for its own lock.
	var a, b string
	if err := s.db.QueryRowContext(ctx, `SELECT id FROM state_id`).Scan(&a); err != nil {
		return nil, err
	}
	if err := dst.db.QueryRowContext(ctx, `SELECT id FROM state_id`).Scan(&b); err != nil {
		return nil, err
	}
	if a == b {
		return nil, fault.New(fault.ErrInvalid, "%s is the state being copied (under another name): name a new one", dst.path)
	}
	var out Copied
	copiedBefore := false
	err := s.tx(ctx, func(src tx) error {
		if err := s.runningElsewhere(ctx, src); err != nil {
			return err
		}
		err := settled(dst.tx(ctx, func(t tx) error {
			held, err := counts(ctx, t)
			if err != nil {
				return err
			}
			for _, h := range held {
				if h.Rows == 0 {
					continue
				}
				same, err := sameRows(ctx, src, t)
				if err != nil || !same {
					return fault.New(fault.ErrConflict, "%s already holds %d %s: blk copies only into a state that holds nothing", dst.path, h.Rows, h.Table)
				}
				copiedBefore, out = true, held
				return nil
			}
			out = out[:0]
			for _, tb := range tables {
				var n int
				var err error
				if dryRun {
					err = src.QueryRowContext(ctx, `SELECT count(*) FROM `+tb.name).Scan(&n)
				} else {
					n, err = copyTable(ctx, src, t, tb.name, tb.cols)
				}
				if err != nil {
					return fmt.Errorf("copy %s: %w", tb.name, err)
				}
				out = append(out, TableRows{tb.name, n})
			}
			if t.pg && !dryRun {
				// The journal's ids go on from the highest copied.
				if _, err := t.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence('operations', 'id'),
					coalesce((SELECT max(id) FROM operations), 1), (SELECT count(*) > 0 FROM operations))`); err != nil {
					return err
				}
			}
			return nil
		}))
		if err != nil || dryRun {
			return err
		}
		_, err = src.ExecContext(ctx, `INSERT INTO moved (url, at) VALUES (?, ?)`, dst.path, now())
		if err != nil {
			return fmt.Errorf("everything was copied to %s, but %s could not be marked as moved (a blk still using it would go on alone): %w",
				dst.path, s.path, err)
		}
		return nil
	})
	if err == nil && copiedBefore {
		err = ErrCopiedBefore
	}
	return out, err
}

// settledError is an error that a transaction around the one that made it
// must not take for its own lock wait and retry: the target's wait is over
// and said so (BusyTimeout, who held it).
type settledError struct{ error }

func (e settledError) Unwrap() error { return e.error }

func settled(err error) error {
	if err == nil {
		return nil
	}
	return settledError{err}
}

// counts is how many rows each table holds.
func counts(ctx context.Context, t tx) (Copied, error) {
	var out Copied
	for _, tb := range tables {
		var n int
		if err := t.QueryRowContext(ctx, `SELECT count(*) FROM `+tb.name).Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, TableRows{tb.name, n})
	}
	return out, nil
}

// sameRows reports whether a and b hold the same rows in every table.
func sameRows(ctx context.Context, a, b tx) (bool, error) {
	for _, tb := range tables {
		ra, err := allRows(ctx, a, tb.name, tb.cols)
		if err != nil {
			return false, err
		}
		rb, err := allRows(ctx, b, tb.name, tb.cols)
		if err != nil {
			return false, err
		}
		if !slices.Equal(ra, rb) {
			return false, nil
		}
	}
	return true, nil
}

// allRows reads a table as one string per row, the same whichever
// dialect holds it (SQLite's 1 is PostgreSQL's true).
func allRows(ctx context.Context, t tx, table string, cols []string) ([]string, error) {
	rows, err := t.QueryContext(ctx, `SELECT `+strings.Join(cols, ", ")+` FROM `+table+` ORDER BY `+cols[0])
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var out []string
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		var b strings.Builder
		for _, v := range vals {
			switch x := v.(type) {
			case bool:
				if x {
					v = int64(1)
				} else {
					v = int64(0)
				}
			case []byte:
				v = cleanText(string(x)) // as the copy stored it
			case string:
				v = cleanText(x)
			}
			fmt.Fprintf(&b, "%q\x00", fmt.Sprint(v))
		}
		out = append(out, b.String())
	}
	return out, rows.Err()
}

func copyTable(ctx context.Context, from, to tx, table string, cols []string) (int, error) {
	list := strings.Join(cols, ", ")
	rows, err := from.QueryContext(ctx, `SELECT `+list+` FROM `+table+` ORDER BY `+cols[0])
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	insert := `INSERT INTO ` + table + ` (` + list + `) VALUES (?` + strings.Repeat(", ?", len(cols)-1) + `)`
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, err
		}
		for i, v := range vals {
			switch x := v.(type) {
			case []byte:
				vals[i] = string(x)
			case int64:
				if cols[i] == "thin" && to.pg {
					vals[i] = x != 0 // SQLite keeps booleans as integers
				}
			}
		}
		if _, err := to.ExecContext(ctx, insert, vals...); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

// runningElsewhere refuses a copy while the journal shows an operation
// whose process may still run: it would go on writing to the old state.
func (s *Store) runningElsewhere(ctx context.Context, t tx) error {
	rows, err := t.QueryContext(ctx, `SELECT object, owner FROM operations WHERE state = 'running'`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var object, own string
		if err := rows.Scan(&object, &own); err != nil {
			return err
		}
		if o, ok := owner.Parse(own); ok {
			if l, _ := o.Check(); l == owner.Gone {
				continue // a killed run: the copy carries it, and a rerun takes it over
			}
		}
		return fault.New(fault.ErrConflict, "an operation is running on %s: %s", s.path, s.describeHolder(ctx, object, true))
	}
	return rows.Err()
}

// guard refuses a state that blk state migrate copied elsewhere, and has
// every later write transaction check again. A read-only look at a state
// older than the moved table (it cannot migrate it) has nothing to check.
func (s *Store) guard(ctx context.Context) error {
	if v, err := s.schemaVersion(ctx); err != nil || v < movedVersion {
		return err
	}
	s.guarded = true
	return moved(ctx, s.db)
}

// movedVersion is the migration that made the moved table.
const movedVersion = 3

type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// MovedError is a state blk state migrate moved elsewhere.
type MovedError struct{ To, At string }

func (e *MovedError) Error() string {
	return fmt.Sprintf("moved to %s by 'blk state migrate' at %s: point state: in the config (or BLK_STATE, --state) there", e.To, e.At)
}

func (e *MovedError) Unwrap() error { return fault.ErrInvalid }

// moved is the error for a state blk state migrate moved elsewhere.
func moved(ctx context.Context, q querier) error {
	var to, at string
	err := q.QueryRowContext(ctx, `SELECT url, at FROM moved ORDER BY at DESC LIMIT 1`).Scan(&to, &at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return err
	}
	return &MovedError{To: to, At: at}
}
