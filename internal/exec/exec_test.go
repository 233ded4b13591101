package exec

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// hostile arguments must reach the command as single literal words.
var hostile = []string{"a b", "$(touch PWNED)", "'", ";", "x\ny", "`id`", "*", "", "--", "a\"b", `\`, "$HOME", "|cat"}

func TestLocalPassesArgvLiterally(t *testing.T) {
	l := &Local{Name: "here"}
	args := append([]string{"printf", `%s\0`}, hostile...)
	res, err := l.Run(context.Background(), Cmd{Args: args})
	if err != nil {
		t.Fatal(err)
	}
	checkEcho(t, res.Stdout)
	if _, err := os.Stat("PWNED"); err == nil {
		t.Fatal("a shell ran the argument")
	}
}

func checkEcho(t *testing.T, out []byte) {
	t.Helper()
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(got) != len(hostile) {
		t.Fatalf("got %d words %q, want %d", len(got), got, len(hostile))
	}
	for i := range hostile {
		if got[i] != hostile[i] {
			t.Errorf("word %d = %q, want %q", i, got[i], hostile[i])
		}
	}
}

func TestLocalErrorsKeepHostArgvStderr(t *testing.T) {
	l := &Local{Name: "stor1"}
	// Tools repeat their argv when they fail: stderr is masked too.
	_, err := l.Run(context.Background(), Cmd{Args: []string{"sh", "-c", `echo "boom $0" >&2; exit 5`, "--password=hunter2"}, Secrets: []string{"hunter2"}})
	var e *Error
	if !errors.As(err, &e) || e.ExitCode != 5 {
		t.Fatalf("err = %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"stor1", "exit status 5", "boom --password=***", "'--password=***'"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "hunter2") {
		t.Errorf("secret leaked: %q", msg)
	}
	_, err = l.Run(context.Background(), Cmd{Args: []string{"no-such-tool-blk"}})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("missing tool: err = %v, want ErrNotFound", err)
	}
}

func TestLocalTimeoutKillsTheWholeChild(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	// The grandchild sleep holds stdout open: only a group kill ends it.
	_, err := (&Local{Name: "here"}).Run(ctx, Cmd{Args: []string{"sh", "-c", "sleep 30 & sleep 30"}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v: the child was not killed", d)
	}
}

func TestLocalEnvIsStable(t *testing.T) {
	res, err := (&Local{Name: "here"}).Run(context.Background(), Cmd{Args: []string{"sh", "-c", "echo $LC_ALL"}})
	if err != nil || strings.TrimSpace(string(res.Stdout)) != "C" {
		t.Fatalf("LC_ALL = %q, %v", res.Stdout, err)
	}
}

func TestQuoteWord(t *testing.T) {
	for in, want := range map[string]string{"plain": "plain", "a b": "'a b'", "it's": `'it'\''s'`, "": "''", "/dev/blk/x": "/dev/blk/x"} {
		if got := QuoteWord(in); got != want {
			t.Errorf("QuoteWord(%q) = %s, want %s", in, got, want)
		}
	}
}

// sshServer is an in-process SSH server on 127.0.0.1 that runs each exec
// request with sh -c, as sshd does, so quoting is tested for real.
type sshServer struct {
	addr    string
	hostKey ssh.Signer
	conns   int
}

func newSSHServer(t *testing.T, clientKey ssh.PublicKey, extraHostKeys ...ssh.Signer) *sshServer {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, _ := ssh.NewSignerFromKey(priv)
	conf := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(clientKey.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	conf.AddHostKey(hostKey)
	for _, k := range extraHostKeys {
		conf.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &sshServer{addr: ln.Addr().String(), hostKey: hostKey}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns++
			go s.serve(c, conf)
		}
	}()
	return s
}

func (s *sshServer) serve(c net.Conn, conf *ssh.ServerConfig) {
	_, chans, reqs, err := ssh.NewServerConn(c, conf)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		ch, reqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer ch.Close()
			for r := range reqs {
				if r.Type != "exec" {
					r.Reply(false, nil)
					continue
				}
				n := binary.BigEndian.Uint32(r.Payload)
				line := string(r.Payload[4 : 4+n])
				r.Reply(true, nil)
				cmd := osexec.Command("sh", "-c", line)
				cmd.Dir = os.TempDir()
				cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
				// As sshd: a session of its own, and the channel as stdin
				// (copied without Wait waiting for it, as sshd does not).
				cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
				stdin, _ := cmd.StdinPipe()
				go func() { io.Copy(stdin, ch); stdin.Close() }()
				code := 0
				if err := cmd.Run(); err != nil {
					code = 255
					var ee *osexec.ExitError
					if errors.As(err, &ee) {
						code = ee.ExitCode()
					}
				}
				ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, uint32(code)))
				return
			}
		}()
	}
}

func sshFixture(t *testing.T, extraHostKeys ...ssh.Signer) (*sshServer, SSHConfig) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	return sshFixtureFor(t, priv, extraHostKeys...)
}

