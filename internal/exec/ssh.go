package exec

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
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
	Timeout    time.Duration // for the TCP dial and the SSH handshake together
	// KeepAlive is how often the connection is checked while it is open;
	// one that does not answer within the same time is closed.
	KeepAlive time.Duration
}

// SSH runs commands on a remote host over one connection, opened on first
// use and shared by every command of this invocation.
type SSH struct {
	cfg     SSHConfig
	mu      sync.Mutex
	client  *ssh.Client
	dialing chan struct{} // closed when the dial under way ends
	dials   int
	// lost is set when the connection dropped under blk; it is dialled once
	// more, so cleanup can still undo what was done, but not again and again.
	lost, redialed bool
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
// (the libvirt socket) through it. The lock is not held while dialling:
// other callers wait for that dial only as long as their own ctx allows.
func (s *SSH) Client(ctx context.Context) (*ssh.Client, error) {
	for {
		s.mu.Lock()
		if s.client != nil {
			c := s.client
			s.mu.Unlock()
			return c, nil
		}
		if wait := s.dialing; wait != nil {
			s.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("ssh %s (%s): %w", s.cfg.Name, s.addr(), ctx.Err())
			}
		}
		if s.lost {
			if s.redialed {
				s.mu.Unlock()
				return nil, fmt.Errorf("ssh %s (%s): connection lost, and blk re-dials only once per run", s.cfg.Name, s.addr())
			}
			s.redialed = true
		}
		done := make(chan struct{})
		s.dialing = done
		s.mu.Unlock()

		c, err := s.dial(ctx)

		s.mu.Lock()
		s.dialing = nil
		close(done)
		if err != nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("ssh %s (%s): %w", s.cfg.Name, s.addr(), err)
		}
		s.dials++
		s.client = c
		s.mu.Unlock()
		go func() {
			_ = c.Wait()
			s.drop(c)
		}()
		go s.keepAlive(c)
		return c, nil
	}
}

// keepAlive closes c when the server stops answering: a network that died
// without a reset would otherwise leave a command waiting for ever, and
// the next command too.
func (s *SSH) keepAlive(c *ssh.Client) {
	every := s.cfg.KeepAlive
	if every == 0 {
		every = 15 * time.Second
	}
	closed := make(chan struct{})
	go func() { c.Wait(); close(closed) }()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-closed:
			return
		case <-tick.C:
		}
		answered := make(chan error, 1)
		go func() {
			_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}()
		select {
		case err := <-answered:
			if err == nil {
				continue
			}
		case <-closed:
			return
		case <-time.After(every):
		}
		c.Close()
		return
	}
}

