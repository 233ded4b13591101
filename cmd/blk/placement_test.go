package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/volume"
)

const twoBackends = `
state: STATE
hosts:
  stor1: {address: 192.0.2.10}
  stor2: {address: 192.0.2.11}
backends:
  lvm-1: {type: lvm, host: stor1, vg: blk, portal: "192.0.2.10:3260", iqn_prefix: iqn.2026-11.org.example.blk}
  lvm-2: {type: lvm, host: stor2, vg: blk, portal: "192.0.2.11:3260", iqn_prefix: iqn.2026-11.org.example.blk}
`

// storage answers vgs with free bytes and keeps the LVs it is asked to make.
func storage(t *testing.T, host, free string) *exectest.Fake {
	lvm := fakeLVM()
	return exectest.New(t, host).Handle(func(args []string) (string, string, int, bool) {
		if args[0] == "vgs" {
			return `{"report":[{"vg":[{"vg_name":"blk","vg_size":"8589934592","vg_free":"` + free + `","lv_count":"0"}]}]}`, "", 0, true
		}
		return lvm(args)
	})
}

func TestCreateWithoutBackendPlacesByFreeSpace(t *testing.T) {
	dir := writeConfig(t, twoBackends)
	hosts := map[string]*exectest.Fake{"stor1": storage(t, "stor1", "2147483648"), "stor2": storage(t, "stor2", "4294967296")}
	hook := func(h *volume.Hosts) {
		h.New = func(name string, _ config.Host) exec.Runner { return hosts[name] }
	}
	ctx := context.Background()
	r := blkWith(t, ctx, ttys{}, strings.NewReader(""), dir, hook, "volume", "create", "db1", "--size", "1GiB", "--dry-run")
	if r.code != 0 || !strings.Contains(r.errOut, "placement: lvm-2, the most free space") ||
		!strings.Contains(r.errOut, "  lvm-1 (lvm): 2GiB free; fits") || !strings.Contains(r.errOut, "* lvm-2 (lvm): 4GiB free; fits") ||
		!strings.Contains(r.out, "stor2: lvcreate") {
		t.Fatalf("dry run: %d\n%s\n%s", r.code, r.out, r.errOut)
	}
	r = blkWith(t, ctx, ttys{}, strings.NewReader(""), dir, hook, "volume", "create", "db1", "--size", "3GiB", "-o", "json")
	var v volume.Volume
	if err := json.Unmarshal([]byte(r.out), &v); r.code != 0 || err != nil || v.Backend != "lvm-2" {
		t.Fatalf("create: %d %q %q", r.code, r.out, r.errOut)
	}
	if strings.Contains(r.errOut, "placement") {
		t.Errorf("a plain create explains itself only with -v: %q", r.errOut)
	}
	r = blkWith(t, ctx, ttys{}, strings.NewReader(""), dir, hook, "volume", "create", "big", "--size", "5GiB")
	if r.code != ExitConflict || !strings.Contains(r.errOut, "no backend fits a volume of 5GiB (lvm-1: volume group has 2GiB free") {
		t.Errorf("too big: %d %q", r.code, r.errOut)
	}
	r = blkWith(t, ctx, ttys{}, strings.NewReader(""), dir, hook, "volume", "create", "f", "--size", "1GiB", "--backend-type", "nfs")
	if r.code != ExitUsage || !strings.Contains(r.errOut, "no nfs backend is configured") {
		t.Errorf("no nfs: %d %q", r.code, r.errOut)
	}
}

func TestBackendListShowsProvisionedAgainstFree(t *testing.T) {
	v := backendsView([]volume.BackendInfo{
		{Name: "lvm-1", Type: "lvm", Host: "stor1", VG: "blk", SizeBytes: 8 << 30, FreeBytes: 2 << 30},
		{Name: "lvm-2", Type: "lvm", Host: "stor2", VG: "blk", ThinPool: "pool", SizeBytes: 8 << 30, FreeBytes: 1 << 30, PoolSizeBytes: 4 << 30,
			ProvisionedBytes: 50 << 30, MaxOverSubscriptionRatio: 20, VirtualFreeBytes: 30 << 30, UsedPercent: 12.5, MetadataPercent: 3},
	})
	if got := strings.Join(v.rows[0], " "); got != "lvm-1 lvm stor1 8GiB 2GiB 0B 0 - -" {
		t.Errorf("thick row %q", got)
	}
	if got := strings.Join(v.rows[1], " "); got != "lvm-2 lvm stor2 8GiB 1GiB 0B 0 50GiB 30GiB" {
		t.Errorf("thin row %q", got)
	}
	if got := strings.Join(v.wideRows[1][11:], " "); got != "50GiB 30GiB 12.5 3.0 20 " {
		t.Errorf("wide thin row %q", got)
	}
}
