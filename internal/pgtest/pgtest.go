// Package pgtest runs a private PostgreSQL server for tests: Debian's
// postgresql package, initdb'd into a temporary directory and listening on
// a loopback port of its own, with password (SCRAM) authentication, the
// default max_connections and a natural-language collation, as a real
// deployment has. Each test gets a database of its own.
//
// Tests skip when the server binaries are missing, unless
// BLK_REQUIRE_POSTGRES=1 (CI sets it), which makes that a failure.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running PostgreSQL.
type Server struct {
	dir      string
	port     int
	password string
	cmd      *exec.Cmd
	exited   chan struct{}
	n        int
	mu       sync.Mutex
}

var (
	once     sync.Once
	shared   *Server
	startErr error
)

// binDir finds Debian's server binaries (/usr/lib/postgresql/<v>/bin).
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "postgres")); err == nil {
			return dirs[i], nil
		}
	}
	return "", errors.New("no PostgreSQL server (apt-get install postgresql)")
}

// Requested is BLK_TEST_STATE=postgres: tests that can keep their state in
// either store keep it in PostgreSQL (make test runs them both ways). It
// reads the variable while tests run, so go test's cache keys on it (a
// read at package init is not seen, and a cached SQLite run would pass
// for the PostgreSQL one).
func Requested() bool { return os.Getenv("BLK_TEST_STATE") == "postgres" }

// State names a new, empty state for t: a file in its temporary
// directory, or a database of the shared server when Requested.
func State(t testing.TB) string {
	t.Helper()
	if Requested() {
		return URL(t)
	}
	return filepath.Join(t.TempDir(), "state.db")
}

// URL starts the shared server if it is not running and returns the URL of
// a new, empty database for t, password included.
func URL(t testing.TB) string {
	t.Helper()
	s := Start(t)
	s.mu.Lock()
	s.n++
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.n)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, s.url("postgres"))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer c.Close(ctx)
	// As Debian's clusters are made: a natural-language collation, where
	// "a_d" sorts before "a-c", unlike SQLite's byte order.
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return s.url(name)
}

// Start returns the shared server, starting it on first use.
func Start(t testing.TB) *Server {
	t.Helper()
	once.Do(func() { shared, startErr = start() })
	if startErr != nil {
		if os.Getenv("BLK_REQUIRE_POSTGRES") == "1" {
			t.Fatalf("pgtest: %v", startErr)
		}
		t.Skipf("pgtest: %v (BLK_REQUIRE_POSTGRES=1 makes this a failure)", startErr)
	}
	return shared
}

// Stop ends the shared server and removes its files; TestMain calls it.
func Stop() {
	if shared != nil {
		shared.stop()
	}
}

func (s *Server) stop() {
	s.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	os.RemoveAll(s.dir)
}

func (s *Server) url(db string) string {
	return fmt.Sprintf("postgres://blk:%s@127.0.0.1:%d/%s?sslmode=disable", s.password, s.port, db)
}

// Password is the password in a URL URL returned, for tests that check
// it is never shown.
func Password(url string) string {
	_, rest, _ := strings.Cut(url, "://blk:")
	pw, _, _ := strings.Cut(rest, "@")
	return pw
}

// Port is the server's loopback port.
func (s *Server) Port() int { return s.port }

func start() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "blk-pgtest-")
	if err != nil {
		return nil, err
	}
	pw := make([]byte, 12)
	rand.Read(pw)
	s := &Server{dir: dir, password: hex.EncodeToString(pw), exited: make(chan struct{})}
	// PostgreSQL refuses to run as root: run it as the package's user.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, lerr := user.Lookup("postgres")
		if lerr != nil {
			return nil, fmt.Errorf("running as root and no postgres user: %w", lerr)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err = os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	pwfile := filepath.Join(dir, "pw")
	if err = os.WriteFile(pwfile, []byte(s.password+"\n"), 0o644); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "blk", "--auth=scram-sha-256",
		"--pwfile="+pwfile, "-E", "UTF8", "--no-locale", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, ierr := initdb.CombinedOutput(); ierr != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", ierr, out)
	}
	os.Remove(pwfile)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", dir, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=100",
		"-c", "log_min_messages=fatal", "-c", "log_min_error_statement=panic")
	// The server's log (a test's wrong password is a FATAL line) goes to
	// a file, shown only if the server does not come up.
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	started := make(chan error, 1)
	go func() {
		// The server dies with the test binary, even a killed one: the
		// parent-death signal is tied to the thread that started it, which
		// this goroutine keeps.
		runtime.LockOSThread()
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
		err := s.cmd.Start()
		started <- err
		if err == nil {
			s.cmd.Wait()
		}
		close(s.exited)
	}()
	if err := <-started; err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := pgx.Connect(ctx, s.url("postgres"))
		cancel()
		if err == nil {
			c.Close(context.Background())
			return s, nil
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("postgres exited: %v: %s", err, log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("postgres did not start within a minute: %v", err)
		}
	}
}
