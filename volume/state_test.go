package volume

import (
	"os"
	"testing"

	"github.com/blk-project/blk/internal/pgtest"
)

// BLK_TEST_STATE=postgres runs the workflow tests with their state in
// PostgreSQL (make test does both): each test's state is pgtest.State.
func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}
