package volume

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// LVMScanWarnings says when a host's LVM would scan blk's volumes and could
// activate the volume groups guests make inside them (two hosts activating
// one group corrupts it). On a storage host that is scan_lvs = 1: LVM then
// reads every LV, blk's volumes included, as a possible PV. On a compute
// host it is a filter that rejects nothing: the iSCSI disks of attached
// volumes are scanned like local disks. A filter that rejects something is
// taken as the operator's answer; blk cannot tell a good one from a bad
// one. Host check is meant to print these; 'backend init --lvm-filter'
// prints a filter to use.
func (s *Service) LVMScanWarnings(ctx context.Context, host string) ([]string, error) {
	if _, ok := s.Config.Hosts[host]; !ok {
		return nil, fmt.Errorf("host %q: %w", host, ErrNotFound)
	}
	storage := false
	for _, b := range s.Config.Backends {
		storage = storage || (b.Type == "lvm" && b.Host == host)
	}
	compute := slices.Contains(s.Config.Compute, host)
	if !storage && !compute {
		return nil, nil
	}
	r, err := s.Hosts.Runner(host)
	if err != nil {
		return nil, err
	}
	res, err := run(ctx, r, false, "lvmconfig", "--typeconfig", "full", "devices/global_filter", "devices/filter", "devices/scan_lvs")
	if err != nil {
		return nil, fmt.Errorf("read lvm.conf on %s: %w", host, err)
	}
	conf := map[string]string{}
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			conf[k] = v
		}
	}
	var warn []string
	if storage && conf["scan_lvs"] == "1" {
		warn = append(warn, fmt.Sprintf("%s: lvm.conf sets scan_lvs = 1: LVM reads blk's volumes as PVs and may activate guests' volume groups; set scan_lvs = 0", host))
	}
	if compute && !rejects(conf["global_filter"]) && !rejects(conf["filter"]) {
		warn = append(warn, fmt.Sprintf("%s: lvm.conf has no filter that rejects devices: LVM scans the iSCSI disks of attached volumes and may activate guests' volume groups; "+
			"accept only the host's own PVs (see 'blk backend init --lvm-filter')", host))
	}
	return warn, nil
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
