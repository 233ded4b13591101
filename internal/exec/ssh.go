package exec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHConfig says how to reach one host.
type SSHConfig struct {
	Name       string // the host's name in blk's config
	Address    string // host or host:port
	Port       int
	User       string
	Identity   string // private key file; optional when an agent is running
	KnownHosts string
	Timeout    time.Duration
}

// SSH runs commands on a remote host over one connection, opened on first
// use and shared by every command of this invocation.
type SSH struct {
	cfg    SSHConfig
	mu     sync.Mutex
	client *ssh.Client
	dials  int
}

func NewSSH(cfg SSHConfig) *SSH { return &SSH{cfg: cfg} }

func (s *SSH) Host() string { return s.cfg.Name }

// Dials reports how many connections this runner opened; blk promises one.
func (s *SSH) Dials() int { s.mu.Lock(); defer s.mu.Unlock(); return s.dials }

func (s *SSH) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		return nil
	}
	err := s.client.Close()
	s.client = nil
	return err
}

// Client returns the shared connection, for tunnelling other protocols
// (the libvirt socket) through it.
func (s *SSH) Client(ctx context.Context) (*ssh.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client, nil
	}
	c, err := s.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("ssh %s (%s): %w", s.cfg.Name, s.addr(), err)
	}
	s.dials++
	s.client = c
	return c, nil
}

func (s *SSH) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	c, err := s.Client(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := c.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: dial %s: %w", s.cfg.Name, path, err)
	}
	return conn, nil
}

func (s *SSH) addr() string {
	if _, _, err := net.SplitHostPort(s.cfg.Address); err == nil {
		return s.cfg.Address
	}
	port := s.cfg.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(s.cfg.Address, fmt.Sprint(port))
}

// HostKeyError is an unknown or changed host key: blk never trusts silently.
type HostKeyError struct {
	Addr, KnownHosts string
	Changed          bool
}

func (e *HostKeyError) Error() string {
	if e.Changed {
		return fmt.Sprintf("host key of %s has CHANGED from the one in %s: refusing to connect; if the host was rebuilt, remove its old line (ssh-keygen -R %s -f %s) and add the new key", e.Addr, e.KnownHosts, e.Addr, e.KnownHosts)
	}
	return fmt.Sprintf("host key of %s is not in %s: refusing to connect; add it after checking it out of band (ssh-keyscan -p PORT HOST >> %s)", e.Addr, e.KnownHosts, e.KnownHosts)
}

func (s *SSH) dial(ctx context.Context) (*ssh.Client, error) {
	khPath := expandHome(s.cfg.KnownHosts)
	if khPath == "" {
		khPath = expandHome("~/.ssh/known_hosts")
	}
	check, err := knownhosts.New(khPath)
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	hostKeyCallback := func(host string, remote net.Addr, key ssh.PublicKey) error {
		kerr := check(host, remote, key)
		var keyErr *knownhosts.KeyError
		if errors.As(kerr, &keyErr) {
			return &HostKeyError{Addr: host, KnownHosts: khPath, Changed: len(keyErr.Want) > 0}
		}
		return kerr
	}
	auth, err := s.authMethods()
	if err != nil {
		return nil, err
	}
	user := s.cfg.User
	if user == "" {
		user = "root"
	}
	timeout := s.cfg.Timeout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	conf := &ssh.ClientConfig{
		User:            user,
		Auth:            auth,
		HostKeyCallback: hostKeyCallback,
		// Offer only the key types known_hosts has for this host, or a host
		// with several keys fails with a mismatch instead of negotiating.
		HostKeyAlgorithms: knownAlgorithms(khPath, s.addr()),
		Timeout:           timeout,
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", s.addr())
	if err != nil {
		return nil, err
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, s.addr(), conf)
	if err != nil {
		conn.Close()
		var hk *HostKeyError
		if errors.As(err, &hk) {
			return nil, hk
		}
		return nil, err
	}
	return ssh.NewClient(c, chans, reqs), nil
}

func (s *SSH) authMethods() ([]ssh.AuthMethod, error) {
	var methods []ssh.AuthMethod
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if conn, err := net.Dial("unix", sock); err == nil {
			methods = append(methods, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
		}
	}
	ids := []string{s.cfg.Identity}
	if s.cfg.Identity == "" {
		ids = []string{"~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa"}
	}
	var signers []ssh.Signer
	for _, id := range ids {
		pem, err := os.ReadFile(expandHome(id))
		if err != nil {
			if s.cfg.Identity != "" {
				return nil, fmt.Errorf("identity: %w", err)
			}
			continue
		}
		signer, err := ssh.ParsePrivateKey(pem)
		if err != nil {
			return nil, fmt.Errorf("identity %s: %w", id, err)
		}
		signers = append(signers, signer)
	}
	if len(signers) > 0 {
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	if len(methods) == 0 {
		return nil, errors.New("no ssh-agent and no identity file: set hosts.<name>.identity")
	}
	return methods, nil
}

func (s *SSH) Run(ctx context.Context, cmd Cmd) (Result, error) {
	masked := Mask(cmd.Args, cmd.Secrets)
	fail := func(err error) (Result, error) {
		return Result{}, &Error{Host: s.cfg.Name, Args: masked, ExitCode: -1, Err: err}
	}
	client, err := s.Client(ctx)
	if err != nil {
		return Result{}, err // says host and address; the command never started
	}
	sess, err := client.NewSession()
	if err != nil {
		return fail(err)
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr, sess.Stdin = &stdout, &stderr, cmd.Stdin
	// The remote side has only a shell: quote every word so each argument
	// arrives literal, whatever it holds.
	line := strings.Join(Env, " ") + " " + Quote(cmd.Args)
	if err = sess.Start(line); err != nil {
		return fail(err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGKILL)
		sess.Close()
		<-done
		return fail(ctx.Err())
	}
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if err == nil {
		return res, nil
	}
	e := &Error{Host: s.cfg.Name, Args: masked, ExitCode: -1, Stderr: stderr.String(), Err: err}
	var exitErr *ssh.ExitError
	if errors.As(err, &exitErr) {
		e.ExitCode, e.Err = exitErr.ExitStatus(), nil
		if e.ExitCode == 127 {
			e.Err = ErrNotFound
		}
	}
	return res, e
}

func knownAlgorithms(path, addr string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	host := knownhosts.Normalize(addr)
	var algos []string
	for len(data) > 0 {
		_, hosts, key, _, rest, err := ssh.ParseKnownHosts(data)
		if err != nil {
			break
		}
		data = rest
		for _, h := range hosts {
			if h == host {
				algos = append(algos, key.Type())
			}
		}
	}
	return algos
}

func expandHome(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return p
}
