package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/blk-project/blk/volume"
	"github.com/spf13/cobra"
)

// Exit codes, a contract with scripts (DESIGN §2).
const (
	ExitOK          = 0
	ExitFailure     = 1 // an external step failed
	ExitUsage       = 2 // bad usage or input
	ExitConflict    = 3 // state does not allow it, or another operation holds it
	ExitNotFound    = 4
	ExitPartial     = 5 // some of several succeeded
	ExitInterrupted = 130
)

const exitStatus = `
EXIT STATUS
  0    success
  1    an external step failed (the error names host, command and stderr)
  2    bad usage or input; nothing was changed
  3    conflict: the volume's state does not allow it, or another operation holds it
  4    not found
  5    partial: a multi-volume command where some succeeded
  130  interrupted`

// usageError marks errors of flags and arguments, which print usage hints.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// Main runs blk with os.Args and returns the exit code.
func Main() int {
	return Run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

// Run runs blk with args and the given streams; tests call it directly.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return run(ctx, &App{In: stdin, Out: stdout, Err: stderr}, args)
}

func run(ctx context.Context, app *App, args []string) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	stdin, stdout, stderr := app.In, app.Out, app.Err
	root := newRootCmd(app)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	app.close()
	if err == nil {
		return ExitOK
	}
	code := exitCode(err)
	if ctx.Err() != nil && !errors.Is(err, volume.ErrInvalid) {
		code = ExitInterrupted
	}
	fmt.Fprintf(stderr, "blk: error: %s\n", oneLine(err))
	if h := hint(err, code); h != "" {
		fmt.Fprintf(stderr, "blk: hint: %s\n", h)
	}
	return code
}

func exitCode(err error) int {
	var ue usageError
	switch {
	case errors.As(err, &ue), errors.Is(err, volume.ErrInvalid):
		return ExitUsage
	case errors.Is(err, volume.ErrPartial):
		return ExitPartial
	case errors.Is(err, volume.ErrConflict), errors.Is(err, volume.ErrNoSpace):
		return ExitConflict
	case errors.Is(err, volume.ErrNotFound):
		return ExitNotFound
	default:
		return ExitFailure
	}
}

func hint(err error, code int) string {
	var ue usageError
	if errors.As(err, &ue) {
		return "see 'blk " + ue.cmd() + " --help'"
	}
	return ""
}

func (e usageError) cmd() string {
	var c *cmdUsageError
	if errors.As(e.error, &c) {
		return c.path
	}
	return ""
}

type cmdUsageError struct {
	path string
	err  error
}

func (e *cmdUsageError) Error() string { return e.err.Error() }
func (e *cmdUsageError) Unwrap() error { return e.err }

// oneLine keeps an error to one line for the terminal; joined errors are
// separated by "; ".
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

func flagError(cmd *cobra.Command, err error) error {
	return usageError{&cmdUsageError{path: strings.TrimPrefix(cmd.CommandPath(), "blk "), err: err}}
}
