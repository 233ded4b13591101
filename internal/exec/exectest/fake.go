// Package exectest is a scripted Runner for unit tests: each expected
// command is listed with its exact argv and what it answers. A command
// nobody expected fails the test, and so does an expectation never used.
// Where order matters, InOrder says so.
package exectest

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/blk-project/blk/internal/exec"
)

type call struct {
	args     []string
	stdout   string
	stderr   string
	exitCode int
	used     bool
	ranAt    int // 1-based position among the commands run
}

// Fake is a Runner that answers from a script. Expectations match by argv,
// in any order, unless InOrder ties some together.
type Fake struct {
	t      testing.TB
	host   string
	mu     sync.Mutex
	calls  []*call
	ran    int
	orders [][][]string
	// Stdins records what each command was fed, by argv.
	Stdins  map[string]string
	handler func(args []string) (stdout, stderr string, code int, ok bool)
}

// Handle answers commands no expectation matched, for tests where argv
// holds values the test cannot know (a random UUID): fn returns ok=false
// for commands it does not know, which then fail the test as unexpected.
func (f *Fake) Handle(fn func(args []string) (stdout, stderr string, code int, ok bool)) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handler = fn
	return f
}

// New returns a Fake for host; unused expectations fail t at cleanup.
func New(t testing.TB, host string) *Fake {
	f := &Fake{t: t, host: host, Stdins: map[string]string{}}
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.calls {
			if !c.used {
				t.Errorf("%s: expected command never ran: %s", host, exec.Quote(c.args))
			}
		}
		for _, order := range f.orders {
			f.checkOrder(order)
		}
	})
	return f
}

// InOrder requires that the commands with these argvs ran, each first
// time in this order (AddLUN before Bind: an initiator must never be let
// in to a target with no LUN). They still need their own Expect, or a
// Handle that answers them.
func (f *Fake) InOrder(argvs ...[]string) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.orders = append(f.orders, argvs)
	return f
}

func (f *Fake) checkOrder(order [][]string) {
	last := 0
	for _, argv := range order {
		at := 0
		for _, c := range f.calls {
			if c.used && slices.Equal(c.args, argv) && (at == 0 || c.ranAt < at) {
				at = c.ranAt
			}
		}
		switch {
		case at == 0:
			f.t.Errorf("%s: command never ran: %s", f.host, exec.Quote(argv))
		case at < last:
			f.t.Errorf("%s: ran out of order, too early: %s", f.host, exec.Quote(argv))
		default:
			last = at
		}
	}
}

// Expect adds a command that succeeds printing stdout.
func (f *Fake) Expect(stdout string, args ...string) *Fake {
	return f.ExpectFail(0, stdout, "", args...)
}

// ExpectFail adds a command that exits with code and prints stderr.
func (f *Fake) ExpectFail(code int, stdout, stderr string, args ...string) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, &call{args: args, stdout: stdout, stderr: stderr, exitCode: code})
	return f
}

func (f *Fake) Host() string { return f.host }
func (f *Fake) Close() error { return nil }

func (f *Fake) DialUnix(context.Context, string) (net.Conn, error) {
	return nil, errors.New("exectest: the fake runner has no sockets")
}

func (f *Fake) Run(ctx context.Context, cmd exec.Cmd) (exec.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	want := strings.Join(cmd.Args, "\x00")
	for _, c := range f.calls {
		if c.used || strings.Join(c.args, "\x00") != want {
			continue
		}
		f.ran++
		c.used, c.ranAt = true, f.ran
		return f.answer(c, cmd)
	}
	if f.handler != nil {
		if stdout, stderr, code, ok := f.handler(cmd.Args); ok {
			f.ran++
			c := &call{args: cmd.Args, stdout: stdout, stderr: stderr, exitCode: code, used: true, ranAt: f.ran}
			f.calls = append(f.calls, c)
			return f.answer(c, cmd)
		}
	}
	f.t.Errorf("%s: unexpected command: %s", f.host, exec.Quote(cmd.Args))
	return exec.Result{}, exec.NewError(f.host, cmd, 1, []byte("unexpected command in test"), nil)
}

func (f *Fake) answer(c *call, cmd exec.Cmd) (exec.Result, error) {
	if cmd.Stdin != nil {
		b, _ := io.ReadAll(cmd.Stdin)
		f.Stdins[exec.Quote(cmd.Args)] = string(b)
	}
	if cmd.Output != nil {
		io.WriteString(cmd.Output, c.stdout)
	}
	res := exec.Result{Stdout: []byte(c.stdout), Stderr: []byte(c.stderr)}
	if c.exitCode == 0 {
		return res, nil
	}
	var cause error
	if c.exitCode == 127 {
		cause = exec.ErrNotFound
	}
	// Built as the real runners build theirs: secrets masked in argv and
	// in what the tool printed.
	return res, exec.NewError(f.host, cmd, c.exitCode, []byte(c.stderr), cause)
}
