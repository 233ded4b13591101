package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/state"
)

// Read-only commands never create the state file or its directory: a
// mistyped --state says so (show: exit 4; list: an empty list and a note).
func TestReadOnlyCommandsCreateNoStateFile(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	missing := filepath.Join(dir, "typo", "state.db")
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"volume", "list", "-o", "json"}, 0},
		{[]string{"volume", "show", "db1"}, ExitNotFound},
	} {
		r := blk(t, dir, nil, append(c.args, "--state", missing)...)
		if r.code != c.code || !strings.Contains(r.errOut, "no state file at "+missing) {
			t.Errorf("%v: code %d, stderr %q", c.args, r.code, r.errOut)
		}
		if c.code == 0 && strings.TrimSpace(r.out) != "[]" {
			t.Errorf("%v: out %q, want an empty list", c.args, r.out)
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

// Commands on volumes a missing state file cannot hold, and a create that
// fails its checks, leave a mistyped --state missing too: "nothing was
// changed" holds, and the error names the path.
func TestFailedCommandsCreateNoStateFile(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	missing := filepath.Join(dir, "typo", "state.db")
	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"volume", "delete", "db1", "--yes"}, ExitNotFound, "no state file at " + missing},
		{[]string{"volume", "attach", "db1", "--instance", "web1"}, ExitNotFound, "no state file at " + missing},
		{[]string{"volume", "detach", "db1"}, ExitNotFound, "no state file at " + missing},
		{[]string{"volume", "create", "db1", "--size", "1GiB", "--backend", "nope"}, ExitUsage, `backend "nope" is not configured`},
	} {
		r := blk(t, dir, nil, append(c.args, "--state", missing)...)
		if r.code != c.code || !strings.Contains(r.errOut, c.says) {
			t.Errorf("%v: code %d, stderr %q", c.args, r.code, r.errOut)
		}
		if _, err := os.Stat(filepath.Dir(missing)); !os.IsNotExist(err) {
			t.Fatalf("%v created %s (%v)", c.args, filepath.Dir(missing), err)
		}
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
		if r := blk(t, dir, nil, "volume", "show", "x"); r.code != ExitNotFound || !strings.Contains(r.errOut, "no state file at "+want+" ") {
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

// A volume held by another blk: the error says by whom and what to do, and
// no hint points to a command that does not exist.
func TestHeldVolumeSaysWhoAndWhatToDo(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	st, err := state.Open(context.Background(), filepath.Join(dir, "state.db"), state.ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.InsertVolume(context.Background(), &state.Volume{UUID: "u1", Name: "db1", Backend: "lvm-1", SizeBytes: 1 << 30, Status: state.Creating}); err != nil {
		t.Fatal(err)
	}
	f := exectest.New(t, "stor1")
	f.Handle(fakeLVM())
	r := blk(t, dir, f, "volume", "create", "db1", "--size", "1GiB")
	if r.code != ExitConflict || !strings.Contains(r.errOut, `held by "create" (pid `) || !strings.Contains(r.errOut, "still running: wait") {
		t.Errorf("code %d, stderr %q", r.code, r.errOut)
	}
	for _, nowhere := range []string{"reconcile", "reset-state"} {
		if strings.Contains(r.errOut, nowhere) {
			t.Errorf("stderr points to %s, which does not exist: %q", nowhere, r.errOut)
		}
	}
}
