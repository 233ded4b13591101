// Package config is blk's configuration: hosts, backends and defaults, and
// the checks that turn a bad file into one line naming the key at fault.
// Reading it (file, environment, flags) is the CLI's job.
package config

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

type Config struct {
	State       string                `yaml:"state"`
	Hosts       map[string]Host       `yaml:"hosts"`
	Backends    map[string]Backend    `yaml:"backends"`
	Compute     []string              `yaml:"compute"`
	BackupRepos map[string]BackupRepo `yaml:"backup_repos"`
	Defaults    Defaults              `yaml:"defaults"`

	// lines are where Parse found each key, for errors naming the line.
	lines map[string]int
}

type Host struct {
	Local      bool   `yaml:"local"`
	Address    string `yaml:"address"`
	User       string `yaml:"user"`
	Port       int    `yaml:"port"`
	Identity   string `yaml:"identity"`
	KnownHosts string `yaml:"known_hosts"`
}

type Backend struct {
	Type         string `yaml:"type"`
	Host         string `yaml:"host"`
	VG           string `yaml:"vg"`
	ThinPool     string `yaml:"thin_pool"`
	Portal       string `yaml:"portal"`
	IQNPrefix    string `yaml:"iqn_prefix"`
	CHAP         bool   `yaml:"chap"`
	Export       string `yaml:"export"`
	Path         string `yaml:"path"`
	MountOptions string `yaml:"mount_options"`
	// Placement (cinder-scheduler's capacity filter): thin volumes may
	// promise this many times the pool's (or export's) size; 0 is the
	// default, DefaultOverSubscription.
	MaxOverSubscriptionRatio float64 `yaml:"max_over_subscription_ratio"`
	// No new volume goes to a thin pool or export used above this percent
	// (data or metadata): a full thin pool stops every volume in it.
	MaxPoolUsagePercent int `yaml:"max_pool_usage_percent"`
}

// Cinder's defaults for placement.
const (
	DefaultOverSubscription = 20
	DefaultPoolUsagePercent = 90
)

// OverSubscription is the backend's max_over_subscription_ratio, or the default.
func (b Backend) OverSubscription() float64 {
	if b.MaxOverSubscriptionRatio == 0 {
		return DefaultOverSubscription
	}
	return b.MaxOverSubscriptionRatio
}

// PoolUsageLimit is the backend's max_pool_usage_percent, or the default.
func (b Backend) PoolUsageLimit() int {
	if b.MaxPoolUsagePercent == 0 {
		return DefaultPoolUsagePercent
	}
	return b.MaxPoolUsagePercent
}

// BackupRepo is a backup repository: a directory on a host (type dir, the
// default: host and path), or a prefix of an S3 bucket (type s3: the rest).
type BackupRepo struct {
	Type string `yaml:"type"`
	Host string `yaml:"host"`
	Path string `yaml:"path"`
	// Endpoint is host[:port] or https://host[:port] (TLS), or
	// http://host[:port] (plain HTTP, only when spelled out).
	Endpoint string `yaml:"endpoint"`
	Bucket   string `yaml:"bucket"`
	Prefix   string `yaml:"prefix"`
	Region   string `yaml:"region"`
	// The keys come from CredentialsFile (mode 0600), or the environment
	// variables AccessKeyEnv and SecretKeyEnv (default AWS_ACCESS_KEY_ID
	// and AWS_SECRET_ACCESS_KEY): never from this file.
	CredentialsFile string `yaml:"credentials_file"`
	AccessKeyEnv    string `yaml:"access_key_env"`
	SecretKeyEnv    string `yaml:"secret_key_env"`
}

// S3 reports whether the repository is in object storage.
func (r BackupRepo) S3() bool { return r.Type == "s3" }

// AutoBackend as defaults.backend places each new volume on the backend
// with the most free space that fits it.
const AutoBackend = "auto"

type Defaults struct {
	Backend    string `yaml:"backend"`
	BackupRepo string `yaml:"backup_repo"`
}

// Error is one problem in one key of one file.
type Error struct {
	File    string
	Line    int // 0 when unknown (the built-in default, an environment variable)
	Key     string
	Problem string
}

