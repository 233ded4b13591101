package state

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// OpenSnapshot opens the state file for a quick look that must leave no
// trace (shell completion): read-only and immutable, so SQLite creates no
// -wal or -shm file and takes no lock. It may miss changes still in another
// process's WAL; callers that need them use Open.
func OpenSnapshot(ctx context.Context, path string) (*Store, error) {
	uri := "file:" + strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path) + "?mode=ro&immutable=1"
	sdb, err := sql.Open("sqlite3", uri)
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	return &Store{db: db{DB: sdb}, path: path}, nil
}
