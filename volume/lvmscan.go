package volume

import (
	"fmt"
	"strings"
)

// lvmScan warns when the host's LVM would scan blk's volumes and could
// activate the volume groups guests make inside them (two hosts activating
// one group corrupts it). On a storage host that is scan_lvs = 1: LVM then
// reads every LV, blk's volumes included, as a possible PV. On a compute
// host it is a filter that rejects nothing: the iSCSI disks of attached
// volumes are scanned like local disks. A filter that rejects something is
// taken as the operator's answer; blk cannot tell a good one from a bad
// one. These are warnings, not failed checks: Debian's defaults would fail
// every compute host, and blk works without the filter.
func (c *checker) lvmScan(storage, compute bool) []string {
	if !storage && !compute {
		return nil
	}
	res, err := run(c.ctx, c.r, false, "lvmconfig", "--typeconfig", "full", "devices/global_filter", "devices/filter", "devices/scan_lvs")
	if missing(err) {
		return nil // no LVM on the host: nothing scans
	}
	if err != nil {
		return []string{"could not read lvm.conf to check what LVM scans: " + firstLine(errText(err, string(res.Stderr)))}
	}
	conf := map[string]string{}
	for line := range strings.Lines(string(res.Stdout)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			conf[k] = v
		}
	}
	host := c.r.Host()
	var warn []string
	if storage && conf["scan_lvs"] == "1" {
		warn = append(warn, fmt.Sprintf("%s: lvm.conf sets scan_lvs = 1: LVM reads blk's volumes as PVs and may activate guests' volume groups; set scan_lvs = 0", host))
	}
	if compute && !rejects(conf["global_filter"]) && !rejects(conf["filter"]) {
		warn = append(warn, fmt.Sprintf("%s: lvm.conf has no filter that rejects devices: LVM scans the iSCSI disks of attached volumes and may activate guests' volume groups; "+
			"accept only the host's own PVs (see 'blk backend init --lvm-filter')", host))
	}
	return warn
}

// rejects reports whether an lvm.conf filter list (["a|...|", "r|...|"])
// has a reject pattern.
func rejects(list string) bool {
	for _, p := range strings.Split(strings.Trim(list, "[]"), ",") {
		if strings.HasPrefix(strings.Trim(strings.TrimSpace(p), `"`), "r") {
			return true
		}
	}
	return false
}
