package state

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// blk's SQL is written once, with ? placeholders, in the subset SQLite and
// PostgreSQL share. db and tx rebind it for the store's dialect at the one
// seam every statement passes, so each query exists once.
type db struct {
	*sql.DB
	pg bool
}

type tx struct {
	*sql.Tx
	pg bool
}

func (d db) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return d.DB.QueryContext(ctx, bind(d.pg, q), text(args)...)
}

func (d db) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return d.DB.QueryRowContext(ctx, bind(d.pg, q), text(args)...)
}

func (d db) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return d.DB.ExecContext(ctx, bind(d.pg, q), text(args)...)
}

func (t tx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return t.Tx.QueryContext(ctx, bind(t.pg, q), text(args)...)
}

func (t tx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return t.Tx.QueryRowContext(ctx, bind(t.pg, q), text(args)...)
}

func (t tx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return t.Tx.ExecContext(ctx, bind(t.pg, q), text(args)...)
}

// cleanText is s as the state stores it (see text).
func cleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// text makes every string argument valid UTF-8 without NUL: a tool's
// stderr kept as an error, or a path, may hold any byte, PostgreSQL refuses
// both (and a failed status move would leave a volume stuck), and JSON
// output needs UTF-8. Names, paths and instances are checked where they
// come in (volume.CheckText), so what is replaced is only a tool's words.
func text(args []any) []any {
	var out []any
	for i, a := range args {
		s, ok := a.(string)
		if !ok || utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
			continue
		}
		if out == nil {
			out = append([]any(nil), args...) // the caller's slice stays as it was
		}
		out[i] = cleanText(s)
	}
	if out == nil {
		return args
	}
	return out
}

var bound sync.Map // query → its PostgreSQL form

// bind turns ? placeholders into PostgreSQL's $1, $2, … outside quoted
// literals and identifiers.
func bind(pg bool, q string) string {
	if !pg || !strings.Contains(q, "?") {
		return q
	}
	if b, ok := bound.Load(q); ok {
		return b.(string)
	}
	var b strings.Builder
	n := 0
	var quote byte
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	bound.Store(q, b.String())
	return b.String()
}

// Exec, Query and QueryRow are for tests and one-off looks; blk's own
// statements pass a context.
func (d db) Exec(q string, args ...any) (sql.Result, error) {
	return d.ExecContext(context.Background(), q, args...)
}

func (d db) Query(q string, args ...any) (*sql.Rows, error) {
	return d.QueryContext(context.Background(), q, args...)
}

func (d db) QueryRow(q string, args ...any) *sql.Row {
	return d.QueryRowContext(context.Background(), q, args...)
}
