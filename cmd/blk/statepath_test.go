package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
)

// Read-only commands never create the state file or its directory: a
// mistyped --state says so (exit 4) instead of listing nothing.
func TestReadOnlyCommandsCreateNoStateFile(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	missing := filepath.Join(dir, "typo", "state.db")
	for _, args := range [][]string{
		{"volume", "list"},
		{"volume", "show", "db1"},
	} {
		r := blk(t, dir, nil, append(args, "--state", missing)...)
		if r.code != ExitNotFound || !strings.Contains(r.errOut, "no state file at "+missing) {
			t.Errorf("%v: code %d, stderr %q", args, r.code, r.errOut)
		}
	}
	if r := blk(t, dir, nil, "host", "list", "--state", missing); r.code != 0 {
		t.Errorf("host list: code %d, stderr %q", r.code, r.errOut)
	}
	f := exectest.New(t, "stor1").Handle(func([]string) (string, string, int, bool) { return "", "no vg", 5, true })
	blk(t, dir, f, "backend", "list", "--state", missing)
	if _, err := os.Stat(filepath.Dir(missing)); !os.IsNotExist(err) {
		t.Fatalf("a read-only command created %s (%v)", filepath.Dir(missing), err)
	}
}

// One state file whatever the working directory: ~ is home, a relative path
// in the config is relative to the config file, a relative BLK_STATE is
// refused.
func TestStatePathIsOneFileWhereverBlkStarts(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Chdir(t.TempDir())
	for _, c := range []struct{ state, want string }{
		{"~/blk/state.db", filepath.Join(home, "blk", "state.db")},
		{"sub/state.db", "CONFIGDIR/sub/state.db"},
	} {
		dir := writeConfig(t, strings.Replace(goodConfig, "STATE", c.state, 1))
		want := strings.Replace(c.want, "CONFIGDIR", dir, 1)
		if r := blk(t, dir, nil, "volume", "list"); r.code != ExitNotFound || !strings.Contains(r.errOut, "no state file at "+want+" ") {
			t.Errorf("state %q: code %d, stderr %q, want it at %s", c.state, r.code, r.errOut, want)
		}
	}
	t.Setenv("BLK_STATE", "state.db")
	if r := blk(t, writeConfig(t, goodConfig), nil, "volume", "list"); r.code != ExitUsage || !strings.Contains(r.errOut, `BLK_STATE "state.db" is a relative path`) {
		t.Errorf("relative BLK_STATE: code %d, stderr %q", r.code, r.errOut)
	}
	if entries, _ := os.ReadDir("."); len(entries) != 0 {
		t.Errorf("files made in the working directory: %v", entries)
	}
}
