// Package config is blk's configuration: hosts, backends and defaults, and
// the checks that turn a bad file into one line naming the key at fault.
// Reading it (file, environment, flags) is the CLI's job.
package config

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

type Config struct {
	State       string                `mapstructure:"state"`
	Hosts       map[string]Host       `mapstructure:"hosts"`
	Backends    map[string]Backend    `mapstructure:"backends"`
	Compute     []string              `mapstructure:"compute"`
	BackupRepos map[string]BackupRepo `mapstructure:"backup_repos"`
	Defaults    Defaults              `mapstructure:"defaults"`
}

type Host struct {
	Local      bool   `mapstructure:"local"`
	Address    string `mapstructure:"address"`
	User       string `mapstructure:"user"`
	Port       int    `mapstructure:"port"`
	Identity   string `mapstructure:"identity"`
	KnownHosts string `mapstructure:"known_hosts"`
}

type Backend struct {
	Type         string `mapstructure:"type"`
	Host         string `mapstructure:"host"`
	VG           string `mapstructure:"vg"`
	ThinPool     string `mapstructure:"thin_pool"`
	Portal       string `mapstructure:"portal"`
	IQNPrefix    string `mapstructure:"iqn_prefix"`
	CHAP         bool   `mapstructure:"chap"`
	Export       string `mapstructure:"export"`
	Path         string `mapstructure:"path"`
	MountOptions string `mapstructure:"mount_options"`
}

type BackupRepo struct {
	Host string `mapstructure:"host"`
	Path string `mapstructure:"path"`
}

type Defaults struct {
	Backend    string `mapstructure:"backend"`
	BackupRepo string `mapstructure:"backup_repo"`
}

// Error is one problem in one key of one file.
type Error struct {
	File, Key, Problem string
}

func (e *Error) Error() string {
	return fmt.Sprintf("config %s: %s: %s", e.File, e.Key, e.Problem)
}

// Default is what blk uses with no configuration file: this machine, with
// its volume group "blk" (the lab's layout).
func Default() *Config {
	return &Config{
		State: "/var/lib/blk/state.db",
		Hosts: map[string]Host{"local": {Local: true}},
		Backends: map[string]Backend{"lvm-1": {Type: "lvm", Host: "local", VG: "blk", ThinPool: "pool",
			Portal: "127.0.0.1:3260", IQNPrefix: "iqn.2026-11.org.example.blk"}},
		Compute:  []string{"local"},
		Defaults: Defaults{Backend: "lvm-1"},
	}
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	// LVM's own rule for VG and LV names.
	lvmNameRE = regexp.MustCompile(`^[a-zA-Z0-9+_.][a-zA-Z0-9+_.-]*$`)
	iqnRE     = regexp.MustCompile(`^iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[^\s]*)?$`)
)

// Validate checks c and returns the first problem, in a stable order.
func (c *Config) Validate(file string) error {
	bad := func(key, format string, args ...any) error {
		return &Error{File: file, Key: key, Problem: fmt.Sprintf(format, args...)}
	}
	if c.State == "" {
		return bad("state", "must name the state file")
	}
	if len(c.Hosts) == 0 {
		return bad("hosts", "no hosts defined")
	}
	for _, name := range sortedKeys(c.Hosts) {
		h := c.Hosts[name]
		key := "hosts." + name
		if !nameRE.MatchString(name) {
			return bad(key, "host name must match %s", nameRE)
		}
		if h.Local && h.Address != "" {
			return bad(key, "a local host takes no address")
		}
		if !h.Local && h.Address == "" {
			return bad(key+".address", "missing (or set local: true)")
		}
		if h.Port < 0 || h.Port > 65535 {
			return bad(key+".port", "%d is not a TCP port", h.Port)
		}
	}
	for _, name := range sortedKeys(c.Backends) {
		b := c.Backends[name]
		key := "backends." + name
		if !nameRE.MatchString(name) {
			return bad(key, "backend name must match %s", nameRE)
		}
		if _, ok := c.Hosts[b.Host]; !ok {
			if b.Host == "" {
				return bad(key+".host", "missing")
			}
			return bad(key+".host", "host %q is not defined under hosts", b.Host)
		}
		switch b.Type {
		case "lvm":
			if b.VG == "" {
				return bad(key+".vg", "missing: name the volume group")
			}
			if !lvmNameRE.MatchString(b.VG) {
				return bad(key+".vg", "%q is not a valid volume group name", b.VG)
			}
			if b.ThinPool != "" && !lvmNameRE.MatchString(b.ThinPool) {
				return bad(key+".thin_pool", "%q is not a valid LV name", b.ThinPool)
			}
			if err := checkPortal(b.Portal); err != nil {
				return bad(key+".portal", "%v", err)
			}
			if b.IQNPrefix == "" {
				return bad(key+".iqn_prefix", "missing (e.g. iqn.2026-11.org.example.blk)")
			}
			if !iqnRE.MatchString(b.IQNPrefix) {
				return bad(key+".iqn_prefix", "%q is not an IQN (iqn.YYYY-MM.reversed.domain)", b.IQNPrefix)
			}
		case "nfs":
			if _, p, ok := strings.Cut(b.Export, ":"); !ok || !strings.HasPrefix(p, "/") {
				return bad(key+".export", "%q is not HOST:/PATH", b.Export)
			}
			if !strings.HasPrefix(b.Path, "/") {
				return bad(key+".path", "missing or not absolute: the export's path on its host")
			}
		case "":
			return bad(key+".type", "missing (lvm or nfs)")
		default:
			return bad(key+".type", "unknown backend type %q (want lvm or nfs)", b.Type)
		}
	}
	for i, h := range c.Compute {
		if _, ok := c.Hosts[h]; !ok {
			return bad(fmt.Sprintf("compute[%d]", i), "host %q is not defined under hosts", h)
		}
	}
	for _, name := range sortedKeys(c.BackupRepos) {
		r := c.BackupRepos[name]
		if _, ok := c.Hosts[r.Host]; !ok {
			return bad("backup_repos."+name+".host", "host %q is not defined under hosts", r.Host)
		}
		if !strings.HasPrefix(r.Path, "/") {
			return bad("backup_repos."+name+".path", "missing or not absolute")
		}
	}
	if d := c.Defaults.Backend; d != "" {
		if _, ok := c.Backends[d]; !ok {
			return bad("defaults.backend", "backend %q is not defined under backends", d)
		}
	}
	if d := c.Defaults.BackupRepo; d != "" {
		if _, ok := c.BackupRepos[d]; !ok {
			return bad("defaults.backup_repo", "repository %q is not defined under backup_repos", d)
		}
	}
	return nil
}

func checkPortal(p string) error {
	if p == "" {
		return fmt.Errorf("missing: the ADDRESS:PORT initiators reach tgtd at")
	}
	host, port, err := net.SplitHostPort(p)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not ADDRESS:PORT", p)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q has no valid port", p)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
