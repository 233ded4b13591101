package volume

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/blk-project/blk/internal/exec"
)

// ToolStatus is one tool on one host.
type ToolStatus struct {
	Tool    string `json:"tool" yaml:"tool"`
	Present bool   `json:"present" yaml:"present"`
	Version string `json:"version,omitempty" yaml:"version,omitempty"`
	Detail  string `json:"detail,omitempty" yaml:"detail,omitempty"`
}

// HostReport is what host check found on one host.
type HostReport struct {
	Host      string       `json:"host" yaml:"host"`
	Address   string       `json:"address" yaml:"address"`
	Roles     []string     `json:"roles" yaml:"roles"`
	Reachable bool         `json:"reachable" yaml:"reachable"`
	Error     string       `json:"error,omitempty" yaml:"error,omitempty"`
	Tools     []ToolStatus `json:"tools" yaml:"tools"`
}

type probe struct {
	tool string
	args []string
	// version picks the version out of the output; nil means presence only.
	version *regexp.Regexp
}

var probes = []probe{
	{"lvm2", []string{"lvm", "version"}, regexp.MustCompile(`LVM version:\s*(\S+)`)},
	{"tgtadm", []string{"tgtadm", "--version"}, regexp.MustCompile(`(\d[\w.-]*)`)},
	{"iscsiadm", []string{"iscsiadm", "--version"}, regexp.MustCompile(`version\s+(\S+)`)},
	{"virsh", []string{"virsh", "--version"}, regexp.MustCompile(`(\d[\w.-]*)`)},
	{"libvirt-socket", []string{"test", "-S", "/var/run/libvirt/libvirt-sock"}, nil},
	{"mount.nfs", []string{"/sbin/mount.nfs", "-V"}, regexp.MustCompile(`nfs-utils\s+([\w.-]+)`)},
	{"exportfs", []string{"/usr/sbin/exportfs", "-s"}, nil},
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
		out = append(out, HostReport{Host: name, Address: addr, Roles: s.roles(name), Tools: []ToolStatus{}})
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
// parallel and reports which tools each has.
func (s *Service) CheckHosts(ctx context.Context, names []string) ([]HostReport, error) {
	all := s.HostList()
	reports := all
	if len(names) > 0 {
		reports = nil
		for _, n := range names {
			i := slices.IndexFunc(all, func(r HostReport) bool { return r.Host == n })
			if i < 0 {
				return nil, fmt.Errorf("host %q: %w (configured: %s)", n, ErrNotFound, strings.Join(slices.Sorted(maps.Keys(s.Config.Hosts)), ", "))
			}
			reports = append(reports, all[i])
		}
	}
	errs := make([]error, len(reports))
	var wg sync.WaitGroup
	for i := range reports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.checkHost(ctx, &reports[i])
		}()
	}
	wg.Wait()
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
	for _, p := range probes {
		res, err := run(ctx, r, false, p.args...)
		st := ToolStatus{Tool: p.tool, Present: err == nil}
		out := string(res.Stdout) + string(res.Stderr)
		if p.version != nil {
			// Some tools print their version and exit non-zero.
			if m := p.version.FindStringSubmatch(out); m != nil {
				st.Present, st.Version = true, m[1]
			}
		}
		if !st.Present {
			if errors.Is(err, exec.ErrNotFound) || exec.ExitCode(err) == 127 {
				st.Detail = "not installed"
			} else if exec.ExitCode(err) >= 0 {
				st.Detail = firstLine(out)
				if p.tool == "libvirt-socket" {
					st.Detail = "no socket: libvirtd not running"
				}
			} else {
				st.Detail = err.Error()
			}
		}
		rep.Tools = append(rep.Tools, st)
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
