package volume

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/lvm"
)

// Check is one thing a host needs for one of its roles.
type Check struct {
	Role   string `json:"role" yaml:"role"` // storage:<backend> or compute
	Check  string `json:"check" yaml:"check"`
	OK     bool   `json:"ok" yaml:"ok"`
	Detail string `json:"detail,omitempty" yaml:"detail,omitempty"` // what was found
	Fix    string `json:"fix,omitempty" yaml:"fix,omitempty"`       // for a failed check: what to install, start or create
}

// HostReport is what host check found on one host.
type HostReport struct {
	Host      string   `json:"host" yaml:"host"`
	Address   string   `json:"address" yaml:"address"`
	Roles     []string `json:"roles" yaml:"roles"`
	Reachable bool     `json:"reachable" yaml:"reachable"`
	Error     string   `json:"error,omitempty" yaml:"error,omitempty"`
	Checks    []Check  `json:"checks" yaml:"checks"`
	// Warnings are risks that fail no check (what LVM scans).
	Warnings []string `json:"warnings,omitempty" yaml:"warnings,omitempty"`
}

// HostList reports the configured hosts and what each is used for, without
// contacting them.
func (s *Service) HostList() []HostReport {
	var out []HostReport
	for _, name := range slices.Sorted(maps.Keys(s.Config.Hosts)) {
		h := s.Config.Hosts[name]
		addr := h.Address
		if h.Local {
			addr = "local"
		}
		out = append(out, HostReport{Host: name, Address: addr, Roles: s.roles(name), Checks: []Check{}})
	}
	return out
}

func (s *Service) roles(host string) []string {
	var roles []string
	for _, n := range slices.Sorted(maps.Keys(s.Config.Backends)) {
		if s.Config.Backends[n].Host == host {
			roles = append(roles, "storage:"+n)
		}
	}
	if slices.Contains(s.Config.Compute, host) {
		roles = append(roles, "compute")
	}
	return roles
}

// ErrUnreachable is a host that could not be reached.
var ErrUnreachable = errors.New("unreachable")

// CheckHosts contacts the named hosts (all when none are named) in
// parallel, DefaultParallel at a time, and checks that each has what its roles need. The error names
// every failed check and what to do about it.
func (s *Service) CheckHosts(ctx context.Context, names []string) ([]HostReport, error) {
	all := s.HostList()
	reports := all
	if len(names) > 0 {
		reports = nil
		for _, n := range names {
			i := slices.IndexFunc(all, func(r HostReport) bool { return r.Host == n })
			if i < 0 {
				return nil, fmt.Errorf("host %q: %w (configured: %s)", Truncate(n), ErrNotFound, strings.Join(slices.Sorted(maps.Keys(s.Config.Hosts)), ", "))
			}
			reports = append(reports, all[i])
		}
	}
	errs := each(ctx, len(reports), 0, func(i int) error { return s.checkHost(ctx, &reports[i]) })
	return reports, errors.Join(errs...)
}

func (s *Service) checkHost(ctx context.Context, rep *HostReport) error {
	r, err := s.Hosts.Runner(rep.Host)
	if err != nil {
		return err
	}
	// The first command proves the host is reachable at all.
	if _, err := run(ctx, r, false, "true"); err != nil {
		rep.Error = err.Error()
		return fmt.Errorf("host %q: %w: %w", rep.Host, ErrUnreachable, err)
	}
	rep.Reachable = true
	c := checker{ctx: ctx, r: r}
	storage := false
	for _, name := range slices.Sorted(maps.Keys(s.Config.Backends)) {
		b := s.Config.Backends[name]
		if b.Host != rep.Host {
			continue
		}
		c.role = "storage:" + name
		switch b.Type {
		case "lvm":
			c.lvmStorage(name, b)
			storage = true
		case "nfs":
			c.tool("exportfs", "install nfs-kernel-server", nil, "/usr/sbin/exportfs", "-s")
		}
	}
	compute := slices.Contains(s.Config.Compute, rep.Host)
	if compute {
		c.role = "compute"
		c.compute(slices.ContainsFunc(slices.Collect(maps.Values(s.Config.Backends)), func(b config.Backend) bool { return b.Type == "nfs" }))
	}
	rep.Warnings = c.lvmScan(storage, compute)
	rep.Checks = c.checks
	if rep.Checks == nil {
		rep.Checks = []Check{}
	}
	return checkError(rep.Host, c.checks)
}

