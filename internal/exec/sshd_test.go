package exec

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// realSSHD starts OpenSSH's sshd on a free port of 127.0.0.1 for this test
// and returns a config that reaches it as root. Tests that need sshd's own
// behaviour (what it does when a connection drops) use it; they skip where
// sshd is not installed or blk's tests do not run as root.
func realSSHD(t *testing.T) SSHConfig {
	t.Helper()
	const sshd = "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		t.Skip("no " + sshd + " (apt-get install openssh-server)")
	}
	if os.Geteuid() != 0 {
		t.Skip("sshd tests log in as root")
	}
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostPEM, _ := ssh.MarshalPrivateKey(hostPriv, "")
	hostKeyFile := write("host_key", pemBytes(hostPEM))
	hostSigner, _ := ssh.NewSignerFromKey(hostPriv)
	_, userPriv, _ := ed25519.GenerateKey(rand.Reader)
	userPEM, _ := ssh.MarshalPrivateKey(userPriv, "")
	idFile := write("id", pemBytes(userPEM))
	userSigner, _ := ssh.NewSignerFromKey(userPriv)
	authKeys := write("authorized_keys", ssh.MarshalAuthorizedKey(userSigner.PublicKey()))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := write("sshd_config", []byte(fmt.Sprintf(`ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PidFile none
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel ERROR
Subsystem sftp internal-sftp
`, hostKeyFile, authKeys)))
	cmd := osexec.Command(sshd, "-D", "-e", "-f", conf, "-p", port)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("sshd log:\n%s", log.String())
		}
	})
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not start: %s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	kh := filepath.Join(dir, "known_hosts")
	writeKnownHost(t, kh, addr, hostSigner.PublicKey())
	t.Setenv("SSH_AUTH_SOCK", "")
	return SSHConfig{Name: "stor1", Address: addr, User: "root", Identity: idFile, KnownHosts: kh}
}

// cutter is a TCP proxy whose connections the test can cut, as a killed
// blk would, or freeze, as a dead network would.
type cutter struct {
	addr  string
	mu    sync.Mutex
	conns []net.Conn
	gate  sync.RWMutex // held for writing while frozen
}

// pipe copies like io.Copy, holding each write until the gate is open.
func (c *cutter) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			c.gate.RLock()
			_, werr := dst.Write(buf[:n])
			c.gate.RUnlock()
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (c *cutter) freeze(t *testing.T) {
	c.gate.Lock()
	t.Cleanup(c.gate.Unlock)
}

func newCutter(t *testing.T, target string) *cutter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c := &cutter{addr: ln.Addr().String()}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			go c.pipe(out, in)
			go c.pipe(in, out)
		}
	}()
	return c
}

func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

// marker is a sleep no other process runs (sleep takes fractions); the
// test kills any it left behind.
func marker(t *testing.T) string {
	n, _ := rand.Int(rand.Reader, big.NewInt(1e9))
	m := fmt.Sprintf("1000.%09d", n)
	t.Cleanup(func() { osexec.Command("pkill", "-KILL", "-f", "^sleep "+m).Run() })
	return m
}

func running(m string) bool {
	return osexec.Command("pgrep", "-f", "^sleep "+m).Run() == nil
}

func within(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// runAsync runs cmd and returns its error on a channel.
func runAsync(ctx context.Context, s *SSH, cmd Cmd) chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := s.Run(ctx, cmd)
		errc <- err
	}()
	return errc
}

func wait(t *testing.T, errc chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(d):
		t.Fatalf("Run did not return within %v", d)
		return nil
	}
}

func TestSSHCancelKillsTheRemoteCommandAtOnce(t *testing.T) {
	for _, server := range []string{"openssh", "ignores signals"} {
		t.Run(server, func(t *testing.T) {
			var cfg SSHConfig
			if server == "openssh" {
				cfg = realSSHD(t)
			} else {
				_, cfg = sshFixture(t) // answers no signal request
			}
			s := NewSSH(cfg)
			defer s.Close()
			m := marker(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := runAsync(ctx, s, Cmd{Args: []string{"sleep", m}})
			if !within(5*time.Second, func() bool { return running(m) }) {
				t.Fatal("the remote sleep never started")
			}
			cancel()
			if err := wait(t, errc, 2*time.Second); !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v", err)
			}
			if !within(5*time.Second, func() bool { return !running(m) }) {
				t.Fatal("the remote sleep outlived the cancel")
			}
		})
	}
}

