package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/blk-project/blk/internal/owner"
	"github.com/blk-project/blk/internal/s3test"
)

// oddPrefix has what a key may hold and a URL or a path mangles: a space,
// +, %, &, ?, #, =, ~, a quote and non-ASCII letters.
const oddPrefix = "blk backups/ä+%20&?#=~'x"

func s3Repo(t *testing.T, srv *s3test.Server, bucket, secret string) (*S3, error) {
	t.Helper()
	return NewS3(context.Background(), S3Config{Endpoint: srv.Endpoint, Bucket: bucket, AccessKey: srv.AccessKey, SecretKey: secret})
}

// Backup, list, restore, verify, prune and delete on a real S3 server,
// under a prefix of odd characters: what a directory repository does.
func TestS3RepositoryEndToEnd(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "blk-e2e")
	s, err := s3Repo(t, srv, bucket, srv.SecretKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(s, oddPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.String(); got != "s3://blk-e2e/"+oddPrefix {
		t.Errorf("repository named %q", got)
	}
	l, err := r.Lock(Shared, "backup")
	if err != nil {
		t.Fatal(err)
	}
	d1 := volumeData(1, 2)
	m1 := backup(t, r, d1, Options{Name: "one", Volume: "db1", VolumeUUID: "v1"})
	d2 := append([]byte(nil), d1...)
	copy(d2[ChunkSize:], bytes.Repeat([]byte("changed"), 1000))
	m2 := backup(t, r, d2, Options{Name: "two", Volume: "db1", VolumeUUID: "v1", Parent: m1})
	if m2.StoredBytes == 0 || m2.StoredBytes >= m1.StoredBytes {
		t.Errorf("second backup stored %d bytes, first %d: want only the changed chunk", m2.StoredBytes, m1.StoredBytes)
	}
	l.Unlock()
	// Nothing went through tmp/, and every key is under the prefix.
	keys := srv.Keys(t, bucket, "")
	for _, k := range keys {
		if !strings.HasPrefix(k, oddPrefix+"/") || strings.Contains(k, "/tmp/") || strings.Contains(k, "/locks/") {
			t.Errorf("unexpected key %q", k)
		}
	}
	// A fresh open reads it all back.
	r, err = Open(s, oddPrefix)
	if err != nil {
		t.Fatal(err)
	}
	ms, bad, err := r.List()
	if err != nil || len(bad) != 0 || len(ms) != 2 || ms[0].Name != "one" || ms[1].Name != "two" {
		t.Fatalf("list: %v %v %d", err, bad, len(ms))
	}
	if got := restore(t, r, ms[0]); !bytes.Equal(got, d1) {
		t.Error("restore of the first backup differs")
	}
	if got := restore(t, r, ms[1]); !bytes.Equal(got, d2) {
		t.Error("restore of the second backup differs")
	}
	for _, m := range ms {
		if err = r.Verify(context.Background(), m, false); err != nil {
			t.Error(err)
		}
		if err = r.Verify(context.Background(), m, true); err != nil {
			t.Error(err)
		}
	}
	// A damaged chunk is found by --read-data, a missing one by both.
	c := srv.Client(t)
	h := m1.Chunks[0]
	key := oddPrefix + "/" + chunkName(h)
	if _, err = c.PutObject(context.Background(), bucket, key, bytes.NewReader([]byte("junk")), 4, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err = r.Verify(context.Background(), m1, true); !errors.Is(err, ErrCorrupt) {
		t.Errorf("verify --read-data of a damaged chunk: %v", err)
	}
	if err = c.RemoveObject(context.Background(), bucket, key, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err = r.Verify(context.Background(), m1, false); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("verify of a missing chunk: %v", err)
	}
	// The next full backup stores it again.
	backup(t, r, d1, Options{Name: "three", Volume: "db1", VolumeUUID: "v1"})
	if err = r.Verify(context.Background(), m1, true); err != nil {
		t.Errorf("after the chunk was stored again: %v", err)
	}
	// Prune keeps the last one and collects the chunks only the others used.
	x, err := r.Lock(Exclusive, "prune")
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Prune(Policy{Last: 1}, "", false)
	if err != nil || len(res.Keep) != 1 || res.Keep[0].Name != "three" || len(res.Remove) != 2 || res.GC.Chunks != 1 {
		t.Fatalf("prune: %v %+v", err, res)
	}
	x.Unlock()
	ms, _, _ = r.List()
	if len(ms) != 1 || !bytes.Equal(restore(t, r, ms[0]), d1) {
		t.Fatalf("after prune: %d backups", len(ms))
	}
	if err := r.Delete(ms[0].UUID); err != nil {
		t.Fatal(err)
	}
	if res, err := r.GC(false); err != nil || res.Chunks != 5 {
		t.Errorf("gc after the last delete: %v %+v", err, res)
	}
	if keys := srv.Keys(t, bucket, oddPrefix+"/chunks/"); len(keys) != 0 {
		t.Errorf("chunks left: %v", keys)
	}
}

// The format is the same: a directory repository copied into a bucket
// reads, and so does one copied back out.
func TestS3ReadsADirectoryRepositoryCopiedIntoIt(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "blk-copy")
	dir := newRepo(t)
	data := volumeData(3, 1)
	m := backup(t, dir, data, Options{Name: "copied", Volume: "db1", VolumeUUID: "v1"})
	c := srv.Client(t)
	err := filepath.WalkDir(dir.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir.root, p)
		_, err = c.FPutObject(context.Background(), bucket, "copy/"+filepath.ToSlash(rel), p, minio.PutObjectOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := s3Repo(t, srv, bucket, srv.SecretKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(s, "copy")
	if err != nil {
		t.Fatal(err)
	}
	if r.ID() != dir.ID() {
		t.Errorf("id %s, want %s", r.ID(), dir.ID())
	}
	got, err := r.Find("copied")
	if err != nil || got.UUID != m.UUID {
		t.Fatalf("find: %v", err)
	}
	if !bytes.Equal(restore(t, r, got), data) {
		t.Error("restore from the copy differs")
	}
	if err = r.Verify(context.Background(), got, true); err != nil {
		t.Error(err)
	}
	// And back: what S3 wrote, a directory repository reads.
	m2 := backup(t, r, volumeData(4), Options{Name: "from-s3", Volume: "db2", VolumeUUID: "v2"})
	out := filepath.Join(t.TempDir(), "repo")
	for _, k := range srv.Keys(t, bucket, "copy/") {
		if err = c.FGetObject(context.Background(), bucket, k, filepath.Join(out, strings.TrimPrefix(k, "copy/")), minio.GetObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	back, err := Open(OS{}, out)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := back.Find("from-s3"); err != nil || !bytes.Equal(restore(t, back, got), volumeData(4)) || got.UUID != m2.UUID {
		t.Errorf("the S3 backup copied to a directory: %v", err)
	}
}

// Locks on S3 behave as in a directory: shared ones coexist, an exclusive
// one excludes, a dead owner's lock (a killed backup) is taken over, and
// of two racing processes at most one wins.
func TestS3Locks(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "blk-locks")
	s, err := s3Repo(t, srv, bucket, srv.SecretKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(s, "locks-test")
	if err != nil {
		t.Fatal(err)
	}
	checkSharedAndExclusive(t, r)

	put := func(kind LockKind, own string) string {
		name := "locks-test/locks/" + string(kind) + "-test.json"
		data, _ := json.Marshal(lockFile{Owner: own, Op: "backup", CreatedAt: time.Now().UTC().Format(time.RFC3339)})
		if err = s.Put(name, data); err != nil {
			t.Fatal(err)
		}
		return name
	}
	c := osexec.Command("true")
	if err = c.Run(); err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("%s:%s:%s:%d:1", owner.Hostname(), owner.BootID(), owner.PidNS(), c.Process.Pid)
	stale := put(Exclusive, dead)
	if l, lerr := r.Lock(Exclusive, "prune"); lerr != nil {
		t.Fatalf("over a killed run's lock: %v", lerr)
	} else {
		l.Unlock()
	}
	if _, err = s.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the stale lock is still there: %v", err)
	}
	other := put(Shared, "otherhost:"+owner.BootID()+":1:1:1")
	_, err = r.Lock(Exclusive, "prune")
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "remove s3://blk-locks/locks-test/locks/shared-test.json") {
		t.Errorf("exclusive over another host's lock: %v", err)
	}
	s.Remove(other)

	// Racing exclusive locks: never two holders at once.
	var mu sync.Mutex
	held := 0
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, lerr := r.Lock(Exclusive, "prune")
			if lerr != nil {
				return
			}
			mu.Lock()
			held++
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			if held > 1 {
				t.Error("two exclusive locks held at once")
			}
			held--
			mu.Unlock()
			l.Unlock()
		}()
	}
	wg.Wait()
	if keys := srv.Keys(t, bucket, "locks-test/locks/"); len(keys) != 0 {
		t.Errorf("locks left: %v", keys)
	}

	// Interrupted (its context cancelled), blk still releases its lock.
	ctx, cancel := context.WithCancel(context.Background())
	si, err := NewS3(ctx, S3Config{Endpoint: srv.Endpoint, Bucket: bucket, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	ri, err := Open(si, "locks-test")
	if err != nil {
		t.Fatal(err)
	}
	li, err := ri.Lock(Shared, "backup")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	d := volumeData(6)
	if _, err := ri.Backup(ctx, bytes.NewReader(d), int64(len(d)), Options{}); err == nil {
		t.Error("a backup ran with its context cancelled")
	}
	if err := li.Unlock(); err != nil {
		t.Errorf("unlock after an interrupt: %v", err)
	}
	if keys := srv.Keys(t, bucket, "locks-test/locks/"); len(keys) != 0 {
		t.Errorf("an interrupted run left its lock: %v", keys)
	}
}

// Concurrent backups into one bucket (shared locks) both complete, and
// the chunks they share are stored once.
func TestS3ConcurrentBackups(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "blk-conc")
	s, err := s3Repo(t, srv, bucket, srv.SecretKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(s, "")
	if err != nil {
		t.Fatal(err)
	}
	data := volumeData(5)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := r.Lock(Shared, "backup")
			if err != nil {
				errs[i] = err
				return
			}
			defer l.Unlock()
			_, errs[i] = r.Backup(context.Background(), bytes.NewReader(data), int64(len(data)), Options{Volume: "db", VolumeUUID: "v"})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	ms, _, _ := r.List()
	if len(ms) != 4 {
		t.Fatalf("%d backups", len(ms))
	}
	for _, m := range ms {
		if err := r.Verify(context.Background(), m, true); err != nil {
			t.Error(err)
		}
	}
	if n := len(srv.Keys(t, bucket, "chunks/")); n != 6 {
		t.Errorf("%d chunk objects, want 6", n)
	}
}

// The failures an operator must tell apart have kinds, and come fast; no
// error text holds the secret.
func TestS3Errors(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "blk-errs")
	if _, err := s3Repo(t, srv, "no-such-bucket", srv.SecretKey); !errors.Is(err, ErrBucketMissing) || !strings.Contains(err.Error(), "create the bucket") {
		t.Errorf("missing bucket: %v", err)
	}
	wrong := "wrong-secret-9f8e7d6c5b4a"
	_, err := s3Repo(t, srv, bucket, wrong)
	if !errors.Is(err, ErrAccessDenied) || strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), srv.SecretKey) {
		t.Errorf("wrong secret: %v", err)
	}
	// A port nothing listens on: refused at once.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	start := time.Now()
	_, err = NewS3(context.Background(), S3Config{Endpoint: "http://" + closed, Bucket: bucket, AccessKey: "a", SecretKey: "b"})
	if !errors.Is(err, ErrUnreachable) || time.Since(start) > 5*time.Second {
		t.Errorf("closed port: %v after %s", err, time.Since(start))
	}
	// An address that drops packets: given up within the probe's timeout.
	if testing.Short() {
		return
	}
	start = time.Now()
	_, err = NewS3(context.Background(), S3Config{Endpoint: "http://192.0.2.1:9", Bucket: bucket, AccessKey: "a", SecretKey: "b"})
	if !errors.Is(err, ErrUnreachable) || time.Since(start) > probeTimeout+2*time.Second {
		t.Errorf("black hole: %v after %s", err, time.Since(start))
	}
	// HTTPS to a plain HTTP server fails, and is not retried for long.
	start = time.Now()
	_, err = NewS3(context.Background(), S3Config{Endpoint: srv.Addr, Bucket: bucket, AccessKey: "a", SecretKey: "b"})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("https to an http server: %v after %s", err, time.Since(start))
	}
	// CreateExcl is a conditional PUT: the second one fails.
	s, err := s3Repo(t, srv, bucket, srv.SecretKey)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []error{nil, fs.ErrExist} {
		f, _ := s.CreateExcl("excl")
		f.Write([]byte("x"))
		if err := f.Close(); !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("create %d: %v, want %v", i, err, want)
		}
	}
	if err := s.Rename("excl", "renamed"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat("excl"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("renamed from: %v", err)
	}
	if _, err := Open(s, "empty"); !errors.Is(err, ErrNotRepository) {
		t.Errorf("open where there is none: %v", err)
	}
	// Init refuses a prefix holding other objects, as a directory in use.
	if _, err := Init(s, ""); !errors.Is(err, ErrDirInUse) {
		t.Errorf("init over other objects: %v", err)
	}
}