func (e *Error) Error() string {
	where := e.File
	if e.Line > 0 {
		where = fmt.Sprintf("%s line %d", e.File, e.Line)
	}
	return fmt.Sprintf("config %s: %s: %s", where, e.Key, e.Problem)
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

// The length limits are checked apart from the patterns: a bounded
// repetition ({0,126}) compiles into that many copies, and every blk run
// paid for compiling them at start-up.
var (
	nameRE = boundedRE{63, regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)}
	// LVM's own rule for VG and LV names: see lvm(8), VALID NAMES.
	lvmNameRE = boundedRE{127, regexp.MustCompile(`^[a-zA-Z0-9+_.][a-zA-Z0-9+_.-]*$`)}
	// RFC 3720 3.2.6.3.1: iqn.YYYY-MM.reversed.domain[:anything].
	iqnRE      = regexp.MustCompile(`^iqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[a-z0-9.:_-]*)?$`)
	dnsLabelRE = boundedRE{63, regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$`)}
)

// boundedRE is a pattern for strings of at most max bytes.
type boundedRE struct {
	max int
	re  *regexp.Regexp
}

func (b boundedRE) MatchString(s string) bool { return len(s) <= b.max && b.re.MatchString(s) }

// maxIQN is RFC 3720's limit; a target's IQN is the prefix, ":" and a
// 36-byte volume UUID.
const maxIQN = 223

// CheckIQN checks an initiator or target name.
func CheckIQN(iqn string) error {
	if len(iqn) > maxIQN {
		return fmt.Errorf("%q is %d bytes: an IQN is at most %d", truncate(iqn, 40), len(iqn), maxIQN)
	}
	if !iqnRE.MatchString(iqn) {
		return fmt.Errorf("%q is not an IQN (iqn.YYYY-MM.reversed.domain[:name], month 01-12, lower case)", truncate(iqn, 80))
	}
	return nil
}

// checkLVMName refuses what LVM itself would refuse as a VG or LV name, and
// names that would make blk write outside /dev/VG ("..").
func checkLVMName(what, s string) error {
	switch {
	case s == "." || s == "..":
		return fmt.Errorf("%q is not a valid %s name", s, what)
	case strings.HasPrefix(s, "-"):
		return fmt.Errorf("%q: an LVM name cannot start with '-'", truncate(s, 40))
	case !lvmNameRE.MatchString(s):
		return fmt.Errorf("%q is not a valid %s name (1-127 of a-z A-Z 0-9 + _ . -)", truncate(s, 40), what)
	}
	if what == "LV" {
		for _, r := range []string{"snapshot", "pvmove"} {
			if strings.HasPrefix(s, r) {
				return fmt.Errorf("%q: LVM reserves LV names starting with %q", s, r)
			}
		}
		for _, r := range []string{"_cdata", "_cmeta", "_corig", "_mlog", "_mimage", "_pmspare", "_rimage", "_rmeta", "_tdata", "_tmeta", "_vorigin", "_vdata"} {
			if strings.Contains(s, r) {
				return fmt.Errorf("%q: LVM reserves LV names containing %q", s, r)
			}
		}
	}
	return nil
}

// checkHostName accepts an IP address or a DNS name: what goes to a dialer
// or into iscsiadm's portal, never a shell word.
func checkHostName(h string) error {
	if net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")) != nil {
		return nil
	}
	if len(h) > 253 {
		return fmt.Errorf("%q is not an IP address or DNS name", truncate(h, 40))
	}
	for _, l := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if !dnsLabelRE.MatchString(l) {
			return fmt.Errorf("%q is not an IP address or DNS name", truncate(h, 40))
		}
	}
	return nil
}

// Validate checks c and returns the first problem, in a stable order.
func (c *Config) Validate(file string) error {
	bad := func(key, format string, args ...any) error {
		return &Error{File: file, Line: c.lineOf(key), Key: key, Problem: fmt.Sprintf(format, args...)}
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
		if err := checkName("host", name); err != nil {
			return bad(key, "%v", err)
		}
		if h.Local && h.Address != "" {
			return bad(key, "a local host takes no address")
		}
		if !h.Local && h.Address == "" {
			return bad(key+".address", "missing (or set local: true)")
		}
		if !h.Local {
			addr := h.Address
			if hp, port, err := net.SplitHostPort(addr); err == nil {
				if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
					return bad(key+".address", "%q has no valid port", addr)
				}
				addr = hp
			}
			if err := checkHostName(addr); err != nil {
				return bad(key+".address", "%v", err)
			}
		}
		if h.Port < 0 || h.Port > 65535 {
			return bad(key+".port", "%d is not a TCP port", h.Port)
		}
	}
	for _, name := range sortedKeys(c.Backends) {
		b := c.Backends[name]
		key := "backends." + name
		if err := checkName("backend", name); err != nil {
			return bad(key, "%v", err)
		}
		if name == AutoBackend {
			return bad(key, "%q is reserved: defaults.backend: auto means placement by free space", name)
		}
		if r := b.MaxOverSubscriptionRatio; r != 0 && r < 1 {
			return bad(key+".max_over_subscription_ratio", "%g: must be 1 (no over-subscription) or more", r)
		}
		if p := b.MaxPoolUsagePercent; p < 0 || p > 100 {
			return bad(key+".max_pool_usage_percent", "%d: must be 1 to 100", p)
		}
		if _, ok := c.Hosts[b.Host]; !ok {
			if b.Host == "" {
				return bad(key+".host", "missing")
			}
			if _, ok := c.Hosts[strings.ToLower(b.Host)]; ok {
				return bad(key+".host", "host names are lower case: write %q", strings.ToLower(b.Host))
			}
			return bad(key+".host", "host %q is not defined under hosts", b.Host)
		}
		switch b.Type {
		case "lvm":
			if b.VG == "" {
				return bad(key+".vg", "missing: name the volume group")
			}
			if err := checkLVMName("volume group", b.VG); err != nil {
				return bad(key+".vg", "%v", err)
			}
			if b.ThinPool != "" {
				if err := checkLVMName("LV", b.ThinPool); err != nil {
					return bad(key+".thin_pool", "%v", err)
				}
			}
			if err := checkPortal(b.Portal); err != nil {
				return bad(key+".portal", "%v", err)
			}
			if b.IQNPrefix == "" {
				return bad(key+".iqn_prefix", "missing (e.g. iqn.2026-11.org.example.blk)")
			}
			if err := CheckIQN(b.IQNPrefix); err != nil {
				return bad(key+".iqn_prefix", "%v", err)
			}
			if n := len(b.IQNPrefix) + 1 + 36; n > maxIQN {
				return bad(key+".iqn_prefix", "too long: with \":<volume uuid>\" a target's IQN would be %d bytes, over the %d RFC 3720 allows", n, maxIQN)
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
			if _, ok := c.Hosts[strings.ToLower(h)]; ok {
				return bad(fmt.Sprintf("compute[%d]", i), "host names are lower case: write %q", strings.ToLower(h))
			}
			return bad(fmt.Sprintf("compute[%d]", i), "host %q is not defined under hosts", h)
		}
	}
	for _, name := range sortedKeys(c.BackupRepos) {
		r := c.BackupRepos[name]
		key := "backup_repos." + name
		switch r.Type {
		case "", "dir":
		case "s3":
			if err := checkS3Repo(r); err != nil {
				return bad(key+"."+err.key, "%s", err.problem)
			}
			continue
		default:
			return bad(key+".type", "unknown repository type %q (want dir, the default, or s3)", truncate(r.Type, 20))
		}
		for _, kv := range [][2]string{{"endpoint", r.Endpoint}, {"bucket", r.Bucket}, {"prefix", r.Prefix}, {"region", r.Region},
			{"credentials_file", r.CredentialsFile}, {"access_key_env", r.AccessKeyEnv}, {"secret_key_env", r.SecretKeyEnv}} {
			if kv[1] != "" {
				return bad(key+"."+kv[0], "only for type: s3 (this repository is a directory: host and path)")
			}
		}
		if _, ok := c.Hosts[r.Host]; !ok {
			return bad("backup_repos."+name+".host", "host %q is not defined under hosts", r.Host)
		}
		if !strings.HasPrefix(r.Path, "/") {
			return bad("backup_repos."+name+".path", "missing or not absolute")
		}
		// The repository owns the directory: prune empties its tmp/.
		if r.Path == "/" || path.Clean(r.Path) != r.Path {
			return bad("backup_repos."+name+".path", "%q: give a clean absolute path of a directory of its own (write %q)", r.Path, path.Clean(r.Path))
		}
	}
	if d := c.Defaults.Backend; d != "" && d != AutoBackend {
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

type keyError struct{ key, problem string }

var (
	// S3's rules for bucket names (dots allowed, as path-style requests
	// need no DNS for them).
	bucketRE = boundedRE{63, regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`)}
	regionRE = boundedRE{64, regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)}
	envRE    = boundedRE{128, regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)}
)