func TestSSHRemoteCommandDiesWithTheConnection(t *testing.T) {
	cfg := realSSHD(t)
	proxy := newCutter(t, cfg.Address)
	cfg.Address = proxy.addr
	writeKnownHostFrom(t, cfg.KnownHosts, proxy.addr)
	s := NewSSH(cfg)
	defer s.Close()
	m := marker(t)
	errc := runAsync(context.Background(), s, Cmd{Args: []string{"sleep", m}})
	if !within(5*time.Second, func() bool { return running(m) }) {
		t.Fatal("the remote sleep never started")
	}
	proxy.cut()
	if err := wait(t, errc, 5*time.Second); !errors.Is(err, ErrConnLost) {
		t.Errorf("cut connection: err = %v, want ErrConnLost", err)
	}
	if !within(5*time.Second, func() bool { return !running(m) }) {
		t.Fatal("the remote sleep outlived its connection")
	}
}

// writeKnownHostFrom repeats the key known_hosts has for its only host
// under addr.
func writeKnownHostFrom(t *testing.T, file, addr string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, _, key, _, _, err := ssh.ParseKnownHosts(data)
	if err != nil {
		t.Fatal(err)
	}
	writeKnownHost(t, file, addr, key)
}

func TestSSHRedialsOnceAfterTheConnectionDrops(t *testing.T) {
	srv, cfg := sshFixture(t)
	proxy := newCutter(t, srv.addr)
	cfg.Address = proxy.addr
	writeKnownHost(t, cfg.KnownHosts, proxy.addr, srv.hostKey.PublicKey())
	s := NewSSH(cfg)
	defer s.Close()
	echo := Cmd{Args: []string{"echo", "ok"}}
	if _, err := s.Run(context.Background(), echo); err != nil {
		t.Fatal(err)
	}
	proxy.cut()
	if _, err := s.Run(context.Background(), echo); err != nil {
		t.Fatalf("after one drop: %v", err)
	}
	if s.Dials() != 2 {
		t.Errorf("dials = %d, want 2", s.Dials())
	}
	proxy.cut()
	_, err := s.Run(context.Background(), echo)
	if err == nil || !strings.Contains(err.Error(), "re-dials only once") {
		t.Errorf("after a second drop: err = %v, want a lost connection", err)
	}
}

func TestSSHCancelIsPromptOnADeadNetwork(t *testing.T) {
	srv, cfg := sshFixture(t)
	proxy := newCutter(t, srv.addr)
	cfg.Address = proxy.addr
	writeKnownHost(t, cfg.KnownHosts, proxy.addr, srv.hostKey.PublicKey())
	s := NewSSH(cfg)
	defer s.Close()
	if _, err := s.Run(context.Background(), Cmd{Args: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	proxy.freeze(t) // no answer to the channel open, ever
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := wait(t, runAsync(ctx, s, Cmd{Args: []string{"true"}}), 2*time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the deadline", err)
	}
}

func TestSSHNoticesADeadNetworkUnderARunningCommand(t *testing.T) {
	srv, cfg := sshFixture(t)
	proxy := newCutter(t, srv.addr)
	cfg.Address = proxy.addr
	cfg.KeepAlive = 100 * time.Millisecond
	writeKnownHost(t, cfg.KnownHosts, proxy.addr, srv.hostKey.PublicKey())
	s := NewSSH(cfg)
	defer s.Close()
	m := marker(t)
	errc := runAsync(context.Background(), s, Cmd{Args: []string{"sleep", m}})
	if !within(5*time.Second, func() bool { return running(m) }) {
		t.Fatal("the remote sleep never started")
	}
	proxy.freeze(t)
	if err := wait(t, errc, 3*time.Second); !errors.Is(err, ErrConnLost) {
		t.Errorf("err = %v, want ErrConnLost", err)
	}
}