func TestS3Endpoints(t *testing.T) {
	for e, want := range map[string]string{
		"s3.example.org":            "s3.example.org true",
		"s3.example.org:9000":       "s3.example.org:9000 true",
		"https://s3.example.org":    "s3.example.org true",
		"https://s3.example.org/":   "s3.example.org true",
		"http://127.0.0.1:7070":     "127.0.0.1:7070 false",
		"ftp://s3.example.org":      `error: s3 endpoint scheme "ftp": want https or http`,
		"https://k:s3cr3t@h.org":    "error: s3 endpoint is not http(s)://HOST[:PORT]",
		"https://s3.example.org/a":  "error: s3 endpoint is not http(s)://HOST[:PORT]",
		"https://s3.example.org?x":  "error: s3 endpoint is not http(s)://HOST[:PORT]",
		"http://[2001:db8::1]:7070": "[2001:db8::1]:7070 false",
	} {
		h, sec, err := ParseS3Endpoint(e)
		got := fmt.Sprintf("%s %v", h, sec)
		if err != nil {
			got = "error: " + err.Error()
		}
		if got != want {
			t.Errorf("%s: %s, want %s", e, got, want)
		}
	}
}

func TestS3Keys(t *testing.T) {
	env := map[string]string{"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SESSION_TOKEN": "TOK", "MY_AK": "ak2", "MY_SK": "sk2"}
	getenv := func(k string) string { return env[k] }
	if k, err := LoadS3Keys("", "", "", getenv); err != nil || k != (S3Keys{"AK", "SK", "TOK"}) {
		t.Errorf("default env: %+v %v", k, err)
	}
	if k, err := LoadS3Keys("", "MY_AK", "MY_SK", getenv); err != nil || k != (S3Keys{"ak2", "sk2", ""}) {
		t.Errorf("named env: %+v %v", k, err)
	}
	if _, err := LoadS3Keys("", "NOPE_AK", "MY_SK", getenv); err == nil || !strings.Contains(err.Error(), "set NOPE_AK and MY_SK") {
		t.Errorf("unset env: %v", err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "s3.cred")
	body := "# blk\n[other]\naws_access_key_id = wrong\n[default]\naws_access_key_id = fileAK\naws_secret_access_key = file/SK+x=\n"
	os.WriteFile(file, []byte(body), 0o644)
	os.Chmod(file, 0o644)
	_, err := LoadS3Keys(file, "", "", getenv)
	if err == nil || err.Error() != "credentials_file "+file+" is mode 0644: it holds a secret key, so blk reads it only when no one but its owner can (chmod 600 "+file+")" {
		t.Errorf("mode 0644: %v", err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
		os.Chmod(file, mode)
		if _, err := LoadS3Keys(file, "", "", getenv); err == nil || strings.Contains(err.Error(), "file/SK") {
			t.Errorf("mode %o: %v", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		os.Chmod(file, mode)
		if k, err := LoadS3Keys(file, "", "", getenv); err != nil || k != (S3Keys{"fileAK", "file/SK+x=", ""}) {
			t.Errorf("mode %o: %+v %v", mode, k, err)
		}
	}
	os.WriteFile(file, []byte("[default]\nfile/SK+x\n"), 0o600)
	if _, err := LoadS3Keys(file, "", "", getenv); err == nil || strings.Contains(err.Error(), "file/SK") || !strings.HasSuffix(err.Error(), "line 2: not KEY = VALUE") {
		t.Errorf("a bad line: %v", err)
	}
	if _, err := LoadS3Keys(filepath.Join(dir, "nope"), "", "", getenv); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
