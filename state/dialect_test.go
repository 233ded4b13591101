package state

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/blk-project/blk/internal/pgtest"
)

// testPostgres runs the dialect-neutral tests against PostgreSQL:
// BLK_TEST_STATE=postgres go test ./state (make test does both).
var testPostgres = os.Getenv("BLK_TEST_STATE") == "postgres"

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// testState names a new, empty state for t: a file, or a PostgreSQL
// database under BLK_TEST_STATE=postgres.
func testState(t *testing.T) string {
	t.Helper()
	if testPostgres {
		return pgtest.URL(t)
	}
	return filepath.Join(t.TempDir(), "state.db")
}

// sqliteOnly marks a test of the state file itself.
func sqliteOnly(t *testing.T) {
	if testPostgres {
		t.Skip("a test of the SQLite file")
	}
}

func TestBindNumbersPlaceholdersOutsideQuotes(t *testing.T) {
	for q, want := range map[string]string{
		`SELECT 1`: `SELECT 1`,
		`UPDATE v SET a = ?, b = '?' WHERE c = ? AND "d?" = ?`: `UPDATE v SET a = $1, b = '?' WHERE c = $2 AND "d?" = $3`,
		`x = 'it''s ?' OR y = ?`:                               `x = 'it''s ?' OR y = $1`,
	} {
		if got := bind(true, q); got != want {
			t.Errorf("bind(%q) = %q, want %q", q, got, want)
		}
		if got := bind(false, q); got != q {
			t.Errorf("SQLite's bind changed %q", q)
		}
	}
}
