package volume

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/fault"
	"github.com/blk-project/blk/lvm"
)

// BackendInitOptions say what to build a backend's volume group on: devices,
// or a sparse file behind a loop device.
type BackendInitOptions struct {
	Backend  string
	Devices  []string
	LoopFile string
	LoopSize string
	// ThinPoolSize is a share of the group ("95%") or a size ("20GiB").
	ThinPoolSize string
	// Force wipes devices that hold something (a filesystem, a partition
	// table, a RAID or LVM label) instead of refusing them.
	Force bool
	// LVMFilter computes the lvm.conf global_filter line for the host.
	LVMFilter bool
}

// BackendExtendOptions add devices to a backend's volume group.
type BackendExtendOptions struct {
	Backend  string
	Devices  []string
	GrowPool bool
	Force    bool
}

// BackendSetup is what backend init or extend found and made.
type BackendSetup struct {
	Backend  string   `json:"backend" yaml:"backend"`
	Host     string   `json:"host" yaml:"host"`
	VG       string   `json:"vg" yaml:"vg"`
	ThinPool string   `json:"thin_pool,omitempty" yaml:"thin_pool,omitempty"`
	Devices  []string `json:"devices" yaml:"devices"`
	LoopFile string   `json:"loop_file,omitempty" yaml:"loop_file,omitempty"`
	// LoopUnit is the systemd unit that re-attaches the loop device at boot.
	LoopUnit string `json:"loop_unit,omitempty" yaml:"loop_unit,omitempty"`
	// Made lists what this run created, in order; empty when nothing changed.
	Made      []string `json:"made" yaml:"made"`
	Changed   bool     `json:"changed" yaml:"changed"`
	LVMFilter string   `json:"lvm_filter,omitempty" yaml:"lvm_filter,omitempty"`
	Notes     []string `json:"notes,omitempty" yaml:"notes,omitempty"`
}

// Only plain paths: the file's name goes into a systemd unit and an lvm.conf
// comment, where quoting rules differ.
var loopFileRE = regexp.MustCompile(`^/[A-Za-z0-9._+/-]+$`)

// Validate checks the options alone, before any host is contacted.
func (o BackendInitOptions) Validate() error {
	if (len(o.Devices) == 0) == (o.LoopFile == "") {
		return invalid("give either --device (one or more) or --loop-file with --size")
	}
	if err := checkDevices(o.Devices); err != nil {
		return err
	}
	if o.LoopFile != "" && (!loopFileRE.MatchString(o.LoopFile) || strings.Contains(o.LoopFile, "/../")) {
		return invalid("--loop-file %q: give an absolute path of letters, digits and . _ + - /", o.LoopFile)
	}
	if o.LoopSize != "" {
		if o.LoopFile == "" {
			return invalid("--size goes with --loop-file")
		}
		if _, err := ParseSize(o.LoopSize); err != nil {
			return err
		}
	}
	_, _, err := parsePoolSize(o.ThinPoolSize)
	return err
}

// Validate checks the options alone.
func (o BackendExtendOptions) Validate() error {
	if len(o.Devices) == 0 {
		return invalid("give the device(s) to add with --device")
	}
	return checkDevices(o.Devices)
}

func checkDevices(devs []string) error {
	for i, d := range devs {
		if !strings.HasPrefix(d, "/dev/") || strings.ContainsAny(d, " \t\n") {
			return invalid("--device %q: give a block device under /dev", d)
		}
		if slices.Contains(devs[:i], d) {
			return invalid("--device %s given twice", d)
		}
	}
	return nil
}

// parsePoolSize reads "95%" (of the group) or a size; "" is 95%.
func parsePoolSize(s string) (pct int64, bytes int64, _ error) {
	if s == "" {
		return 95, 0, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 1 || n > 100 {
			return 0, 0, invalid("--thin-pool-size %q: a percentage of the volume group is 1%% to 100%%", s)
		}
		return n, 0, nil
	}
	b, err := ParseSize(s)
	return 0, b, err
}

// devPlan is one device of the request and what is on it.
type devPlan struct {
	path string // as given
	name string // the kernel's name, as pvs reports it
	size int64
	mine bool // already a PV of this backend's group
	pv   bool // already a PV (in no group, forced): no pvcreate
	// reattached: an existing loop file this run attached again (after a
	// reboot without the unit), whose group LVM may not have activated.
	reattached bool
}