// checkError names the failed checks; the report says how to fix each.
func checkError(host string, checks []Check) error {
	var failed []string
	for _, ch := range checks {
		if !ch.OK {
			failed = append(failed, ch.Check)
		}
	}
	if failed == nil {
		return nil
	}
	if len(failed) == 1 {
		for _, ch := range checks {
			if !ch.OK {
				return fmt.Errorf("host %q: %s: %s (%s)", host, ch.Check, ch.Detail, ch.Fix)
			}
		}
	}
	return fmt.Errorf("host %q: %d checks failed (%s): the report says what to install, start or create for each", host, len(failed), strings.Join(failed, ", "))
}

// checker runs one host's checks in order, recording each.
type checker struct {
	ctx    context.Context
	r      exec.Runner
	role   string
	checks []Check
}

func (c *checker) add(check string, ok bool, detail, fix string) bool {
	if ok {
		fix = ""
	}
	c.checks = append(c.checks, Check{Role: c.role, Check: check, OK: ok, Detail: detail, Fix: fix})
	return ok
}

// tool checks a command answers; version, when given, picks its version out
// of the output for the detail. A tool that is not there is to install.
func (c *checker) tool(name, install string, version *regexp.Regexp, args ...string) bool {
	res, err := run(c.ctx, c.r, false, args...)
	out := string(res.Stdout) + string(res.Stderr)
	if missing(err) {
		return c.add(name, false, "not installed", install)
	}
	detail := ""
	if version != nil {
		if m := version.FindStringSubmatch(out); m != nil {
			detail = m[1]
			err = nil // some tools print their version and exit non-zero
		}
	}
	if err != nil {
		return c.add(name, false, firstLine(errText(err, out)), install)
	}
	return c.add(name, true, detail, "")
}

func missing(err error) bool {
	return errors.Is(err, exec.ErrNotFound) || exec.ExitCode(err) == 127
}

func errText(err error, out string) string {
	if s := strings.TrimSpace(out); s != "" {
		return s
	}
	return err.Error()
}

// poolFull is the thin pool use above which new thin volumes are refused
// by the check: a full pool stops every thin volume's writes.
const poolFull = 95

