package exec

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

func TestSSHErrorsMaskSecretsInStderr(t *testing.T) {
	_, cfg := sshFixture(t)
	s := NewSSH(cfg)
	defer s.Close()
	// tgtadm and iscsiadm repeat their argv when they fail.
	cmd := Cmd{Args: []string{"sh", "-c", `echo "tgtadm: bad --password $1" >&2; exit 22`, "sh", "hunter2"}, Secrets: []string{"hunter2"}}
	for _, r := range []Runner{&Local{Name: "stor1"}, s} {
		_, err := r.Run(context.Background(), cmd)
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "bad --password ***") {
			t.Errorf("%T: err = %v", r, err)
		}
		var e *Error
		if errors.As(err, &e) && strings.Contains(e.Stderr, "hunter2") {
			t.Errorf("%T: Error.Stderr holds the secret: %q", r, e.Stderr)
		}
	}
}

func TestSSHStdinReachesTheCommandExactly(t *testing.T) {
	_, cfg := sshFixture(t)
	s := NewSSH(cfg)
	defer s.Close()
	for _, in := range []string{"1", "two\nlines\n\n", "", "$(touch PWNED) 'x' \\"} {
		res, err := s.Run(context.Background(), Cmd{Args: []string{"od", "-An", "-c"}, Stdin: strings.NewReader(in)})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := (&Local{}).Run(context.Background(), Cmd{Args: []string{"od", "-An", "-c"}, Stdin: strings.NewReader(in)})
		if string(res.Stdout) != string(want.Stdout) {
			t.Errorf("stdin %q arrived as %q, want %q", in, res.Stdout, want.Stdout)
		}
	}
}

// silentServer accepts TCP connections and never speaks SSH.
func silentServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}

func TestSSHHandshakeHasADeadlineAndHonoursCtx(t *testing.T) {
	_, cfg := sshFixture(t)
	cfg.Address = silentServer(t)
	run := func(s *SSH, ctx context.Context) chan error {
		errc := make(chan error, 1)
		go func() {
			_, err := s.Run(ctx, Cmd{Args: []string{"true"}})
			errc <- err
		}()
		return errc
	}

	cfg.Timeout = 300 * time.Millisecond
	select {
	case err := <-run(NewSSH(cfg), context.Background()):
		if err == nil {
			t.Error("a silent host answered")
		}
	case <-time.After(3 * time.Second):
		t.Error("the handshake with a silent host has no deadline")
	}

	cfg.Timeout = time.Minute
	s := NewSSH(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	first := run(s, ctx)
	time.Sleep(100 * time.Millisecond) // the first caller is dialling
	// Other callers are not stuck behind a dial that hangs.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	select {
	case err := <-run(s, ctx2):
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("second caller: err = %v, want its ctx's deadline", err)
		}
	case <-time.After(time.Second):
		t.Error("a second caller waits behind a hanging dial")
	}
	select {
	case err := <-first:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("first caller: err = %v, want its ctx's deadline", err)
		}
	case <-time.After(3 * time.Second):
		t.Error("ctx did not end the handshake")
	}
}

// agentWith serves an in-memory ssh-agent holding keys, as SSH_AUTH_SOCK.
func agentWith(t *testing.T, keys ...any) {
	keyring := agent.NewKeyring()
	for _, k := range keys {
		if err := keyring.Add(agent.AddedKey{PrivateKey: k}); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(keyring, c); c.Close() }()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
}

func encryptIdentity(t *testing.T, file string, priv ed25519.PrivateKey) {
	pem, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, pemBytes(pem), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSSHUsesTheAgentForAnEncryptedIdentity(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, cfg := sshFixtureFor(t, priv)
	encryptIdentity(t, cfg.Identity, priv)
	agentWith(t, priv)
	if _, err := NewSSH(cfg).Run(context.Background(), Cmd{Args: []string{"true"}}); err != nil {
		t.Fatalf("key in the agent, encrypted file: %v", err)
	}
}

func TestSSHSaysWhyAnEncryptedIdentityCannotBeUsed(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, cfg := sshFixtureFor(t, priv)
	encryptIdentity(t, cfg.Identity, priv)
	_, err := NewSSH(cfg).Run(context.Background(), Cmd{Args: []string{"true"}})
	if err == nil || !strings.Contains(err.Error(), "passphrase-protected") || !strings.Contains(err.Error(), "ssh-add "+cfg.Identity) {
		t.Errorf("no agent: err = %v", err)
	}
	// An agent with some other key: the attempt fails, and says what was skipped.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	agentWith(t, other)
	_, err = NewSSH(cfg).Run(context.Background(), Cmd{Args: []string{"true"}})
	for _, want := range []string{`as "root"`, "ssh-agent (1 keys)", "skipped " + cfg.Identity, "publickey"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("agent without the key: err = %v, want %q", err, want)
		}
	}
}