// lvmBackend finds an LVM backend and its host's runner.
func (s *Service) lvmBackend(name string) (string, config.Backend, exec.Runner, error) {
	name, b, err := s.backend(name)
	if err != nil {
		return "", b, nil, err
	}
	if b.Type != "lvm" {
		return "", b, nil, invalid("backend %q is of type %s: only lvm backends have a volume group to set up", name, b.Type)
	}
	r, err := s.Hosts.Runner(b.Host)
	return name, b, r, err
}

// BackendInit builds a backend's volume group (tagged blk) and thin pool on
// blank devices or a loop file. It refuses a device holding anything unless
// forced; run again on a finished backend it changes nothing and says so; a
// failure part-way removes what this run made.
func (s *Service) BackendInit(ctx context.Context, o BackendInitOptions) (res BackendSetup, err error) {
	if err = o.Validate(); err != nil {
		return BackendSetup{}, err
	}
	name, b, r, err := s.lvmBackend(o.Backend)
	if err != nil {
		return BackendSetup{}, err
	}
	l := lvm.LVM{Run: r, VG: b.VG}
	res = BackendSetup{Backend: name, Host: b.Host, VG: b.VG, ThinPool: b.ThinPool, Devices: []string{}, Made: []string{}, LoopFile: o.LoopFile}
	rev := newReverter()
	defer rev.fail(ctx, &err)
	// Runs before the undo, so its errors follow the cause.
	defer func() {
		if err != nil {
			err = fmt.Errorf("init backend %q on %s: %w", name, b.Host, err)
		}
	}()

	var plans []devPlan
	if o.LoopFile != "" {
		var p devPlan
		if p, err = s.loopDevice(ctx, r, o, rev, &res); err != nil {
			return res, err
		}
		if p.name != "" {
			plans = append(plans, p)
		}
	}
	pvs, err := l.PVs(ctx)
	if err != nil {
		return res, err
	}
	for _, d := range o.Devices {
		var p devPlan
		if p, err = planDevice(ctx, r, d, b.VG, pvs, o.Force); err != nil {
			return res, err
		}
		plans = append(plans, p)
	}
	for _, p := range plans {
		res.Devices = append(res.Devices, p.name)
	}

	detail, err := l.Detail(ctx)
	exists := err == nil
	if err != nil && !errors.Is(err, lvm.ErrNotFound) {
		return res, err
	}
	if exists {
		var others []string
		for _, p := range plans {
			if !p.mine {
				others = append(others, p.path)
			}
		}
		if len(others) > 0 {
			return res, conflict("volume group %q already exists on %s: to add %s run 'blk backend extend %s --device ...'",
				b.VG, strings.Join(pvNames(pvs, b.VG), ", "), strings.Join(others, ", "), name)
		}
		if len(plans) == 1 && plans[0].reattached {
			if _, err = run(ctx, r, true, "vgchange", "--activate", "ay", b.VG); err != nil {
				return res, err
			}
			res.Made = append(res.Made, "activated volume group "+b.VG)
		}
	} else {
		var devs []lvm.PV
		for _, p := range plans {
			devs = append(devs, lvm.PV{Name: p.name, SizeBytes: p.size})
			if p.pv {
				continue
			}
			if err = l.CreatePV(ctx, p.name); err != nil {
				return res, err
			}
			rev.add("pvremove "+p.name, func(ctx context.Context) error { return l.RemovePV(ctx, p.name) })
			res.Made = append(res.Made, "created physical volume "+p.name)
		}
		if err = l.CreateGroup(ctx, devs); err != nil {
			return res, err
		}
		rev.add("vgremove "+b.VG, l.RemoveGroup)
		res.Made = append(res.Made, "created volume group "+b.VG+" (tagged "+lvm.Tag+")")
		if detail, err = l.NewGroup(ctx, devs); err != nil {
			return res, err
		}
	}

	if b.ThinPool != "" {
		need := !exists
		if exists {
			if _, err := l.Pool(ctx, b.ThinPool); errors.Is(err, lvm.ErrNotFound) {
				need = true
			} else if err != nil {
				return res, err
			}
		}
		if need {
			made, err := createPool(ctx, l, b.ThinPool, o.ThinPoolSize, detail)
			if err != nil {
				return res, err
			}
			res.Made = append(res.Made, made)
		}
	}
	rev.success()
	res.Changed = len(res.Made) > 0

	if o.LoopFile != "" {
		unit, note := s.installLoopUnit(ctx, r, name, o.LoopFile, b.VG)
		res.LoopUnit = unit
		res.Notes = append(res.Notes, note,
			"a loop file is for trying blk, not for production: its I/O goes through the host's filesystem, and it fills that filesystem")
	}
	if o.LVMFilter {
		line, notes, err := lvmFilter(ctx, r, b.VG, res.Devices)
		if err != nil {
			res.Notes = append(res.Notes, "could not compute the lvm.conf filter: "+err.Error())
		}
		res.LVMFilter = line
		res.Notes = append(res.Notes, notes...)
	}
	if !res.Changed {
		pool := ""
		if b.ThinPool != "" {
			pool = " with thin pool " + b.ThinPool
		}
		res.Notes = append([]string{fmt.Sprintf("backend %q is already set up: volume group %s on %s%s; nothing changed",
			name, b.VG, strings.Join(res.Devices, ", "), pool)}, res.Notes...)
	}
	return res, nil
}

