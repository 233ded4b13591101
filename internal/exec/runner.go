// Package exec runs external commands on a host, locally or over SSH.
//
// Every command is an argv, never a shell string. Wrappers add behaviour
// without touching callers: Logged reports each call through slog, DryRun
// prints what would change and skips it.
package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
)

// Cmd is one external command.
type Cmd struct {
	Args []string
	// Stdin, when set, is streamed to the command.
	Stdin io.Reader
	// Output, when set, also receives stdout as the command prints it (a
	// progress meter); Result.Stdout still holds all of it.
	Output io.Writer
	// Mutates marks commands that change something; DryRun skips them.
	Mutates bool
	// Observes marks a read of what earlier commands of the same workflow
	// changed (a device link after a login). DryRun changed nothing, so it
	// answers such a read with empty output instead of running it.
	Observes bool
	// Secrets are masked wherever the command is shown: logs, errors, dry-run.
	Secrets []string
}

// Result is what a finished command printed.
type Result struct {
	Stdout []byte
	Stderr []byte
}

// Runner runs commands on one host.
type Runner interface {
	Host() string
	Run(ctx context.Context, cmd Cmd) (Result, error)
	// DialUnix connects to a unix socket on the host (libvirt's), over the
	// same SSH connection the commands use when the host is remote.
	DialUnix(ctx context.Context, path string) (net.Conn, error)
	Close() error
}

// ErrNotFound means the program does not exist on the host.
var ErrNotFound = errors.New("command not found")

// ErrConnLost means the connection to the host went while a command ran:
// the command may or may not have done its work, so whoever cleans up must
// look before acting.
var ErrConnLost = errors.New("connection lost before the command finished")

// Error is a command that ran (or tried to) and failed. It keeps what an
// operator needs on one line: where, what, how it ended and what it said.
type Error struct {
	Host     string
	Args     []string // already masked
	ExitCode int      // -1 when the command did not finish
	Stderr   string
	Err      error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", e.Host, Quote(e.Args))
	if e.ExitCode >= 0 {
		fmt.Fprintf(&b, ": exit status %d", e.ExitCode)
	} else if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if s := lastLines(e.Stderr); s != "" {
		fmt.Fprintf(&b, ": %s", s)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// NewError is the one way runners build an Error, so no runner can forget
// to mask: secrets are hidden in argv and in stderr, where tools such as
// tgtadm and iscsiadm repeat their arguments when they fail.
func NewError(host string, cmd Cmd, exitCode int, stderr []byte, err error) *Error {
	return &Error{Host: host, Args: Mask(cmd.Args, cmd.Secrets), ExitCode: exitCode,
		Stderr: maskWord(string(stderr), cmd.Secrets), Err: err}
}

// lastLines keeps stderr to one readable line: tools put the cause last.
func lastLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	var keep []string
	for i := len(lines) - 1; i >= 0 && len(keep) < 3; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			keep = append([]string{l}, keep...)
		}
	}
	return strings.Join(keep, "; ")
}

// Mask replaces every secret inside args with ***.
func Mask(args []string, secrets []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = maskWord(a, secrets)
	}
	return out
}

func maskWord(s string, secrets []string) string {
	// Longest first, so a secret that contains another is masked whole.
	secrets = slices.Clone(secrets)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "***")
		}
	}
	return s
}

// Quote renders argv as POSIX shell words, each one literal.
func Quote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = QuoteWord(a)
	}
	return strings.Join(q, " ")
}

// QuoteWord quotes one word for a POSIX shell, leaving plain words bare so
// logs stay readable.
func QuoteWord(s string) string {
	if s == "" {
		return "''"
	}
	plain := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,+%", r)) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ExitCode returns the exit status of a failed command, or -1.
func ExitCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.ExitCode
	}
	return -1
}

// Env is the environment every command runs with: stable messages to parse,
// and no fd-leak chatter from LVM when blk holds the state file open.
var Env = []string{"LC_ALL=C", "LVM_SUPPRESS_FD_WARNINGS=1"}