// sshFixtureFor is sshFixture for a client key the test chose.
func sshFixtureFor(t *testing.T, priv ed25519.PrivateKey, extraHostKeys ...ssh.Signer) (*sshServer, SSHConfig) {
	t.Helper()
	dir := t.TempDir()
	pem, _ := ssh.MarshalPrivateKey(priv, "")
	idFile := filepath.Join(dir, "id")
	os.WriteFile(idFile, pemBytes(pem), 0o600)
	signer, _ := ssh.NewSignerFromKey(priv)
	srv := newSSHServer(t, signer.PublicKey(), extraHostKeys...)
	kh := filepath.Join(dir, "known_hosts")
	writeKnownHost(t, kh, srv.addr, srv.hostKey.PublicKey())
	t.Setenv("SSH_AUTH_SOCK", "")
	return srv, SSHConfig{Name: "stor1", Address: srv.addr, User: "root", Identity: idFile, KnownHosts: kh}
}

func writeKnownHost(t *testing.T, file, addr string, key ssh.PublicKey) {
	host, port, _ := net.SplitHostPort(addr)
	line := fmt.Sprintf("[%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(key))
	if err := os.WriteFile(file, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSSHQuotesEveryWordAndSharesOneConnection(t *testing.T) {
	srv, cfg := sshFixture(t)
	s := NewSSH(cfg)
	defer s.Close()
	args := append([]string{"printf", `%s\0`}, hostile...)
	for i := 0; i < 3; i++ {
		res, err := s.Run(context.Background(), Cmd{Args: args})
		if err != nil {
			t.Fatal(err)
		}
		checkEcho(t, res.Stdout)
	}
	if _, err := os.Stat(filepath.Join(os.TempDir(), "PWNED")); err == nil {
		os.Remove(filepath.Join(os.TempDir(), "PWNED"))
		t.Fatal("the remote shell ran an argument")
	}
	if s.Dials() != 1 || srv.conns != 1 {
		t.Errorf("dials = %d, server saw %d connections; want one", s.Dials(), srv.conns)
	}
	_, err := s.Run(context.Background(), Cmd{Args: []string{"sh", "-c", "echo nope >&2; exit 3"}})
	if e := (*Error)(nil); !errors.As(err, &e) || e.ExitCode != 3 || !strings.Contains(err.Error(), "nope") {
		t.Errorf("err = %v", err)
	}
	_, err = s.Run(context.Background(), Cmd{Args: []string{"no-such-tool-blk"}})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("missing tool over ssh: err = %v", err)
	}
}

func TestSSHRefusesChangedAndUnknownHostKeys(t *testing.T) {
	srv, cfg := sshFixture(t)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, _ := ssh.NewSignerFromKey(other)
	writeKnownHost(t, cfg.KnownHosts, srv.addr, otherKey.PublicKey())
	_, err := NewSSH(cfg).Run(context.Background(), Cmd{Args: []string{"true"}})
	var hk *HostKeyError
	if !errors.As(err, &hk) || !hk.Changed || !strings.Contains(err.Error(), "CHANGED") {
		t.Fatalf("changed key: err = %v", err)
	}
	os.WriteFile(cfg.KnownHosts, nil, 0o600)
	_, err = NewSSH(cfg).Run(context.Background(), Cmd{Args: []string{"true"}})
	if !errors.As(err, &hk) || hk.Changed || !strings.Contains(err.Error(), "ssh-keyscan") {
		t.Fatalf("unknown key: err = %v", err)
	}
}

func TestDryRunSkipsOnlyMutations(t *testing.T) {
	var out strings.Builder
	var mu = new(syncMutex)
	d := NewDryRun(&Local{Name: "stor1"}, &out, &mu.m)
	res, err := d.Run(context.Background(), Cmd{Args: []string{"echo", "read"}})
	if err != nil || strings.TrimSpace(string(res.Stdout)) != "read" {
		t.Fatalf("read: %q %v", res.Stdout, err)
	}
	marker := filepath.Join(t.TempDir(), "made")
	if _, err = d.Run(context.Background(), Cmd{Args: []string{"touch", marker}, Mutates: true}); err != nil {
		t.Fatal(err)
	}
	if _, err = os.Stat(marker); err == nil {
		t.Fatal("dry run ran a mutating command")
	}
	if got := out.String(); got != "stor1: touch "+marker+"\n" {
		t.Errorf("plan = %q", got)
	}
	// A read of what the skipped command would have made sees nothing.
	res, err = d.Run(context.Background(), Cmd{Args: []string{"echo", "observed"}, Observes: true})
	if err != nil || len(res.Stdout) != 0 || strings.Count(out.String(), "\n") != 1 {
		t.Errorf("observing read: %q %v, plan %q", res.Stdout, err, out.String())
	}
}

func TestSSHUnreachableSaysWhere(t *testing.T) {
	_, cfg := sshFixture(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	cfg.Address = ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err := NewSSH(cfg).Run(context.Background(), Cmd{Args: []string{"true"}})
	if err == nil || !strings.Contains(err.Error(), "ssh stor1 ("+cfg.Address+")") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("err = %v", err)
	}
}

// Output sees stdout as it comes, over both runners, and Result still has
// all of it.
func TestOutputStreamsStdout(t *testing.T) {
	_, cfg := sshFixture(t)
	s := NewSSH(cfg)
	defer s.Close()
	for _, r := range []Runner{&Local{Name: "here"}, s} {
		var seen strings.Builder
		res, err := r.Run(context.Background(), Cmd{Args: []string{"printf", `(1.00/100%%)\r(50.00/100%%)\r`}, Output: &seen})
		if err != nil {
			t.Fatal(err)
		}
		if want := "(1.00/100%)\r(50.00/100%)\r"; seen.String() != want || string(res.Stdout) != want {
			t.Errorf("%s: streamed %q, result %q", r.Host(), seen.String(), res.Stdout)
		}
	}
}
