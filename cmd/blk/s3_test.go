package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/s3test"
)

// The whole CLI against a real S3 server: an nfs volume on this machine
// backed up, listed, verified, restored and pruned with --verbose and
// --dry-run where they apply, and the secret key in no output.
func TestS3RepositoryFromTheCLIShowsNoSecret(t *testing.T) {
	srv := s3test.Start(t)
	srv.Bucket(t, "blk-cli")
	dir := writeConfig(t, `
state: STATE
hosts: {local: {local: true}}
backends: {nfs-1: {type: nfs, host: local, path: SRV, export: "127.0.0.1:SRV"}}
backup_repos: {off: {type: s3, endpoint: "ENDPOINT", bucket: blk-cli, prefix: cli, credentials_file: CRED}}
`)
	srvDir := filepath.Join(dir, "srv")
	os.MkdirAll(srvDir, 0o700)
	cred := filepath.Join(dir, "s3.cred")
	os.WriteFile(cred, []byte("[default]\naws_access_key_id = "+srv.AccessKey+"\naws_secret_access_key = "+srv.SecretKey+"\n"), 0o600)
	b, _ := os.ReadFile(filepath.Join(dir, "blk.yaml"))
	b = bytes.ReplaceAll(b, []byte("SRV"), []byte(srvDir))
	b = bytes.ReplaceAll(b, []byte("ENDPOINT"), []byte(srv.Endpoint))
	b = bytes.ReplaceAll(b, []byte("CRED"), []byte(cred))
	os.WriteFile(filepath.Join(dir, "blk.yaml"), b, 0o600)

	var all strings.Builder
	run := func(want int, args ...string) result {
		t.Helper()
		res := blk(t, dir, nil, args...)
		all.WriteString(res.out + res.errOut)
		if res.code != want {
			t.Fatalf("blk %s: code %d, want %d: %s %s", strings.Join(args, " "), res.code, want, res.out, res.errOut)
		}
		return res
	}
	run(0, "volume", "create", "db1", "--size", "12MiB")
	files, _ := filepath.Glob(filepath.Join(srvDir, "*"))
	if len(files) != 1 {
		t.Fatalf("volume files: %v", files)
	}
	data := bytes.Repeat([]byte("blk data "), 1<<20) // 9 MiB, the rest zeros
	f, _ := os.OpenFile(files[0], os.O_WRONLY, 0)
	f.Write(data)
	f.Close()
	want, _ := os.ReadFile(files[0])

	run(0, "-v", "backup", "create", "db1", "--name", "n1")
	res := run(0, "-v", "backup", "list", "-o", "json")
	var bs []map[string]any
	if err := json.Unmarshal([]byte(res.out), &bs); err != nil || len(bs) != 1 || bs[0]["repo"] != "off" {
		t.Fatalf("list: %v %s", err, res.out)
	}
	run(0, "-v", "backup", "verify", "n1", "--read-data")
	run(0, "-v", "backup", "restore", "n1", "--new", "db2")
	after, _ := filepath.Glob(filepath.Join(srvDir, "*"))
	if len(after) != 2 {
		t.Fatalf("volume files after restore: %v", after)
	}
	for _, p := range after {
		if p != files[0] {
			if got, _ := os.ReadFile(p); !bytes.Equal(got, want) {
				t.Error("the restored volume differs")
			}
		}
	}
	run(0, "backup", "create", "db1", "--name", "n2")
	run(0, "-v", "--dry-run", "backup", "prune", "--keep-last", "1")
	run(0, "-v", "backup", "prune", "--keep-last", "1")
	if res := run(0, "backup", "list", "-o", "json"); !strings.Contains(res.out, `"n2"`) || strings.Contains(res.out, `"n1"`) {
		t.Errorf("after prune: %s", res.out)
	}
	run(0, "config", "show")
	// A credentials file others may read is refused before any request.
	os.Chmod(cred, 0o640)
	if res := run(ExitUsage, "-v", "backup", "list"); !strings.Contains(res.errOut, "is mode 0640") {
		t.Errorf("mode 0640: %s", res.errOut)
	}
	// A wrong secret: access denied, and neither secret shown.
	os.WriteFile(cred, []byte("[default]\naws_access_key_id = "+srv.AccessKey+"\naws_secret_access_key = WRONG"+srv.SecretKey+"\n"), 0o600)
	os.Chmod(cred, 0o600)
	if res := run(1, "-v", "backup", "list"); !strings.Contains(res.errOut, "access denied") {
		t.Errorf("wrong secret: %s", res.errOut)
	}
	if strings.Contains(all.String(), srv.SecretKey) {
		t.Errorf("the secret key was printed:\n%s", all.String())
	}
}
