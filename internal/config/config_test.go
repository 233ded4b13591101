package config

import (
	"os"
	"strings"
	"testing"
)

const good = `state: /var/lib/blk/state.db
hosts:
  stor1:
    address: 192.0.2.10
    port: 22
backends:
  lvm-1:
    type: lvm
    host: stor1
    vg: blk
    thin_pool: pool
    portal: 192.0.2.10:3260
    iqn_prefix: iqn.2026-11.org.example.blk
defaults: {backend: lvm-1}
`

func load(body string) error {
	c, err := Parse("blk.yaml", []byte(body))
	if err != nil {
		return err
	}
	return c.Validate("blk.yaml")
}

func TestGoodConfig(t *testing.T) {
	if err := load(good); err != nil {
		t.Fatal(err)
	}
	for _, portal := range []string{"stor1.example.org:3260", `"[2001:db8::1]:3260"`, "10.0.0.1:3261"} {
		if err := load(strings.Replace(good, "192.0.2.10:3260", portal, 1)); err != nil {
			t.Errorf("portal %s: %v", portal, err)
		}
	}
}

func TestPlacementSettings(t *testing.T) {
	body := strings.Replace(good, "    vg: blk", "    vg: blk\n    max_over_subscription_ratio: 1.5\n    max_pool_usage_percent: 80", 1)
	body = strings.Replace(body, "{backend: lvm-1}", "{backend: auto}", 1)
	c, err := Parse("blk.yaml", []byte(body))
	if err == nil {
		err = c.Validate("blk.yaml")
	}
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Backends["lvm-1"]; b.OverSubscription() != 1.5 || b.PoolUsageLimit() != 80 {
		t.Errorf("got ratio %g, limit %d", b.OverSubscription(), b.PoolUsageLimit())
	}
	if b := (Backend{}); b.OverSubscription() != 20 || b.PoolUsageLimit() != 90 {
		t.Errorf("defaults: ratio %g, limit %d; want Cinder's 20 and 90", b.OverSubscription(), b.PoolUsageLimit())
	}
}

