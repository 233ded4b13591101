//go:build lab

package lab

import (
	"strconv"
	"strings"
	"testing"
)

type backendInfo struct {
	Name             string  `json:"name"`
	SizeBytes        int64   `json:"size_bytes"`
	PoolSizeBytes    int64   `json:"pool_size_bytes"`
	ProvisionedBytes int64   `json:"provisioned_bytes"`
	VirtualFreeBytes int64   `json:"virtual_free_bytes"`
	Ratio            float64 `json:"max_over_subscription_ratio"`
	UsedPercent      float64 `json:"used_percent"`
	MetadataPercent  float64 `json:"metadata_percent"`
}

// backend list's provisioned bytes are what LVM says the pool's thin LVs
// promise, read in one lvs --select that real LVM must accept.
func TestBackendListShowsWhatTheThinPoolPromises(t *testing.T) {
	name := uniq("prov")
	ok(t, "volume", "create", name, "--size", "64MiB", "--thin", "--backend", "lvm-1")
	defer ok(t, "volume", "delete", name, "--yes")
	var lvm1, nfs1 *backendInfo
	infos := decode[[]backendInfo](t, ok(t, "backend", "list", "-o", "json"))
	for i := range infos {
		switch infos[i].Name {
		case "lvm-1":
			lvm1 = &infos[i]
		case "nfs-1":
			nfs1 = &infos[i]
		}
	}
	if lvm1 == nil || nfs1 == nil {
		t.Fatalf("backends %+v", infos)
	}
	var want int64
	for _, s := range strings.Fields(sh(t, "lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size", "--select", "pool_lv=pool", "blk")) {
		n, _ := strconv.ParseInt(s, 10, 64)
		want += n
	}
	if lvm1.ProvisionedBytes != want || want < 64<<20 || lvm1.Ratio != 20 ||
		lvm1.VirtualFreeBytes != 20*lvm1.PoolSizeBytes-want || lvm1.MetadataPercent <= 0 {
		t.Errorf("lvm-1 = %+v; the pool's thin LVs promise %d bytes", *lvm1, want)
	}
	if nfs1.VirtualFreeBytes <= 0 || nfs1.UsedPercent <= 0 || nfs1.Ratio != 20 {
		t.Errorf("nfs-1 = %+v", *nfs1)
	}
}

// Placement in the lab's two backends: a dry run names both, how much
// each has free and which it chose, and changes nothing.
func TestPlacementDryRunShowsEachBackend(t *testing.T) {
	t.Setenv("BLK_DEFAULTS_BACKEND", "auto")
	name := uniq("place")
	r := blk(t, "volume", "create", name, "--size", "64MiB", "--thin", "--dry-run")
	if r.code != 0 || !strings.Contains(r.errOut, "placement: ") || !strings.Contains(r.errOut, "lvm-1 (lvm): ") ||
		!strings.Contains(r.errOut, "nfs-1 (nfs): ") || strings.Count(r.errOut, " * ") != 1 || !strings.Contains(r.errOut, "virtual free") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", r.code, r.out, r.errOut)
	}
	r = blk(t, "volume", "create", name, "--size", "64MiB", "--backend-type", "lvm", "--dry-run")
	if r.code != 0 || !strings.Contains(r.errOut, "placement: lvm-1") || !strings.Contains(r.out, "lab: lvcreate") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", r.code, r.out, r.errOut)
	}
	if r := blk(t, "volume", "show", name); r.code != 4 {
		t.Errorf("a dry run made %s: exit %d", name, r.code)
	}
}
