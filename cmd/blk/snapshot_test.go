package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
)

func TestSnapshotCommandsEndToEnd(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	f := exectest.New(t, "stor1")
	f.Handle(fakeLVM())
	if r := blk(t, dir, f, "volume", "create", "db1", "--size", "1GiB"); r.code != 0 {
		t.Fatalf("create: %d %q", r.code, r.errOut)
	}
	r := blk(t, dir, f, "snapshot", "create", "db1", "--name", "before", "-o", "json")
	if r.code != 0 {
		t.Fatalf("snapshot create: %d %q", r.code, r.errOut)
	}
	var sn map[string]any
	if err := json.Unmarshal([]byte(r.out), &sn); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"uuid", "name", "volume", "status", "size_bytes", "consistency", "created_at"} {
		if _, ok := sn[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, r.out)
		}
	}
	if sn["name"] != "before" || sn["volume"] != "db1" || sn["status"] != "available" || sn["consistency"] != "clean" {
		t.Errorf("snapshot = %s", r.out)
	}
	if got := completions(t, dir, nil, "snapshot", "delete", ""); !slices.Equal(got, []string{"before"}) {
		t.Errorf("snapshot delete '': %v", got)
	}
	if r := blk(t, dir, f, "volume", "delete", "db1", "--yes"); r.code != 3 || !strings.Contains(r.errOut, "snapshot(s) before") {
		t.Errorf("delete of a volume with a snapshot: %d %q", r.code, r.errOut)
	}
	if r := blk(t, dir, f, "snapshot", "list", "db1", "-o", "json"); r.code != 0 || !strings.Contains(r.out, `"name":"before"`) {
		t.Errorf("list: %d %q %q", r.code, r.out, r.errOut)
	}
	if r := blk(t, dir, f, "snapshot", "create", "db1", "--quiesce", "maybe"); r.code != 2 {
		t.Errorf("bad --quiesce: %d %q", r.code, r.errOut)
	}
	if r := blk(t, dir, f, "snapshot", "show", "nope"); r.code != 4 {
		t.Errorf("show of a missing snapshot: %d %q", r.code, r.errOut)
	}
	if r := blk(t, dir, f, "snapshot", "delete", "before", "--yes"); r.code != 0 {
		t.Fatalf("snapshot delete: %d %q", r.code, r.errOut)
	}
	if r := blk(t, dir, f, "volume", "delete", "db1", "--yes"); r.code != 0 {
		t.Errorf("delete after the snapshot went: %d %q", r.code, r.errOut)
	}
}

// A dry run of a copy shows the volume it would make and the stream into
// it, and neither makes nor copies anything.
func TestCreateFromVolumeDryRun(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	f := exectest.New(t, "stor1")
	f.Handle(fakeLVM())
	if r := blk(t, dir, f, "volume", "create", "db1", "--size", "1GiB"); r.code != 0 {
		t.Fatalf("create: %d %q", r.code, r.errOut)
	}
	r := blk(t, dir, f, "volume", "create", "db2", "--from-volume", "db1", "--dry-run")
	if r.code != 0 || !strings.Contains(r.out, "lvcreate") || !strings.Contains(r.out, "(streamed copy)") {
		t.Fatalf("dry run: %d %q %q", r.code, r.out, r.errOut)
	}
	if r := blk(t, dir, f, "volume", "show", "db2"); r.code != 4 {
		t.Errorf("the dry run made db2: %d %q", r.code, r.out)
	}
	if r := blk(t, dir, f, "volume", "create", "db3"); r.code != 2 || !strings.Contains(r.errOut, "--size is required") {
		t.Errorf("no size, no source: %d %q", r.code, r.errOut)
	}
}

func TestSnapshotDryRunChangesNothing(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	f := exectest.New(t, "stor1")
	f.Handle(fakeLVM())
	if r := blk(t, dir, f, "volume", "create", "db1", "--size", "1GiB"); r.code != 0 {
		t.Fatalf("create: %d %q", r.code, r.errOut)
	}
	r := blk(t, dir, f, "snapshot", "create", "db1", "--name", "s1", "--dry-run")
	if r.code != 0 || !strings.Contains(r.out, "lvcreate --yes --snapshot --name _snapshot-") {
		t.Fatalf("dry run: %d %q %q", r.code, r.out, r.errOut)
	}
	if r := blk(t, dir, f, "snapshot", "show", "s1"); r.code != 4 {
		t.Errorf("the dry run made s1: %d", r.code)
	}
	if r := blk(t, dir, f, "volume", "show", "db1", "-o", "json"); !strings.Contains(r.out, `"status": "available"`) && !strings.Contains(r.out, `"status":"available"`) {
		t.Errorf("volume after a dry run: %s", r.out)
	}
}
