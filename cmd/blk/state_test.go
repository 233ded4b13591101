package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/internal/pgtest"
)

// blk state migrate moves a working SQLite state to PostgreSQL: a dry run
// creates nothing, the copy lists what it moved, the old file then refuses
// every blk (naming the new home), and the workflows go on against
// PostgreSQL. The password is never printed.
func TestStateMigrateToPostgres(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	f := exectest.New(t, "stor1")
	f.Handle(fakeLVM())
	for _, n := range []string{"db1", "db2"} {
		if r := blk(t, dir, f, "volume", "create", n, "--size", "1GiB"); r.code != 0 {
			t.Fatalf("create %s: %d %s", n, r.code, r.errOut)
		}
	}
	before := blk(t, dir, f, "volume", "list", "-o", "json").out
	url := pgtest.URL(t)
	pw := pgtest.Password(url)
	noSecret := func(what string, r result) {
		t.Helper()
		if strings.Contains(r.out+r.errOut, pw) {
			t.Errorf("%s printed the password: %s %s", what, r.out, r.errOut)
		}
	}

	r := blk(t, dir, nil, "state", "migrate")
	if r.code != ExitUsage || !strings.Contains(r.errOut, "--to is required") {
		t.Errorf("no --to: %d %q", r.code, r.errOut)
	}
	if r = blk(t, dir, nil, "state", "migrate", "--to", filepath.Join(dir, "state.db")); r.code != ExitUsage || !strings.Contains(r.errOut, "is the state being copied") {
		t.Errorf("--to the state in use: %d %q", r.code, r.errOut)
	}
	r = blk(t, dir, nil, "state", "migrate", "--to", url, "--dry-run", "-o", "json")
	noSecret("dry run", r)
	if r.code != 0 || !strings.Contains(r.out, `{"table":"volumes","rows":2}`) {
		t.Fatalf("dry run: %d %s %s", r.code, r.out, r.errOut)
	}
	if r = blk(t, dir, nil, "volume", "list", "-o", "json", "--state", url); strings.TrimSpace(r.out) != "[]" {
		t.Errorf("after the dry run PostgreSQL lists %s", r.out)
	}

	r = blk(t, dir, nil, "state", "migrate", "--to", url)
	noSecret("migrate", r)
	if r.code != 0 || !strings.Contains(r.out, "volumes") || !strings.Contains(r.errOut, "set state: postgres://blk:xxxxx@127.0.0.1:") {
		t.Fatalf("migrate: %d %s %s", r.code, r.out, r.errOut)
	}
	r = blk(t, dir, f, "volume", "list", "-o", "json")
	if r.code != ExitUsage || !strings.Contains(r.errOut, "moved to postgres://blk:xxxxx@") {
		t.Errorf("the old file after the move: %d %q", r.code, r.errOut)
	}
	noSecret("the old file", r)
	after := blk(t, dir, f, "volume", "list", "-o", "json", "--state", url)
	var a, b []map[string]any
	json.Unmarshal([]byte(before), &a)
	json.Unmarshal([]byte(after.out), &b)
	if len(a) != 2 || len(b) != 2 || a[0]["uuid"] != b[0]["uuid"] || a[1]["created_at"] != b[1]["created_at"] {
		t.Errorf("volumes before:\n%s\nafter:\n%s %s", before, after.out, after.errOut)
	}
	t.Setenv("BLK_STATE", url)
	if r = blk(t, dir, f, "volume", "create", "db3", "--size", "2GiB"); r.code != 0 {
		t.Errorf("create on PostgreSQL: %d %s", r.code, r.errOut)
	}
	if r = blk(t, dir, f, "volume", "delete", "db1", "--yes"); r.code != 0 {
		t.Errorf("delete on PostgreSQL: %d %s", r.code, r.errOut)
	}
	if r = blk(t, dir, f, "volume", "create", "db2", "--size", "1GiB"); r.code != ExitConflict {
		t.Errorf("a second db2 on PostgreSQL: %d %s", r.code, r.errOut)
	}
	r = blk(t, dir, f, "volume", "list")
	if got := r.out; !strings.Contains(got, "db2") || !strings.Contains(got, "db3") || strings.Contains(got, "db1") {
		t.Errorf("list on PostgreSQL: %q %s", got, r.errOut)
	}
	r = blk(t, dir, nil, "config", "show")
	noSecret("config show", r)
	if !strings.Contains(r.out, "postgres://blk:xxxxx@") {
		t.Errorf("config show: %s", r.out)
	}

	// A second copy into the same database is refused, and changes nothing.
	t.Setenv("BLK_STATE", "")
	other := writeConfig(t, goodConfig)
	if r = blk(t, other, f, "volume", "create", "x1", "--size", "1GiB"); r.code != 0 {
		t.Fatal(r.errOut)
	}
	r = blk(t, other, nil, "state", "migrate", "--to", url)
	noSecret("a second migrate", r)
	if r.code != ExitConflict || !strings.Contains(r.errOut, "already holds 2 volumes") {
		t.Errorf("a second migrate: %d %q", r.code, r.errOut)
	}
	if r = blk(t, other, nil, "volume", "list"); r.code != 0 || !strings.Contains(r.out, "x1") {
		t.Errorf("the refused copy's source: %d %q %q", r.code, r.out, r.errOut)
	}
	// Back to a file works the same way.
	back := filepath.Join(t.TempDir(), "back.db")
	if r = blk(t, dir, nil, "state", "migrate", "--state", url, "--to", back); r.code != 0 {
		t.Errorf("migrate back to a file: %d %s", r.code, r.errOut)
	}
	if r = blk(t, dir, nil, "volume", "list", "--state", back); r.code != 0 || !strings.Contains(r.out, "db3") {
		t.Errorf("list of the file migrated back: %d %q %q", r.code, r.out, r.errOut)
	}
}
