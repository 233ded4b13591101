package state

import (
	"context"
	"fmt"
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
type Copied []struct {
	Table string `json:"table" yaml:"table"`
	Rows  int    `json:"rows" yaml:"rows"`
}

// CopyTo copies everything s holds into dst, which must hold nothing (a
// new database or file): blk state migrate. It holds s's write lock
// throughout, so no blk changes s meanwhile, and refuses while an
// operation whose process may still run is journaled (it would go on
// writing to s). Then it marks s as moved, so a blk left pointing at s
// refuses to use it instead of going on alone. A dry run makes the same
// checks and counts what it would copy: dst may be opened read-only.
func (s *Store) CopyTo(ctx context.Context, dst *Store, dryRun bool) (Copied, error) {
	if s.memory {
		return nil, &noStateError{s.path}
	}
	var out Copied
	err := s.tx(ctx, func(src tx) error {
		if err := s.runningElsewhere(ctx, src); err != nil {
			return err
		}
		err := dst.tx(ctx, func(t tx) error {
			for _, tb := range tables {
				var n int
				if err := t.QueryRowContext(ctx, `SELECT count(*) FROM `+tb.name).Scan(&n); err != nil {
					return err
				}
				if n > 0 {
					return fault.New(fault.ErrConflict, "%s already holds %d %s: blk copies only into a state that holds nothing", dst.path, n, tb.name)
				}
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
				out = append(out, struct {
					Table string `json:"table" yaml:"table"`
					Rows  int    `json:"rows" yaml:"rows"`
				}{tb.name, n})
			}
			if t.pg && !dryRun {
				// The journal's ids go on from the highest copied.
				if _, err := t.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence('operations', 'id'),
					coalesce((SELECT max(id) FROM operations), 1), (SELECT count(*) > 0 FROM operations))`); err != nil {
					return err
				}
			}
			return nil
		})
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
	return out, err
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

// checkMoved refuses a state that blk state migrate copied elsewhere.
func (s *Store) checkMoved(ctx context.Context) error {
	var to, at string
	err := s.db.QueryRowContext(ctx, `SELECT url, at FROM moved ORDER BY at DESC LIMIT 1`).Scan(&to, &at)
	if err != nil {
		return nil // not moved (no row), or an older schema a read-only look cannot migrate
	}
	return fault.New(fault.ErrInvalid, "moved to %s by 'blk state migrate' at %s: point state: in the config (or BLK_STATE, --state) there",
		to, at)
}
