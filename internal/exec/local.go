package exec

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	osexec "os/exec"
	"syscall"
)

// Local runs commands on this machine.
type Local struct{ Name string }

func (l *Local) Host() string { return l.Name }
func (l *Local) Close() error { return nil }

func (l *Local) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

func (l *Local) Run(ctx context.Context, cmd Cmd) (Result, error) {
	var stdout, stderr bytes.Buffer
	c := osexec.CommandContext(ctx, cmd.Args[0], cmd.Args[1:]...)
	c.Env = append(os.Environ(), Env...)
	c.Stdin = cmd.Stdin
	c.Stdout = &stdout
	if cmd.Output != nil {
		c.Stdout = io.MultiWriter(&stdout, cmd.Output)
	}
	c.Stderr = &stderr
	// A timeout must kill the whole child, not leave a grandchild holding
	// the device: run it in its own process group and kill that.
	// And a blk killed with SIGKILL must not leave a tgtadm or iscsiadm
	// running on its own, racing whoever cleans up after it.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	err := c.Run()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if err == nil {
		return res, nil
	}
	e := NewError(l.Name, cmd, -1, stderr.Bytes(), err)
	var exitErr *osexec.ExitError
	switch {
	case ctx.Err() != nil:
		e.Err = ctx.Err()
	case errors.Is(err, osexec.ErrNotFound):
		e.Err = ErrNotFound
	case errors.As(err, &exitErr):
		e.ExitCode = exitErr.ExitCode()
		e.Err = nil
	}
	return res, e
}