// drop forgets c once its connection has gone, so the next command dials.
func (s *SSH) drop(c *ssh.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == c {
		s.client = nil
		s.lost = true
		c.Close()
	}
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

func (s *SSH) hostPort() (string, int) {
	if h, p, err := net.SplitHostPort(s.cfg.Address); err == nil {
		port, _ := strconv.Atoi(p)
		return h, port
	}
	if s.cfg.Port == 0 {
		return s.cfg.Address, 22
	}
	return s.cfg.Address, s.cfg.Port
}

func (s *SSH) addr() string {
	h, p := s.hostPort()
	return net.JoinHostPort(h, strconv.Itoa(p))
}

// HostKeyError is an unknown or changed host key, or no known_hosts file at
// all: blk never trusts silently.
type HostKeyError struct {
	Host       string
	Port       int
	KnownHosts string
	Changed    bool
	Missing    bool // the known_hosts file does not exist
}

func (e *HostKeyError) Error() string {
	addr := net.JoinHostPort(e.Host, strconv.Itoa(e.Port))
	scan := "ssh-keyscan "
	if e.Port != 22 {
		scan += fmt.Sprintf("-p %d ", e.Port)
	}
	scan += QuoteWord(e.Host) + " >> " + QuoteWord(e.KnownHosts)
	switch {
	case e.Changed:
		// known_hosts names a host on another port as [host]:port.
		return fmt.Sprintf("host key of %s has CHANGED from the one in %s: refusing to connect; if the host was rebuilt, remove its old line (ssh-keygen -R %s -f %s) and add the new key after checking it out of band (%s)",
			addr, e.KnownHosts, QuoteWord(knownhosts.Normalize(addr)), QuoteWord(e.KnownHosts), scan)
	case e.Missing:
		return fmt.Sprintf("known_hosts file %s does not exist, so the host key of %s cannot be checked: refusing to connect; add the key after checking it out of band (%s)", e.KnownHosts, addr, scan)
	}
	return fmt.Sprintf("host key of %s is not in %s: refusing to connect; add it after checking it out of band (%s)", addr, e.KnownHosts, scan)
}

func (s *SSH) dial(ctx context.Context) (*ssh.Client, error) {
	host, port := s.hostPort()
	khPath := expandHome(s.cfg.KnownHosts)
	if khPath == "" {
		khPath = expandHome("~/.ssh/known_hosts")
	}
	check, err := knownhosts.New(khPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &HostKeyError{Host: host, Port: port, KnownHosts: khPath, Missing: true}
	}
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	hostKeyCallback := func(addr string, remote net.Addr, key ssh.PublicKey) error {
		kerr := check(addr, remote, key)
		var keyErr *knownhosts.KeyError
		if errors.As(kerr, &keyErr) {
			return &HostKeyError{Host: host, Port: port, KnownHosts: khPath, Changed: len(keyErr.Want) > 0}
		}
		return kerr
	}
	keys, err := s.keys()
	if err != nil {
		return nil, err
	}
	defer keys.close()
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
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(keys.signers...)},
		HostKeyCallback: hostKeyCallback,
		// Offer only the key types known_hosts has for this host, or a host
		// with several keys fails with a mismatch instead of negotiating.
		HostKeyAlgorithms: knownAlgorithms(khPath, s.addr()),
	}
	deadline := time.Now().Add(timeout)
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "tcp", s.addr())
	if err != nil {
		return nil, err
	}
	// A host that accepts TCP and then says nothing must not hang blk: the
	// handshake shares the dial's deadline, and ctx ends it at once.
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	c, chans, reqs, err := ssh.NewClientConn(conn, s.addr(), conf)
	if !stop() || err != nil {
		conn.Close()
		var hk *HostKeyError
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.As(err, &hk):
			return nil, hk
		case strings.Contains(err.Error(), "unable to authenticate"):
			// x/crypto has no type for this; say who tried with what.
			return nil, fmt.Errorf("authenticate as %q with %s: %w", user, keys.describe(), err)
		}
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// sshKeys are the keys blk offers, the agent's first. They go in one
// publickey method: x/crypto tries each method name once, so a second
// publickey method would never run.
type sshKeys struct {
	signers []ssh.Signer
	agent   int      // how many came from ssh-agent
	files   []string // identity files used
	locked  []string // passphrase-protected files the agent does not hold
	conn    net.Conn
}

func (k *sshKeys) close() {
	if k.conn != nil {
		k.conn.Close()
	}
}

func (k *sshKeys) describe() string {
	var from []string
	if k.agent > 0 {
		from = append(from, fmt.Sprintf("ssh-agent (%d keys)", k.agent))
	}
	from = append(from, k.files...)
	s := "publickey from " + strings.Join(from, ", ")
	if len(k.locked) > 0 {
		s += fmt.Sprintf("; skipped %s: passphrase-protected and not in ssh-agent (load it with ssh-add)", strings.Join(k.locked, ", "))
	}
	return s
}