func TestSSHUnableToAuthenticateNamesUserAndKeys(t *testing.T) {
	_, cfg := sshFixture(t)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	pem, _ := ssh.MarshalPrivateKey(other, "")
	os.WriteFile(cfg.Identity, pemBytes(pem), 0o600)
	cfg.User = "admin"
	_, err := NewSSH(cfg).Run(context.Background(), Cmd{Args: []string{"true"}})
	for _, want := range []string{`as "admin"`, "publickey from " + cfg.Identity, "unable to authenticate"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
}

func TestSSHHostKeyHintsCarryHostAndPort(t *testing.T) {
	srv, cfg := sshFixture(t)
	host, port, _ := net.SplitHostPort(srv.addr)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, _ := ssh.NewSignerFromKey(other)
	writeKnownHost(t, cfg.KnownHosts, srv.addr, otherKey.PublicKey())
	_, err := NewSSH(cfg).Run(context.Background(), Cmd{Args: []string{"true"}})
	keyscan := fmt.Sprintf("ssh-keyscan -p %s %s >> %s", port, host, cfg.KnownHosts)
	for _, want := range []string{fmt.Sprintf("ssh-keygen -R '[%s]:%s' -f %s", host, port, cfg.KnownHosts), keyscan} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("changed key: err = %v, want %q", err, want)
		}
	}
	os.WriteFile(cfg.KnownHosts, nil, 0o600)
	_, err = NewSSH(cfg).Run(context.Background(), Cmd{Args: []string{"true"}})
	if err == nil || !strings.Contains(err.Error(), keyscan) {
		t.Errorf("unknown key: err = %v, want %q", err, keyscan)
	}
	os.Remove(cfg.KnownHosts)
	_, err = NewSSH(cfg).Run(context.Background(), Cmd{Args: []string{"true"}})
	var hk *HostKeyError
	if !errors.As(err, &hk) || !hk.Missing || !strings.Contains(err.Error(), keyscan) {
		t.Errorf("no known_hosts file: err = %v, want %q", err, keyscan)
	}
	if got := (&HostKeyError{Host: "stor1", Port: 22, KnownHosts: "/k", Changed: true}).Error(); !strings.Contains(got, "ssh-keygen -R stor1 -f /k") || !strings.Contains(got, "ssh-keyscan stor1 >> /k") {
		t.Errorf("port 22: %s", got)
	}
}

// hashedLine is a known_hosts line as HashKnownHosts yes writes it.
func hashedLine(addr string, key ssh.PublicKey) string {
	host, port, _ := net.SplitHostPort(addr)
	salt := make([]byte, 20)
	rand.Read(salt)
	mac := hmac.New(sha1.New, salt)
	mac.Write([]byte(fmt.Sprintf("[%s]:%s", host, port)))
	return fmt.Sprintf("|1|%s|%s %s", base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(mac.Sum(nil)), ssh.MarshalAuthorizedKey(key))
}

func TestSSHHashedKnownHostsPickTheKnownKeyType(t *testing.T) {
	// The server offers ECDSA, which x/crypto prefers, and Ed25519, the only
	// key known_hosts holds, hashed.
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecKey, _ := ssh.NewSignerFromKey(ec)
	srv, cfg := sshFixture(t, ecKey)
	line := hashedLine(srv.addr, srv.hostKey.PublicKey())
	if err := os.WriteFile(cfg.KnownHosts, []byte("# a comment\n"+line), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSSH(cfg).Run(context.Background(), Cmd{Args: []string{"true"}}); err != nil {
		t.Fatalf("hashed known_hosts line: %v", err)
	}
}

func TestKnownAlgorithmsOffersRSAWithSHA2(t *testing.T) {
	kh := filepath.Join(t.TempDir(), "known_hosts")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(&rsaKey.PublicKey)
	if err := os.WriteFile(kh, []byte("stor1 "+string(ssh.MarshalAuthorizedKey(pub))), 0o600); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(knownAlgorithms(kh, "stor1:22"), " ")
	if !strings.Contains(got, ssh.KeyAlgoRSASHA256) {
		t.Errorf("algorithms = %q, want %s", got, ssh.KeyAlgoRSASHA256)
	}
}
