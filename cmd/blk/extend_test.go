package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
)

func TestExtendGrowsAndRefusesWhatDoesNotGrow(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	f := exectest.New(t, "stor1")
	f.Handle(fakeLVM())
	if r := blk(t, dir, f, "volume", "create", "db1", "--size", "1GiB"); r.code != 0 {
		t.Fatalf("create: %d %s", r.code, r.errOut)
	}
	for _, size := range []string{"1GiB", "512MiB"} {
		r := blk(t, dir, f, "volume", "extend", "db1", "--size", size)
		if r.code != ExitUsage || !strings.Contains(r.errOut, "extend only grows a volume") {
			t.Errorf("--size %s: %d %q", size, r.code, r.errOut)
		}
	}
	if r := blk(t, dir, f, "volume", "extend", "db1"); r.code != ExitUsage || !strings.Contains(r.errOut, "--size is required") {
		t.Errorf("no --size: %d %q", r.code, r.errOut)
	}
	r := blk(t, dir, f, "volume", "extend", "db1", "--size", "2GiB", "-o", "json")
	var v map[string]any
	if r.code != 0 || json.Unmarshal([]byte(r.out), &v) != nil || v["size_bytes"].(float64) != 2<<30 || v["status"] != "available" {
		t.Fatalf("extend: %d %q %q", r.code, r.out, r.errOut)
	}
	if r := blk(t, dir, f, "volume", "extend", "--help"); !strings.Contains(r.out, "online=0,path=") || !strings.Contains(r.out, "EXIT STATUS") {
		t.Errorf("help: %q", r.out)
	}
}

// --from-image makes --size optional; a relative path is bad input that
// touches nothing.
func TestCreateFromImageFlags(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	f := exectest.New(t, "stor1")
	if r := blk(t, dir, f, "volume", "create", "root1", "--from-image", "deb.qcow2"); r.code != ExitUsage || !strings.Contains(r.errOut, "absolute, clean path") {
		t.Errorf("relative: %d %q", r.code, r.errOut)
	}
	if r := blk(t, dir, f, "volume", "create", "root1", "--image-format", "raw"); r.code != ExitUsage || !strings.Contains(r.errOut, "--size is required") {
		t.Errorf("no image, no size: %d %q", r.code, r.errOut)
	}
	f.Expect("regular file\n", "stat", "--dereference", "--format", "%F", "--", "/srv/i/deb.qcow2").
		Expect(`{"virtual-size": 1073741824, "format": "qcow2"}`, "qemu-img", "info", "--output=json", "/srv/i/deb.qcow2")
	r := blk(t, dir, f, "volume", "create", "root1", "--from-image", "/srv/i/deb.qcow2", "--size", "512MiB")
	if r.code != ExitUsage || !strings.Contains(r.errOut, "is smaller than image") {
		t.Errorf("smaller size: %d %q", r.code, r.errOut)
	}
}