func (s *SSH) keys() (*sshKeys, error) {
	k := &sshKeys{}
	var held map[string]bool // public keys the agent can sign with
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if conn, err := net.Dial("unix", sock); err == nil {
			signers, err := agent.NewClient(conn).Signers()
			if err == nil && len(signers) > 0 {
				k.conn, k.signers, k.agent = conn, signers, len(signers)
				held = map[string]bool{}
				for _, sg := range signers {
					held[string(sg.PublicKey().Marshal())] = true
				}
			} else {
				conn.Close()
			}
		}
	}
	ids := []string{s.cfg.Identity}
	if s.cfg.Identity == "" {
		ids = []string{"~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa"}
	}
	for _, id := range ids {
		pem, err := os.ReadFile(expandHome(id))
		if err != nil {
			if s.cfg.Identity != "" {
				k.close()
				return nil, fmt.Errorf("identity: %w", err)
			}
			continue
		}
		signer, err := ssh.ParsePrivateKey(pem)
		var locked *ssh.PassphraseMissingError
		if errors.As(err, &locked) {
			// blk cannot ask for a passphrase; such a key is meant to be
			// used through the agent, which may hold it already.
			if locked.PublicKey == nil || !held[string(locked.PublicKey.Marshal())] {
				k.locked = append(k.locked, id)
			}
			continue
		}
		if err != nil {
			k.close()
			return nil, fmt.Errorf("identity %s: %w", id, err)
		}
		k.signers = append(k.signers, signer)
		k.files = append(k.files, id)
	}
	if len(k.signers) == 0 {
		if len(k.locked) > 0 {
			return nil, fmt.Errorf("identity %s is passphrase-protected and ssh-agent does not hold it: load it with ssh-add %s (blk cannot ask for a passphrase)", k.locked[0], QuoteWord(k.locked[0]))
		}
		return nil, errors.New("no ssh-agent and no identity file: set hosts.<name>.identity")
	}
	return k, nil
}

// remoteWrapper runs a command so that it cannot outlive blk. Without a pty
// sshd sends no SIGHUP when the connection goes, so the command would run
// on. Instead a watcher reads the channel's stdin, which sshd closes when
// the connection drops (blk killed, network cut) and which blk closes on
// cancel; at EOF it kills the process group sshd made for this session:
// the command, its children, the wrapper and itself. That group is the
// session's alone because sshd (OpenSSH, Dropbear) calls setsid for every
// session. ($1 is how many bytes of stdin belong to the command: it gets
// those, then EOF.)
const remoteWrapper = `n=$1; shift
exec 3<&0 </dev/null
in=
if [ "$n" -gt 0 ]; then in=$(dd bs=1 count="$n" <&3 2>/dev/null; echo .); in=${in%.}; fi
{ while read -r _; do :; done; kill -9 0; } <&3 >/dev/null 2>&1 &
w=$!
printf %s "$in" | "$@" 3<&- &
wait $!
s=$?
kill $w 2>/dev/null
exit $s`