func TestInputThatMustBeRefused(t *testing.T) {
	for _, c := range []struct{ old, new, want string }{
		// Each names the file, the line and the key.
		{"vg: blk", "vg: ..", `blk.yaml line 10: backends.lvm-1.vg: ".." is not a valid volume group name`},
		{"vg: blk", "vg: .", `line 10: backends.lvm-1.vg: "." is not a valid`},
		{"vg: blk", "vg: -blk", `backends.lvm-1.vg: "-blk": an LVM name cannot start with '-'`},
		{"vg: blk", "vg: a/b", `backends.lvm-1.vg: "a/b" is not a valid volume group name`},
		{"thin_pool: pool", "thin_pool: snapshot1", `backends.lvm-1.thin_pool: "snapshot1": LVM reserves`},
		{"thin_pool: pool", "thin_pool: ..", `backends.lvm-1.thin_pool: ".." is not a valid LV name`},
		{"portal: 192.0.2.10:3260", `portal: "192.0.2.10 :3260"`, `line 12: backends.lvm-1.portal: "192.0.2.10 :3260": "192.0.2.10 " is not an IP address or DNS name`},
		{"portal: 192.0.2.10:3260", `portal: "192.0.2.10\n:3260"`, `backends.lvm-1.portal`},
		{"portal: 192.0.2.10:3260", `portal: "$(reboot):3260"`, `"$(reboot)" is not an IP address or DNS name`},
		{"portal: 192.0.2.10:3260", `portal: "192.0.2.10:+3260"`, `has no valid port`},
		{"iqn_prefix: iqn.2026-11.org.example.blk", "iqn_prefix: iqn.2026-99.org.example.blk", `line 13: backends.lvm-1.iqn_prefix: "iqn.2026-99.org.example.blk" is not an IQN`},
		{"iqn_prefix: iqn.2026-11.org.example.blk", "iqn_prefix: iqn.2026-00.org.example.blk", `is not an IQN`},
		{"iqn_prefix: iqn.2026-11.org.example.blk", "iqn_prefix: iqn.2026-11.org.example.blk:" + strings.Repeat("x", 220), `is 248 bytes: an IQN is at most 223`},
		{"iqn_prefix: iqn.2026-11.org.example.blk", "iqn_prefix: iqn.2026-11.org.example.blk:" + strings.Repeat("x", 170), `too long: with ":<volume uuid>"`},
		{"port: 22", "port: 22.7", `blk.yaml line 5: hosts.stor1.port: "22.7" is not a whole number`},
		{"port: 22", "port: '22'", `hosts.stor1.port: "22" is not a whole number`},
		{"port: 22", "port: 70000", `hosts.stor1.port: 70000 is not a TCP port`},
		{"address: 192.0.2.10", "address: 'stor 1'", `hosts.stor1.address: "stor 1" is not an IP address or DNS name`},
		{"  stor1:", "  Stor1:", `line 3: hosts.Stor1: host names are lower case: write "stor1" here and wherever it is named`},
		{"host: stor1", "host: Stor1", `line 9: backends.lvm-1.host: host names are lower case: write "stor1"`},
		{"defaults: {backend: lvm-1}", "compute: [Stor1]\ndefaults: {backend: lvm-1}", `line 14: compute[0]: host names are lower case: write "stor1"`},
		{"    vg: blk", "    vgg: blk", `line 10: backends.lvm-1.vgg: unknown key "vgg" (did you mean "vg"?)`},
		{"    address:", "    Address:", `unknown key "Address" (did you mean "address"?)`},
		{"defaults: {backend: lvm-1}", "defaults: {backend: lvm-1, bogus: 1}", `line 14: defaults.bogus: unknown key "bogus" (valid here: backend, backup_repo)`},
		{"state: /var/lib/blk/state.db", "state: [a]", `line 1: state: want a single value, not a list`},
		{"    type: lvm", "    type: lvm\n   bad", `blk.yaml: (file): line`},
		{"    vg: blk", "    vg: blk\n    max_over_subscription_ratio: 0.5", `backends.lvm-1.max_over_subscription_ratio: 0.5: must be 1 (no over-subscription) or more`},
		{"    vg: blk", "    vg: blk\n    max_over_subscription_ratio: lots", `line 11: backends.lvm-1.max_over_subscription_ratio: "lots" is not a number`},
		{"    vg: blk", "    vg: blk\n    max_pool_usage_percent: 101", `backends.lvm-1.max_pool_usage_percent: 101: must be 1 to 100`},
		{"  lvm-1:", "  auto:", `backends.auto: "auto" is reserved`},
		{"defaults: {backend: lvm-1}", "defaults: {backend: lvm-2}", `defaults.backend: backend "lvm-2" is not defined`},
		{"defaults: {backend: lvm-1}", "backup_repos: {r1: {host: stor1, path: /srv/b/..}}\ndefaults: {backend: lvm-1}", `backup_repos.r1.path: "/srv/b/..": give a clean absolute path`},
		{"defaults: {backend: lvm-1}", "backup_repos: {r1: {host: stor1, path: /}}\ndefaults: {backend: lvm-1}", `backup_repos.r1.path: "/": give a clean`},
	} {
		body := strings.Replace(good, c.old, c.new, 1)
		if body == good {
			t.Fatalf("%q not in the config", c.old)
		}
		err := load(body)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s -> %s:\n got %v\nwant %s", c.old, c.new, err, c.want)
		}
	}
}

func TestNearest(t *testing.T) {
	valid := []string{"address", "user", "port", "identity", "known_hosts", "local"}
	for typo, want := range map[string]string{"adress": "address", "knownhosts": "known_hosts", "prot": "port", "PORT": "port", "zzz": "", "users": "user"} {
		if got := Nearest(typo, valid); got != want {
			t.Errorf("Nearest(%q) = %q, want %q", typo, got, want)
		}
	}
}

// The README points newcomers to blk.example.yaml: it must stay a valid
// configuration, every key of it known.
func TestTheExampleConfigIsValid(t *testing.T) {
	const file = "../../blk.example.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(file, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(file); err != nil {
		t.Fatal(err)
	}
	if len(c.Backends) < 2 || c.Backends["nfs-1"].Type != "nfs" || c.Defaults.Backend != "lvm-1" {
		t.Errorf("example lost what it shows: %+v", c)
	}
}
