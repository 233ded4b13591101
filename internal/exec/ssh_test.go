package exec

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
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