func createPool(ctx context.Context, l lvm.LVM, pool, size string, vg lvm.GroupDetail) (string, error) {
	pct, bytes, err := parsePoolSize(size)
	if err != nil {
		return "", err
	}
	budget := bytes
	if pct > 0 {
		budget = vg.SizeBytes * pct / 100
	}
	budget = min(budget, vg.FreeBytes)
	plan, err := lvm.PlanThinPool(budget, vg.ExtentBytes)
	if err != nil {
		return "", invalid("--thin-pool-size %s of volume group %s (%s free): %v", orDefault(size, "95%"), vg.Name, FormatSize(vg.FreeBytes), err)
	}
	if err := l.CreateThinPool(ctx, pool, plan); err != nil {
		return "", err
	}
	return fmt.Sprintf("created thin pool %s/%s (%s, metadata %s and its spare, chunk %s)", l.VG, pool,
		FormatSize(plan.DataBytes), FormatSize(plan.MetadataBytes), FormatSize(plan.ChunkBytes)), nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func pvNames(pvs []lvm.PV, vg string) []string {
	var out []string
	for _, pv := range pvs {
		if pv.VG == vg {
			out = append(out, pv.Name)
		}
	}
	return out
}

// planDevice probes dev and refuses it if it holds anything, unless forced;
// a PV of another group is refused even then.
func planDevice(ctx context.Context, r exec.Runner, dev, vg string, pvs []lvm.PV, force bool) (devPlan, error) {
	d, err := lvm.ProbeDevice(ctx, r, dev)
	if err != nil {
		if errors.Is(err, lvm.ErrNotBlockDevice) {
			return devPlan{}, invalid("%s on %s is not a block device", dev, r.Host())
		}
		return devPlan{}, err
	}
	p := devPlan{path: dev, name: d.Name, size: d.SizeBytes}
	for _, pv := range pvs {
		if pv.Name != d.Name {
			continue
		}
		switch {
		case pv.VG == vg:
			p.mine = true
			return p, nil
		case pv.VG != "":
			return p, invalid("%s is a physical volume of volume group %q on %s: blk will not take it, even with --force", dev, pv.VG, r.Host())
		case force:
			p.pv = true
			return p, nil
		}
	}
	if d.Mountpoint != "" {
		return p, invalid("%s on %s is mounted at %s", dev, r.Host(), d.Mountpoint)
	}
	if holds := d.Holds(); len(holds) > 0 && !force {
		return p, invalid("%s on %s holds %s: refusing to overwrite it; if it is the right device, rerun with --force to wipe it",
			dev, r.Host(), strings.Join(holds, ", "))
	}
	return p, nil
}

// loopDevice finds or makes the loop file and its loop device. In a dry run
// the device is not made and its name is a placeholder.
func (s *Service) loopDevice(ctx context.Context, r exec.Runner, o BackendInitOptions, rev *reverter, res *BackendSetup) (devPlan, error) {
	dev, err := lvm.LoopOf(ctx, r, o.LoopFile)
	if err != nil {
		return devPlan{}, err
	}
	p := devPlan{path: o.LoopFile}
	if dev == "" {
		_, err = run(ctx, r, false, "test", "-e", o.LoopFile)
		switch code := exec.ExitCode(err); {
		case err == nil:
			p.reattached = true
			if o.LoopSize != "" {
				res.Notes = append(res.Notes, o.LoopFile+" exists: --size ignored")
			}
			var out exec.Result
			if out, err = run(ctx, r, false, "stat", "--format=%s", o.LoopFile); err != nil {
				return p, err
			}
			p.size, _ = strconv.ParseInt(strings.TrimSpace(string(out.Stdout)), 10, 64)
		case code == 1:
			if o.LoopSize == "" {
				return p, invalid("--loop-file %s does not exist on %s: give --size to make it", o.LoopFile, r.Host())
			}
			size, _ := ParseSize(o.LoopSize)
			// Sparse: it takes space only as volumes are written.
			if _, err = run(ctx, r, true, "truncate", "--size", strconv.FormatInt(size, 10), o.LoopFile); err != nil {
				return p, err
			}
			rev.add("rm "+o.LoopFile, func(ctx context.Context) error {
				// A group or loop device left on the file still holds data
				// in it: keep the file for the operator to look at.
				if left := rev.leftovers(); len(left) > 0 {
					return fmt.Errorf("kept %s: %s could not be undone", o.LoopFile, strings.Join(left, ", "))
				}
				_, rerr := run(ctx, r, true, "rm", "-f", o.LoopFile)
				return rerr
			})
			res.Made = append(res.Made, "created sparse file "+o.LoopFile+" ("+FormatSize(size)+")")
			p.size = size
		default:
			return p, err
		}
		if dev, err = lvm.AttachLoop(ctx, r, o.LoopFile); err != nil {
			return p, err
		}
		if dev == "" {
			// Dry run: nothing was attached. A new file holds nothing; one
			// that exists is taken to be the group's PV, as it most likely
			// is (a rerun after a reboot).
			res.Made = append(res.Made, "attached a loop device to "+o.LoopFile)
			if p.reattached {
				res.Notes = append(res.Notes, "dry run: "+o.LoopFile+" exists but is not attached: what it holds, and a group on it, show only once it is, "+
					"so a real run may need fewer of the commands after losetup (after a reboot: only losetup and vgchange)")
			}
			p.name, p.mine = "/dev/loopN", p.reattached
			return p, nil
		}
		rev.add("losetup --detach "+dev, func(ctx context.Context) error { return lvm.DetachLoop(ctx, r, dev) })
		res.Made = append(res.Made, "attached loop device "+dev+" to "+o.LoopFile)
	}
	// The PV on a re-attached file shows only now.
	pvs, err := lvm.LVM{Run: r}.RecheckPVs(ctx)
	if err != nil {
		return p, err
	}
	q, err := planDevice(ctx, r, dev, res.VG, pvs, o.Force)
	q.path, q.reattached = o.LoopFile, p.reattached
	return q, err
}

// LoopUnit names the systemd unit that re-attaches a backend's loop file.
func LoopUnit(backend string) string { return "blk-loop-" + backend + ".service" }

// loopUnitText attaches the file at boot and activates the group (LVM's
// event activation would too; saying it costs nothing), before tgtd.
func loopUnitText(backend, file, vg string) string {
	return `# Written by blk backend init: re-attaches the loop file behind backend ` + backend + `.
[Unit]
Description=blk: loop device for backend ` + backend + `
DefaultDependencies=no
RequiresMountsFor=` + file + `
After=systemd-udevd.service
Before=tgt.service shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/losetup --find --show ` + file + `
ExecStartPost=/sbin/vgchange --activate ay ` + vg + `

[Install]
WantedBy=multi-user.target
`
}

// installLoopUnit makes the loop device come back after a reboot. Without
// systemd on the host it says what to run instead. Failing here does not
// undo the backend, which works until the next reboot: it is a note.
func (s *Service) installLoopUnit(ctx context.Context, r exec.Runner, backend, file, vg string) (unit, note string) {
	unit = LoopUnit(backend)
	manual := "after a reboot, run 'blk backend init " + backend + " --loop-file " + file + "' again: it re-attaches the file and activates the group"
	if _, err := run(ctx, r, false, "test", "-d", "/run/systemd/system"); err != nil {
		if exec.ExitCode(err) == 1 {
			return "", "the loop device does not come back by itself after a reboot and " + r.Host() + " does not run systemd: " + manual
		}
		return "", "could not check for systemd: " + err.Error() + "; " + manual
	}
	path := "/etc/systemd/system/" + unit
	text := loopUnitText(backend, file, vg)
	if cur, err := run(ctx, r, false, "cat", path); err == nil && string(cur.Stdout) == text {
		return unit, "the loop device comes back after a reboot: " + unit + " is installed"
	}
	for _, c := range []exec.Cmd{
		{Args: []string{"tee", path}, Stdin: strings.NewReader(text), Mutates: true},
		{Args: []string{"systemctl", "daemon-reload"}, Mutates: true},
		{Args: []string{"systemctl", "enable", unit}, Mutates: true},
	} {
		if _, err := r.Run(ctx, c); err != nil {
			return "", "could not install " + unit + ": " + err.Error() + "; " + manual
		}
	}
	return unit, "installed and enabled " + unit + " on " + r.Host() + ": it re-attaches the loop device at boot"
}

// BackendExtend adds devices to a backend's volume group and, with
// GrowPool, grows its thin pool by the space they add.
func (s *Service) BackendExtend(ctx context.Context, o BackendExtendOptions) (res BackendSetup, err error) {
	if err = o.Validate(); err != nil {
		return BackendSetup{}, err
	}
	name, b, r, err := s.lvmBackend(o.Backend)
	if err != nil {
		return BackendSetup{}, err
	}
	if o.GrowPool && b.ThinPool == "" {
		return BackendSetup{}, invalid("backend %q has no thin_pool: --grow-pool needs one", name)
	}
	l := lvm.LVM{Run: r, VG: b.VG}
	res = BackendSetup{Backend: name, Host: b.Host, VG: b.VG, ThinPool: b.ThinPool, Devices: []string{}, Made: []string{}}
	detail, err := l.Detail(ctx)
	if errors.Is(err, lvm.ErrNotFound) {
		return res, fault.New(ErrNotFound, "backend %q: volume group %s does not exist on %s: run 'blk backend init %s' first",
			name, b.VG, b.Host, name)
	}
	rev := newReverter()
	defer rev.fail(ctx, &err)
	defer func() {
		if err != nil {
			err = fmt.Errorf("extend backend %q on %s: %w", name, b.Host, err)
		}
	}()
	if err != nil {
		return res, err
	}
	pvs, err := l.PVs(ctx)
	if err != nil {
		return res, err
	}
	var add []devPlan
	for _, d := range o.Devices {
		var p devPlan
		if p, err = planDevice(ctx, r, d, b.VG, pvs, o.Force); err != nil {
			return res, err
		}
		res.Devices = append(res.Devices, p.name)
		if !p.mine {
			add = append(add, p)
		}
	}
	if len(add) == 0 {
		rev.success()
		res.Notes = append(res.Notes, fmt.Sprintf("%s already in volume group %s; nothing changed", strings.Join(res.Devices, ", "), b.VG))
		return res, nil
	}
	var devs []lvm.PV
	var added []string
	for _, p := range add {
		devs = append(devs, lvm.PV{Name: p.name, SizeBytes: p.size})
		added = append(added, p.name)
		if p.pv {
			continue
		}
		if err = l.CreatePV(ctx, p.name); err != nil {
			return res, err
		}
		rev.add("pvremove "+p.name, func(ctx context.Context) error { return l.RemovePV(ctx, p.name) })
		res.Made = append(res.Made, "created physical volume "+p.name)
	}
	after, err := l.ExtendGroup(ctx, detail, devs)
	if err != nil {
		return res, err
	}
	rev.add("vgreduce "+b.VG, func(ctx context.Context) error { return l.ReduceGroup(ctx, added) })
	res.Made = append(res.Made, "extended volume group "+b.VG+" by "+strings.Join(added, ", "))
	res.Changed = true
	if o.GrowPool {
		if err := growPool(ctx, l, b.ThinPool, after.FreeBytes-detail.FreeBytes, detail.ExtentBytes, &res); err != nil {
			return res, err
		}
	}
	rev.success()
	return res, nil
}

// growPool grows a thin pool by the bytes a group gained, metadata first:
// more data needs more metadata, and the spare grows with it.
func growPool(ctx context.Context, l lvm.LVM, name string, added, extent int64, res *BackendSetup) error {
	pool, err := l.Pool(ctx, name)
	if err != nil {
		return err
	}
	metaGrow := max(0, lvm.PoolMetadataFor(pool.DataBytes+added, pool.ChunkBytes, extent)-pool.MetadataBytes)
	grow := (added - 2*metaGrow) / extent * extent
	if metaGrow > 0 {
		if err := l.GrowPoolMetadata(ctx, name, metaGrow); err != nil {
			return err
		}
		res.Made = append(res.Made, "grew the metadata of thin pool "+l.VG+"/"+name+" by "+FormatSize(metaGrow))
	}
	if grow > 0 {
		if err := l.GrowPool(ctx, name, grow); err != nil {
			return err
		}
		res.Made = append(res.Made, "grew thin pool "+l.VG+"/"+name+" by "+FormatSize(grow))
	}
	return nil
}
