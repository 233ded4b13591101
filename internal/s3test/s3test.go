// Package s3test runs a real S3 server for tests: versitygw serving a
// temporary directory on a free port of 127.0.0.1.
//
// The binary is $BLK_VERSITYGW, else versitygw on PATH, else
// $(go env GOPATH)/bin/versitygw (go install
// github.com/versity/versitygw/cmd/versitygw@v1.8.0). Without one the test
// is skipped, unless BLK_REQUIRE_S3=1: then it fails.
package s3test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Server is a running versitygw.
type Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	Addr      string // 127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Dir       string // the directory it serves: a bucket is a directory in it
}

// Binary finds versitygw, or returns "".
func Binary() string {
	if p := os.Getenv("BLK_VERSITYGW"); p != "" {
		return p
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	gopath := ""
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		gopath = strings.TrimSpace(string(out))
	}
	if gopath == "" {
		if h, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(h, "go")
		}
	}
	p := filepath.Join(gopath, "bin", "versitygw")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// Start runs versitygw until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "no versitygw (set BLK_VERSITYGW, or go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)"
		if os.Getenv("BLK_REQUIRE_S3") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	s := &Server{AccessKey: "blktestaccess", SecretKey: "blk-test-SECRET-4e5f6a7b8c9d", Dir: t.TempDir()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	l.Close()
	s.Endpoint = "http://" + s.Addr
	cmd := exec.Command(bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--port", s.Addr, "--quiet", "posix", s.Dir)
	log, err := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		log.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case xerr := <-exited:
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("versitygw exited: %v\n%s", xerr, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw does not listen on %s: %v", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// Client is a minio client with the server's root keys.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(s.Addr, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Bucket makes a bucket and returns its name.
func (s *Server) Bucket(t testing.TB, name string) string {
	t.Helper()
	if err := s.Client(t).MakeBucket(context.Background(), name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
	return name
}

// Keys lists the keys under prefix, recursively.
func (s *Server) Keys(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	var out []string
	for o := range s.Client(t).ListObjectsIter(context.Background(), bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatal(fmt.Errorf("list %s/%s: %w", bucket, prefix, o.Err))
		}
		out = append(out, o.Key)
	}
	return out
}
