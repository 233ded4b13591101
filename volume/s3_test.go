package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blk-project/blk/backup"
	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/s3test"
)

// s3Service is backupService with its repository in a bucket of a real
// versitygw; the keys come from named environment variables.
func s3Service(t *testing.T, data []byte) (*Service, *fakeLVM, *s3test.Server) {
	t.Helper()
	srv := s3test.Start(t)
	srv.Bucket(t, "blk")
	s, fl, _ := backupService(t, true, false, data)
	t.Setenv("BLK_TEST_S3_AK", srv.AccessKey)
	t.Setenv("BLK_TEST_S3_SK", srv.SecretKey)
	s.Config.BackupRepos = map[string]config.BackupRepo{"r1": {Type: "s3", Endpoint: srv.Endpoint, Bucket: "blk",
		Prefix: "site 1/blk", AccessKeyEnv: "BLK_TEST_S3_AK", SecretKeyEnv: "BLK_TEST_S3_SK"}}
	return s, fl, srv
}

// Backup, list, restore, verify (--read-data), prune and delete, through
// the service, against a real S3 server.
func TestS3BackupListRestoreVerifyPrune(t *testing.T) {
	data := randomData(bkVol)
	clear(data[4<<20 : 8<<20]) // a zero chunk
	s, fl, srv := s3Service(t, data)
	ctx := context.Background()
	b1, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1", Name: "first"})
	if err != nil {
		t.Fatal(err)
	}
	if b1.Repo != "r1" || b1.ChunkCount != 3 || b1.StoredBytes == 0 {
		t.Errorf("backup %+v", b1)
	}
	// Change one chunk: the incremental backup stores that one alone.
	f, _ := os.OpenFile(fl.file("volume-"+volUUID), os.O_RDWR, 0)
	f.WriteAt([]byte("changed"), 9<<20)
	f.Close()
	want2, _ := os.ReadFile(fl.file("volume-" + volUUID))
	b2, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1", Name: "second"})
	if err != nil {
		t.Fatal(err)
	}
	if !b2.Incremental || b2.Parent != b1.UUID || b2.StoredBytes == 0 || b2.StoredBytes > b1.StoredBytes/2 {
		t.Errorf("second backup %+v", b2)
	}
	bs, err := s.Backups(ctx, "", "db1")
	if err != nil || len(bs) != 2 || bs[0].Name != "first" || bs[1].Name != "second" {
		t.Fatalf("list: %v %+v", err, bs)
	}
	if got, gerr := s.ShowBackup(ctx, "r1", "second"); gerr != nil || got.UUID != b2.UUID {
		t.Errorf("show: %v", gerr)
	}
	// Into a new volume, and over the volume itself.
	s.testHookUUID = cloneUUID
	if _, err = s.RestoreBackup(ctx, RestoreOptions{Backup: "first", New: "db2", Thin: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(fl.file("volume-" + cloneUUID)); string(got) != string(data) {
		t.Error("restored --new differs from the first backup")
	}
	if _, err = s.RestoreBackup(ctx, RestoreOptions{Backup: b2.UUID, To: "db1"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(fl.file("volume-" + volUUID)); string(got) != string(want2) {
		t.Error("restored --to differs from the second backup")
	}
	for _, readData := range []bool{false, true} {
		if _, err = s.VerifyBackup(ctx, "r1", "first", readData); err != nil {
			t.Errorf("verify (read data %v): %v", readData, err)
		}
	}
	// Three chunks of the first backup, the one changed in the second.
	if chunks := srv.Keys(t, "blk", "site 1/blk/chunks/"); len(chunks) != 4 {
		t.Fatalf("%d chunks in the bucket: %v", len(chunks), chunks)
	}
	res, err := s.PruneBackups(ctx, "r1", "db1", backup.Policy{Last: 1})
	if err != nil || len(res.Remove) != 1 || res.Remove[0].Name != "first" || res.FreedChunks != 1 {
		t.Fatalf("prune: %v %+v", err, res)
	}
	if _, err := s.VerifyBackup(ctx, "r1", "second", true); err != nil {
		t.Errorf("verify after prune: %v", err)
	}
	if _, _, err := s.DeleteBackups(ctx, "r1", []string{"second"}); err != nil {
		t.Fatal(err)
	}
	if left := srv.Keys(t, "blk", "site 1/blk/"); len(left) != 1 || left[0] != "site 1/blk/config" {
		t.Errorf("after deleting every backup: %v", left)
	}
}

// The failures of an S3 repository are the operator's to fix, and say
// what: no keys (exit 2), keys in a file others may read (exit 2), a
// missing bucket (exit 4), and no secret in any of them.
func TestS3RepositoryRefusals(t *testing.T) {
	s, _, srv := s3Service(t, randomData(bkVol))
	ctx := context.Background()
	rc := s.Config.BackupRepos["r1"]
	set := func(f func(*config.BackupRepo)) {
		r := rc
		f(&r)
		s.Config.BackupRepos["r1"] = r
	}
	set(func(r *config.BackupRepo) { r.AccessKeyEnv, r.SecretKeyEnv = "BLK_TEST_UNSET_AK", "BLK_TEST_UNSET_SK" })
	if _, err := s.Backups(ctx, "", ""); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "set BLK_TEST_UNSET_AK and BLK_TEST_UNSET_SK") {
		t.Errorf("no keys: %v", err)
	}
	file := filepath.Join(t.TempDir(), "s3.cred")
	os.WriteFile(file, []byte("[default]\naws_access_key_id = "+srv.AccessKey+"\naws_secret_access_key = "+srv.SecretKey+"\n"), 0o644)
	set(func(r *config.BackupRepo) { r.AccessKeyEnv, r.SecretKeyEnv, r.CredentialsFile = "", "", file })
	if _, err := s.Backups(ctx, "", ""); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "is mode 0644") || strings.Contains(err.Error(), srv.SecretKey) {
		t.Errorf("a credentials file others may read: %v", err)
	}
	os.Chmod(file, 0o600)
	if _, err := s.CreateBackup(ctx, BackupOptions{Volume: "db1"}); err != nil {
		t.Errorf("with the file at 0600: %v", err)
	}
	set(func(r *config.BackupRepo) { r.CredentialsFile, r.Bucket = file, "no-such-bucket" })
	if _, err := s.Backups(ctx, "", ""); !errors.Is(err, ErrNotFound) || !errors.Is(err, backup.ErrBucketMissing) || !strings.Contains(err.Error(), `backup repository "r1": s3 list s3://no-such-bucket/`) {
		t.Errorf("missing bucket: %v", err)
	}
	os.WriteFile(file, []byte("[default]\naws_access_key_id = "+srv.AccessKey+"\naws_secret_access_key = not-"+srv.SecretKey+"\n"), 0o600)
	set(func(r *config.BackupRepo) { r.CredentialsFile = file })
	if _, err := s.Backups(ctx, "", ""); !errors.Is(err, backup.ErrAccessDenied) || strings.Contains(err.Error(), srv.SecretKey) {
		t.Errorf("wrong secret: %v", err)
	}
}