// checkS3Repo checks an s3 repository. Nothing it says echoes a value that
// may be a secret: an endpoint may carry user:password@, and a key pasted
// where an environment variable's name goes is a key.
func checkS3Repo(r BackupRepo) *keyError {
	bad := func(key, format string, args ...any) *keyError { return &keyError{key, fmt.Sprintf(format, args...)} }
	if r.Host != "" || r.Path != "" {
		return bad("type", "an s3 repository takes endpoint, bucket and prefix, not host and path")
	}
	if r.Endpoint == "" {
		return bad("endpoint", "missing: HOST[:PORT] or https://HOST[:PORT] (http:// for plain HTTP)")
	}
	hostport := r.Endpoint
	if scheme, rest, ok := strings.Cut(r.Endpoint, "://"); ok {
		u, err := url.Parse(r.Endpoint)
		switch {
		case err != nil || u.User != nil || strings.Contains(rest, "@"):
			return bad("endpoint", "not http(s)://HOST[:PORT] (credentials go in credentials_file or the environment, never here)")
		case scheme != "https" && scheme != "http":
			return bad("endpoint", "scheme %q: want https:// or http://", truncate(scheme, 10))
		case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
			return bad("endpoint", "not http(s)://HOST[:PORT]: give the bucket in bucket and a path in prefix")
		}
		hostport = u.Host
	} else if strings.ContainsAny(r.Endpoint, "/@?#") {
		return bad("endpoint", "not HOST[:PORT] or https://HOST[:PORT]")
	}
	host := hostport
	if h, port, err := net.SplitHostPort(hostport); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return bad("endpoint", "%q has no valid port", truncate(hostport, 60))
		}
		host = h
	}
	if err := checkHostName(host); err != nil || host == "" {
		return bad("endpoint", "%q is not an IP address or DNS name", truncate(host, 60))
	}
	if r.Bucket == "" {
		return bad("bucket", "missing: the bucket holding the repository (blk does not make it)")
	}
	if !bucketRE.MatchString(r.Bucket) || strings.Contains(r.Bucket, "..") {
		return bad("bucket", "%q is not an S3 bucket name (3-63 of a-z 0-9 . -, starting and ending with a letter or digit)", truncate(r.Bucket, 64))
	}
	if len(r.Bucket) < 3 {
		return bad("bucket", "%q is not an S3 bucket name (3-63 of a-z 0-9 . -, starting and ending with a letter or digit)", r.Bucket)
	}
	if p := r.Prefix; p != "" {
		// Keys are joined as paths: a prefix path.Clean would change
		// names other objects than the ones written.
		switch {
		case !utf8.ValidString(p) || strings.ContainsFunc(p, unicode.IsControl):
			return bad("prefix", "holds control characters or invalid UTF-8")
		case len(p) > 512:
			return bad("prefix", "%d bytes: at most 512 (an S3 key is at most 1024)", len(p))
		case strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == "..":
			return bad("prefix", "%q: give a clean relative path with no leading or trailing / (e.g. blk/backups)", truncate(p, 80))
		}
	}
	if r.Region != "" && !regionRE.MatchString(r.Region) {
		return bad("region", "%q is not a region name (e.g. us-east-1)", truncate(r.Region, 64))
	}
	if f := r.CredentialsFile; f != "" {
		if r.AccessKeyEnv != "" || r.SecretKeyEnv != "" {
			return bad("credentials_file", "give credentials_file or access_key_env and secret_key_env, not both")
		}
		if !strings.HasPrefix(f, "/") {
			return bad("credentials_file", "not absolute: give the full path of a mode 0600 file")
		}
	}
	if (r.AccessKeyEnv == "") != (r.SecretKeyEnv == "") {
		if r.AccessKeyEnv == "" {
			return bad("access_key_env", "missing: secret_key_env is given, so name both variables")
		}
		return bad("secret_key_env", "missing: access_key_env is given, so name both variables")
	}
	for _, kv := range [][2]string{{"access_key_env", r.AccessKeyEnv}, {"secret_key_env", r.SecretKeyEnv}} {
		if kv[1] != "" && !envRE.MatchString(kv[1]) {
			return bad(kv[0], "not an environment variable name (A-Z a-z 0-9 _): name the variable that holds the key, never the key itself")
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
		return fmt.Errorf("%q is not ADDRESS:PORT", truncate(p, 60))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return fmt.Errorf("%q has no valid port", truncate(p, 60))
	}
	if err := checkHostName(host); err != nil {
		return fmt.Errorf("%q: %w", truncate(p, 60), err)
	}
	return nil
}

func checkName(kind, name string) error {
	if nameRE.MatchString(name) {
		return nil
	}
	if l := strings.ToLower(name); l != name && nameRE.MatchString(l) {
		return fmt.Errorf("%s names are lower case: write %q here and wherever it is named", kind, l)
	}
	return fmt.Errorf("%s name %q: use 1-63 of a-z 0-9 . _ -, starting with a letter or digit", kind, truncate(name, 64))
}

// lineOf finds the line of key, or of its nearest parent that was written.
func (c *Config) lineOf(key string) int {
	for key != "" {
		if n := c.lines[key]; n > 0 {
			return n
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