func (s *SSH) Run(ctx context.Context, cmd Cmd) (Result, error) {
	fail := func(err error) (Result, error) {
		return Result{}, NewError(s.cfg.Name, cmd, -1, nil, err)
	}
	var input []byte
	if cmd.Stdin != nil {
		b, err := io.ReadAll(cmd.Stdin)
		if err != nil {
			return fail(fmt.Errorf("read stdin: %w", err))
		}
		if bytes.IndexByte(b, 0) >= 0 {
			return fail(errors.New("stdin holds a NUL byte, which the remote shell cannot pass on"))
		}
		input = b
	}
	sess, err := s.session(ctx)
	if err != nil {
		return Result{}, err // says host and address; the command never started
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	if cmd.Output != nil {
		sess.Stdout = io.MultiWriter(&stdout, cmd.Output)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		return fail(err)
	}
	// The remote side has only a shell: quote every word so each argument
	// arrives literal, whatever it holds.
	argv := append([]string{"sh", "-c", remoteWrapper, "blk-run", strconv.Itoa(len(input))}, cmd.Args...)
	// Start waits for the server's answer, which a dead network never
	// sends: it runs beside the select on ctx, like Wait.
	started, done := make(chan error, 1), make(chan error, 1)
	go func() {
		serr := sess.Start(strings.Join(Env, " ") + " " + Quote(argv))
		started <- serr
		if serr != nil {
			return
		}
		if _, werr := stdin.Write(input); werr != nil {
			done <- werr
			return
		}
		done <- sess.Wait()
	}()
	select {
	case err = <-started:
		if err != nil {
			return fail(err)
		}
		select {
		case err = <-done:
			stdin.Close()
		case <-ctx.Done():
			return fail(kill(ctx, sess, stdin))
		}
	case <-ctx.Done():
		return fail(kill(ctx, sess, stdin))
	}
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if err == nil {
		return res, nil
	}
	e := NewError(s.cfg.Name, cmd, -1, stderr.Bytes(), err)
	var exitErr *ssh.ExitError
	if errors.As(err, &exitErr) {
		e.ExitCode, e.Err = exitErr.ExitStatus(), nil
		if e.ExitCode == 127 {
			e.Err = ErrNotFound
		}
	} else {
		e.Err = fmt.Errorf("%w (%v)", ErrConnLost, err)
	}
	return res, e
}

// kill ends a command blk no longer waits for. The signal is enough with
// OpenSSH 7.9 and later; EOF on stdin makes the wrapper kill the command on
// any server. Neither is waited for: Ctrl-C and --timeout act at once.
func kill(ctx context.Context, sess *ssh.Session, stdin io.Closer) error {
	_ = sess.Signal(ssh.SIGKILL)
	stdin.Close()
	sess.Close()
	return ctx.Err()
}

// session opens a channel for one command. A connection that dropped under
// blk (the host rebooted, a network blip) is dialled once more, so cleanup
// can still undo what was done instead of failing every step.
func (s *SSH) session(ctx context.Context) (*ssh.Session, error) {
	for retried := false; ; retried = true {
		c, err := s.Client(ctx)
		if err != nil {
			return nil, err
		}
		sess, err := newSession(ctx, c)
		if err == nil {
			return sess, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ssh %s (%s): open session: %w", s.cfg.Name, s.addr(), ctx.Err())
		}
		var refused *ssh.OpenChannelError
		if retried || errors.As(err, &refused) {
			return nil, fmt.Errorf("ssh %s (%s): open session: %w", s.cfg.Name, s.addr(), err)
		}
		s.drop(c)
	}
}

// newSession opens a channel, or gives up when ctx ends: the server's
// answer may never come over a dead network.
func newSession(ctx context.Context, c *ssh.Client) (*ssh.Session, error) {
	type opened struct {
		sess *ssh.Session
		err  error
	}
	ch := make(chan opened, 1)
	go func() {
		sess, err := c.NewSession()
		ch <- opened{sess, err}
	}()
	select {
	case o := <-ch:
		return o.sess, o.err
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.sess != nil {
				o.sess.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// knownAlgorithms lists the host key algorithms known_hosts holds for addr,
// plain or hashed.
func knownAlgorithms(path, addr string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	host := knownhosts.Normalize(addr)
	var algos []string
	for len(data) > 0 {
		marker, hosts, key, _, rest, err := ssh.ParseKnownHosts(data)
		if err != nil {
			// One bad line must not hide the others.
			_, rest, _ = bytes.Cut(data, []byte("\n"))
			data = rest
			continue
		}
		data = rest
		if marker != "" {
			continue // revoked keys and CAs are no key of this host
		}
		for _, h := range hosts {
			if h == host || hashedHostIs(h, host) {
				if key.Type() == ssh.KeyAlgoRSA {
					// The key type is not the signature algorithm: OpenSSH
					// 8.8 and later refuse SHA-1 signatures (ssh-rsa).
					algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
				}
				algos = append(algos, key.Type())
				break
			}
		}
	}
	return algos
}

// hashedHostIs reports whether a hashed known_hosts entry (|1|salt|hash, as
// HashKnownHosts yes writes them) names host: OpenSSH stores
// HMAC-SHA1(key=salt, host).
func hashedHostIs(entry, host string) bool {
	rest, ok := strings.CutPrefix(entry, "|1|")
	if !ok {
		return false
	}
	salt64, hash64, ok := strings.Cut(rest, "|")
	if !ok {
		return false
	}
	salt, err1 := base64.StdEncoding.DecodeString(salt64)
	hash, err2 := base64.StdEncoding.DecodeString(hash64)
	if err1 != nil || err2 != nil {
		return false
	}
	mac := hmac.New(sha1.New, salt)
	mac.Write([]byte(host))
	return hmac.Equal(mac.Sum(nil), hash)
}

func expandHome(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return p
}
