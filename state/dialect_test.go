package state

import (
	"os"
	"testing"

	"github.com/blk-project/blk/internal/pgtest"
)

// testPostgres: BLK_TEST_STATE=postgres runs the dialect-neutral tests,
// whose state is pgtest.State, against PostgreSQL (make test does both).
func testPostgres() bool { return pgtest.Requested() }

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// sqliteOnly marks a test of the state file itself.
func sqliteOnly(t *testing.T) {
	if testPostgres() {
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
