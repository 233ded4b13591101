package volume

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/blk-project/blk/internal/pgtest"
)

// BLK_TEST_STATE=postgres runs the workflow tests with their state in
// PostgreSQL (make test does both).
var testPostgres = os.Getenv("BLK_TEST_STATE") == "postgres"

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// testState names a new, empty state for t.
func testState(t *testing.T) string {
	t.Helper()
	if testPostgres {
		return pgtest.URL(t)
	}
	return filepath.Join(t.TempDir(), "state.db")
}
