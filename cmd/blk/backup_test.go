package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blk-project/blk/backup"
)

// repoConfig is a config with one local repository holding two backups of
// db1, and no state file.
func repoConfig(t *testing.T) (dir string, r *backup.Repo) {
	t.Helper()
	dir = writeConfig(t, `
state: STATE
hosts: {local: {local: true}}
backends: {lvm-1: {type: lvm, host: local, vg: blk, portal: "127.0.0.1:3260", iqn_prefix: iqn.2026-11.org.example.blk}}
backup_repos: {here: {host: local, path: REPO}}
`)
	path := filepath.Join(dir, "repo")
	b, _ := os.ReadFile(filepath.Join(dir, "blk.yaml"))
	os.WriteFile(filepath.Join(dir, "blk.yaml"), bytes.Replace(b, []byte("REPO"), []byte(path), 1), 0o600)
	r, err := backup.Init(backup.OS{}, path)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("blk!"), 3<<20)
	for _, name := range []string{"db1-a", "db1-b"} {
		if _, err := r.Backup(context.Background(), bytes.NewReader(data), int64(len(data)),
			backup.Options{Name: name, Volume: "db1", VolumeUUID: "11111111-2222-4333-8444-555555555555"}); err != nil {
			t.Fatal(err)
		}
	}
	return dir, r
}

// The repository alone lists its backups: no state file is read or made.
func TestBackupListFromTheRepositoryAlone(t *testing.T) {
	dir, _ := repoConfig(t)
	res := blk(t, dir, nil, "backup", "list", "db1", "-o", "json")
	var bs []map[string]any
	if err := json.Unmarshal([]byte(res.out), &bs); res.code != 0 || err != nil || len(bs) != 2 {
		t.Fatalf("code %d, %d backups (%v): %s %s", res.code, len(bs), err, res.out, res.errOut)
	}
	for _, k := range []string{"uuid", "name", "volume", "repo", "status", "size_bytes", "read_bytes", "stored_bytes",
		"chunk_count", "parent", "incremental", "consistency", "created_at"} {
		if _, ok := bs[0][k]; !ok {
			t.Errorf("backup JSON lacks %q", k)
		}
	}
	if bs[0]["name"] != "db1-a" || bs[1]["stored_bytes"].(float64) != 0 || bs[0]["repo"] != "here" {
		t.Errorf("backups: %v", bs)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db")); err == nil {
		t.Error("backup list made a state file")
	}
	if res = blk(t, dir, nil, "backup", "show", "db1-b"); res.code != 0 || !strings.Contains(res.out, "db1-b") {
		t.Errorf("show: %d %s %s", res.code, res.out, res.errOut)
	}
	if res = blk(t, dir, nil, "backup", "show", "nope"); res.code != ExitNotFound {
		t.Errorf("show of a missing backup: code %d", res.code)
	}
}

func TestBackupPruneAndItsRefusals(t *testing.T) {
	dir, r := repoConfig(t)
	if res := blk(t, dir, nil, "backup", "prune"); res.code != ExitUsage {
		t.Errorf("prune without a rule: code %d %s", res.code, res.errOut)
	}
	l, err := r.Lock(backup.Shared, "backup")
	if err != nil {
		t.Fatal(err)
	}
	if res := blk(t, dir, nil, "backup", "prune", "--keep-last", "1"); res.code != ExitConflict || !strings.Contains(res.errOut, "still running") {
		t.Errorf("prune during a backup: code %d %s", res.code, res.errOut)
	}
	l.Unlock()
	if res := blk(t, dir, nil, "backup", "prune", "--keep-last", "1", "--dry-run"); res.code != 0 || !strings.Contains(res.out, "would remove") {
		t.Errorf("prune --dry-run: %d %s %s", res.code, res.out, res.errOut)
	}
	if ms, _, _ := r.List(); len(ms) != 2 {
		t.Fatalf("a dry run removed backups: %d left", len(ms))
	}
	if res := blk(t, dir, nil, "backup", "prune", "db1", "--keep-last", "1"); res.code != 0 {
		t.Errorf("prune: %d %s", res.code, res.errOut)
	}
	if ms, _, _ := r.List(); len(ms) != 1 || ms[0].Name != "db1-b" {
		t.Errorf("after prune --keep-last 1: %d backups", len(ms))
	}
	if res := blk(t, dir, nil, "backup", "verify", "db1-b", "--read-data"); res.code != 0 {
		t.Errorf("verify after prune: %d %s", res.code, res.errOut)
	}
	if res := blk(t, dir, nil, "backup", "delete", "db1-b"); res.code != ExitUsage {
		t.Errorf("delete without --yes off a terminal: code %d", res.code)
	}
	if res := blk(t, dir, nil, "backup", "delete", "db1-b", "--yes"); res.code != 0 {
		t.Errorf("delete: %d %s", res.code, res.errOut)
	}
	if ms, _, _ := r.List(); len(ms) != 0 {
		t.Errorf("after delete: %d backups", len(ms))
	}
}

// A backup named twice (by name and by uuid) is deleted once, and its
// chunks with it: not half-deleted with an error.
func TestBackupDeleteOfOneBackupNamedTwice(t *testing.T) {
	dir, r := repoConfig(t)
	m, err := r.Find("db1-a")
	if err != nil {
		t.Fatal(err)
	}
	res := blk(t, dir, nil, "backup", "delete", "db1-a", m.UUID, "db1-a", "--yes", "-o", "json")
	if res.code != 0 {
		t.Fatalf("delete: code %d %s", res.code, res.errOut)
	}
	if ms, _, _ := r.List(); len(ms) != 1 || ms[0].Name != "db1-b" {
		t.Errorf("after delete: %d backups", len(ms))
	}
}

// A backup_repos path naming a directory in use is bad configuration
// (exit 2): no repository is made there.
func TestBackupIntoADirectoryInUseIsRefused(t *testing.T) {
	dir := writeConfig(t, `
state: STATE
hosts: {local: {local: true}}
backends: {nfs-1: {type: nfs, host: local, path: SRV, export: "127.0.0.1:SRV"}}
backup_repos: {here: {host: local, path: SRV}}
`)
	srv := filepath.Join(dir, "srv")
	os.MkdirAll(srv, 0o700)
	b, _ := os.ReadFile(filepath.Join(dir, "blk.yaml"))
	os.WriteFile(filepath.Join(dir, "blk.yaml"), bytes.ReplaceAll(b, []byte("SRV"), []byte(srv)), 0o600)
	if res := blk(t, dir, nil, "volume", "create", "db1", "--size", "4MiB"); res.code != 0 {
		t.Fatalf("create: %d %s", res.code, res.errOut)
	}
	res := blk(t, dir, nil, "backup", "create", "db1")
	if res.code != ExitUsage || !strings.Contains(res.errOut, "empty or missing directory") {
		t.Errorf("backup into the volumes' directory: code %d %s", res.code, res.errOut)
	}
	if _, err := os.Stat(filepath.Join(srv, "config")); err == nil {
		t.Error("a repository was made among the volumes")
	}
	if res := blk(t, dir, nil, "volume", "show", "db1", "-o", "json"); !strings.Contains(res.out, `"status":"available"`) {
		t.Errorf("volume after the refused backup: %s", res.out)
	}
}
