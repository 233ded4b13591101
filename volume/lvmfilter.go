package volume

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/lvm"
)

// lvmFilter computes the lvm.conf global_filter a storage host should have:
// accept the backend's PVs and the host's own (those of every other group,
// except PVs on iSCSI disks, which are guests' volumes logged in here), and
// reject everything else, so LVM never scans or activates the groups guests
// build inside their volumes. blk prints it rather than editing lvm.conf: a
// wrong filter can hide the root group at the next boot (the initramfs keeps
// a copy), the host may have a filter of its own to merge with, and only
// the operator knows which disks are to come.
func lvmFilter(ctx context.Context, r exec.Runner, vg string, devices []string) (string, []string, error) {
	pvs, err := lvm.LVM{Run: r}.PVs(ctx)
	if err != nil {
		return "", nil, err
	}
	names := slices.Clone(devices) // in a dry run the group's PVs do not exist yet
	for _, pv := range pvs {
		if pv.VG != "" && !slices.Contains(names, pv.Name) {
			names = append(names, pv.Name)
		}
	}
	var accept []string
	loop := false
	for _, name := range names {
		if strings.HasPrefix(name, "/dev/loop") {
			loop = true
			continue
		}
		res, err := run(ctx, r, false, "udevadm", "info", "--query=symlink", "--name="+name)
		if err != nil {
			return "", nil, err
		}
		links := strings.Fields(string(res.Stdout))
		if slices.ContainsFunc(links, func(l string) bool { return strings.Contains(l, "-iscsi-") }) {
			continue
		}
		accept = append(accept, filterPattern(name, links))
	}
	var notes []string
	if loop {
		// A loop device's number can change across reboots and it has no
		// stable link: accept them all.
		accept = append(accept, `"a|^/dev/loop[0-9]+$|"`)
		notes = append(notes, "the filter accepts every /dev/loopN: a loop device has no stable name")
	}
	line := "global_filter = [ " + strings.Join(append(accept, `"r|.*|"`), ", ") + " ]"
	notes = append(notes, fmt.Sprintf("blk does not edit lvm.conf: on %s, put this line in the devices { } section of /etc/lvm/lvm.conf "+
		"(merged with any global_filter already there), check that 'pvs' still lists every PV, then run 'update-initramfs -u'; "+
		"add each device 'blk backend extend' adds later. On compute hosts use the same line without %s's PVs.", r.Host(), vg))
	return line, notes, nil
}

// filterPattern accepts a device by a stable name where it has one: the
// kernel's sdX order can change between boots.
func filterPattern(name string, links []string) string {
	slices.Sort(links)
	path := name
	for _, l := range links {
		// The hardware's ids, not LVM's own (lvm-pv-uuid-) or device-mapper's.
		if id, ok := strings.CutPrefix(l, "disk/by-id/"); ok && !strings.HasPrefix(id, "lvm-pv-uuid-") && !strings.HasPrefix(id, "dm-") {
			path = "/dev/" + l
			break
		}
	}
	return `"a|^` + regexp.QuoteMeta(path) + `$|"`
}
