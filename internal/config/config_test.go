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

func TestS3BackupRepos(t *testing.T) {
	const s3 = "backup_repos:\n  off:\n    type: s3\n    endpoint: s3.example.org\n    bucket: blk-backups\n    prefix: site1/blk\n" +
		"    region: eu-west-1\n    credentials_file: /etc/blk/s3.cred\ndefaults: {backend: lvm-1, backup_repo: off}"
	body := strings.Replace(good, "defaults: {backend: lvm-1}", s3, 1)
	c, err := Parse("blk.yaml", []byte(body))
	if err == nil {
		err = c.Validate("blk.yaml")
	}
	if err != nil {
		t.Fatal(err)
	}
	if r := c.BackupRepos["off"]; !r.S3() || r.Bucket != "blk-backups" || r.Prefix != "site1/blk" {
		t.Errorf("repo %+v", r)
	}
	for _, ok := range []struct{ old, new string }{
		{"endpoint: s3.example.org", "endpoint: http://127.0.0.1:7070"},
		{"endpoint: s3.example.org", "endpoint: https://s3.example.org:9000/"},
		{"endpoint: s3.example.org", `endpoint: "[2001:db8::1]:9000"`},
		{"prefix: site1/blk", `prefix: "odd keys/ä+%20&=~"`},
		{"    prefix: site1/blk\n", ""},
		{"    region: eu-west-1\n", ""},
		{"    credentials_file: /etc/blk/s3.cred\n", ""},
		{"credentials_file: /etc/blk/s3.cred", "access_key_env: SITE1_AK\n    secret_key_env: SITE1_SK"},
		{"bucket: blk-backups", "bucket: blk.backups.2026"},
	} {
		if err := load(strings.Replace(body, ok.old, ok.new, 1)); err != nil {
			t.Errorf("%s: %v", ok.new, err)
		}
	}
	const secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"
	for _, c := range []struct{ old, new, want string }{
		{"type: s3", "type: gcs", `line 16: backup_repos.off.type: unknown repository type "gcs" (want dir, the default, or s3)`},
		{"type: s3", "type: s3\n    host: stor1", `backup_repos.off.type: an s3 repository takes endpoint, bucket and prefix, not host and path`},
		{"    endpoint: s3.example.org\n", "", `backup_repos.off.endpoint: missing`},
		{"endpoint: s3.example.org", "endpoint: ftp://s3.example.org", `line 17: backup_repos.off.endpoint: scheme "ftp": want https:// or http://`},
		{"endpoint: s3.example.org", "endpoint: https://AK:" + secret + "@s3.example.org", `backup_repos.off.endpoint: not http(s)://HOST[:PORT] (credentials go in credentials_file or the environment, never here)`},
		{"endpoint: s3.example.org", "endpoint: https://s3.example.org/blk-backups", `backup_repos.off.endpoint: not http(s)://HOST[:PORT]: give the bucket in bucket`},
		{"endpoint: s3.example.org", "endpoint: s3.example.org/x", `backup_repos.off.endpoint: not HOST[:PORT]`},
		{"endpoint: s3.example.org", "endpoint: s3.example.org:99999", `backup_repos.off.endpoint: "s3.example.org:99999" has no valid port`},
		{"endpoint: s3.example.org", "endpoint: 's3 example'", `backup_repos.off.endpoint: "s3 example" is not an IP address or DNS name`},
		{"    bucket: blk-backups\n", "", `line 15: backup_repos.off.bucket: missing`},
		{"bucket: blk-backups", "bucket: Blk_Backups", `backup_repos.off.bucket: "Blk_Backups" is not an S3 bucket name`},
		{"bucket: blk-backups", "bucket: ab", `backup_repos.off.bucket: "ab" is not an S3 bucket name`},
		{"prefix: site1/blk", "prefix: /site1/blk", `backup_repos.off.prefix: "/site1/blk": give a clean relative path`},
		{"prefix: site1/blk", "prefix: site1/blk/", `backup_repos.off.prefix: "site1/blk/": give a clean relative path`},
		{"prefix: site1/blk", "prefix: site1/../blk", `backup_repos.off.prefix: "site1/../blk": give a clean`},
		{"prefix: site1/blk", "prefix: site1//blk", `give a clean relative path`},
		{"prefix: site1/blk", "prefix: ..", `give a clean relative path`},
		{"prefix: site1/blk", `prefix: "a\tb"`, `backup_repos.off.prefix: holds control characters`},
		{"region: eu-west-1", "region: 'eu west'", `backup_repos.off.region: "eu west" is not a region name`},
		{"credentials_file: /etc/blk/s3.cred", "credentials_file: s3.cred", `backup_repos.off.credentials_file: not absolute`},
		{"credentials_file: /etc/blk/s3.cred", "credentials_file: /etc/blk/s3.cred\n    access_key_env: AK", `backup_repos.off.credentials_file: give credentials_file or access_key_env and secret_key_env, not both`},
		{"credentials_file: /etc/blk/s3.cred", "access_key_env: AK", `backup_repos.off.secret_key_env: missing`},
		{"credentials_file: /etc/blk/s3.cred", "secret_key_env: SK", `backup_repos.off.access_key_env: missing`},
		{"credentials_file: /etc/blk/s3.cred", "access_key_env: AK\n    secret_key_env: " + secret[:20] + "/" + secret[20:], `backup_repos.off.secret_key_env: not an environment variable name (A-Z a-z 0-9 _): name the variable that holds the key, never the key itself`},
		{"credentials_file: /etc/blk/s3.cred", "secret_key: " + secret, `line 21: backup_repos.off.secret_key: unknown key "secret_key"`},
		{"type: s3", "type: dir\n    host: stor1\n    path: /srv/b", `backup_repos.off.endpoint: only for type: s3`},
	} {
		b := strings.Replace(body, c.old, c.new, 1)
		if b == body {
			t.Fatalf("%q not in the config", c.old)
		}
		err := load(b)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s -> %s:\n got %v\nwant %s", c.old, c.new, err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[:20])) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
	// The default type is a directory: host and path, as before.
	if err := load(strings.Replace(good, "defaults: {backend: lvm-1}", "backup_repos: {r1: {type: dir, host: stor1, path: /srv/b}}\ndefaults: {backend: lvm-1}", 1)); err != nil {
		t.Error(err)
	}
}