func (c *checker) lvmStorage(backend string, b config.Backend) {
	if !c.tool("lvm2", "install lvm2", regexp.MustCompile(`LVM version:\s*(\S+)`), "lvm", "version") {
		return
	}
	l := lvm.LVM{Run: c.r, VG: b.VG}
	vg, err := l.Group(c.ctx)
	switch {
	case errors.Is(err, lvm.ErrNotFound):
		c.add("volume group "+b.VG, false, "not found", fmt.Sprintf("create it: blk backend init %s --device DEVICE...", backend))
	case err != nil:
		c.add("volume group "+b.VG, false, firstLine(err.Error()), "see vgs "+b.VG)
	default:
		detail := fmt.Sprintf("%s free of %s", FormatSize(vg.FreeBytes), FormatSize(vg.SizeBytes))
		if b.ThinPool == "" {
			c.add("volume group "+b.VG, vg.FreeBytes > 0, detail, fmt.Sprintf("no space for new volumes: vgextend %s DEVICE, or delete volumes", b.VG))
		} else {
			c.add("volume group "+b.VG, true, detail, "")
		}
	}
	if b.ThinPool != "" && err == nil {
		name := "thin pool " + b.VG + "/" + b.ThinPool
		create := fmt.Sprintf("create it: lvcreate --type thin-pool -l 90%%FREE -n %s %s", b.ThinPool, b.VG)
		pool, perr := l.LV(c.ctx, b.ThinPool)
		switch {
		case errors.Is(perr, lvm.ErrNotFound):
			c.add(name, false, "not found", create)
		case perr != nil:
			c.add(name, false, firstLine(perr.Error()), "see lvs "+b.VG+"/"+b.ThinPool)
		case !strings.HasPrefix(pool.Attr, "t"):
			c.add(name, false, "exists but is not a thin pool (lv_attr "+pool.Attr+")", "name a thin pool in thin_pool, or remove the key")
		default:
			c.add(name, pool.DataPercent < poolFull, fmt.Sprintf("%.0f%% used of %s", pool.DataPercent, FormatSize(pool.SizeBytes)),
				fmt.Sprintf("almost full: lvextend -L +SIZE %s/%s", b.VG, b.ThinPool))
		}
	}
	c.dmTargets(b.ThinPool != "")
	res, err := run(c.ctx, c.r, false, "tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "system")
	switch {
	case missing(err):
		c.add("tgtd", false, "tgtadm not installed", "install tgt")
	case err != nil:
		c.add("tgtd", false, "not running: "+firstLine(errText(err, string(res.Stdout)+string(res.Stderr))), "start it: systemctl enable --now tgt")
	default:
		c.add("tgtd", true, "running", "")
	}
}

// dmTargets checks the device-mapper targets LVM needs: thin-pool and thin
// for thin volumes, snapshot for thick snapshots. A target not loaded yet
// is fine when its module is there: the kernel loads it on first use.
func (c *checker) dmTargets(thin bool) {
	res, err := run(c.ctx, c.r, false, "dmsetup", "targets")
	if missing(err) {
		c.add("device-mapper", false, "dmsetup not installed", "install dmsetup")
		return
	}
	if err != nil {
		c.add("device-mapper", false, firstLine(errText(err, string(res.Stderr))), "load it: modprobe dm_mod")
		return
	}
	loaded := map[string]bool{}
	for line := range strings.Lines(string(res.Stdout)) {
		if f := strings.Fields(line); len(f) > 0 {
			loaded[f[0]] = true
		}
	}
	want := []struct{ target, module string }{{"snapshot", "dm_snapshot"}}
	if thin {
		want = append([]struct{ target, module string }{{"thin-pool", "dm_thin_pool"}}, want...)
	}
	for _, w := range want {
		name := "dm target " + w.target
		if loaded[w.target] {
			c.add(name, true, "loaded", "")
			continue
		}
		if _, err := run(c.ctx, c.r, false, "modprobe", "--dry-run", w.module); err == nil {
			c.add(name, true, "module "+w.module+" present (loaded on first use)", "")
			continue
		}
		c.add(name, false, "not in the kernel", "use a kernel with "+w.module+" (Debian: linux-image-amd64), then modprobe "+w.module)
	}
}

const initiatorFile = "/etc/iscsi/initiatorname.iscsi"

func (c *checker) compute(nfs bool) {
	if c.tool("iscsiadm", "install open-iscsi", regexp.MustCompile(`version\s+(\S+)`), "iscsiadm", "--version") {
		if _, err := run(c.ctx, c.r, false, "pidof", "iscsid"); err == nil {
			c.add("iscsid", true, "running", "")
		} else if _, err := run(c.ctx, c.r, false, "systemctl", "is-active", "--quiet", "iscsid.socket"); err == nil {
			c.add("iscsid", true, "socket-activated", "")
		} else {
			c.add("iscsid", false, "not running", "start it: systemctl enable --now iscsid.socket")
		}
		res, err := run(c.ctx, c.r, false, "cat", initiatorFile)
		name := ""
		for line := range strings.Lines(string(res.Stdout)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "InitiatorName="); ok {
				name = strings.TrimSpace(v)
			}
		}
		switch {
		case err != nil:
			c.add("initiator name", false, initiatorFile+" not readable: "+firstLine(errText(err, string(res.Stderr))),
				"reinstall open-iscsi, which writes it, or: echo InitiatorName=$(iscsi-iname) > "+initiatorFile)
		case name == "":
			c.add("initiator name", false, "no InitiatorName= line in "+initiatorFile, "echo InitiatorName=$(iscsi-iname) > "+initiatorFile)
		default:
			if err := config.CheckIQN(name); err != nil {
				c.add("initiator name", false, err.Error(), "echo InitiatorName=$(iscsi-iname) > "+initiatorFile+", then restart iscsid")
			} else {
				c.add("initiator name", true, name, "")
			}
		}
	}
	if conn, err := c.r.DialUnix(c.ctx, hypervisor.Socket); err != nil {
		c.add("libvirt", false, hypervisor.Socket+" not reachable: "+firstLine(err.Error()), "install libvirt-daemon-system and start it: systemctl enable --now libvirtd")
	} else {
		conn.Close()
		c.add("libvirt", true, hypervisor.Socket, "")
	}
	if nfs {
		c.tool("mount.nfs", "install nfs-common", regexp.MustCompile(`nfs-utils\s+([\w.-]+)`), "/sbin/mount.nfs", "-V")
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
