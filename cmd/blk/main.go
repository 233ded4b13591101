package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
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
	ExitDrift       = 6 // reconcile found state and hosts disagreeing (and did not fix it all)
	ExitInterrupted = 130
)

var exitCodes = []struct {
	code    int
	meaning string
}{
	{ExitOK, "success"},
	{ExitFailure, "an external step failed (the error names host, command and stderr), or --timeout ran out"},
	{ExitUsage, "bad usage or input; nothing was changed"},
	{ExitConflict, "conflict: the volume's state does not allow it, or another operation holds it"},
	{ExitNotFound, "not found"},
	{ExitPartial, "partial: a multi-volume command where some succeeded"},
	{ExitDrift, "drift: reconcile found the state file and the hosts disagreeing, and did not fix it all"},
	{ExitInterrupted, "interrupted (Ctrl-C, SIGTERM)"},
}

// exitStatus ends every command's help.
var exitStatus = func() string {
	s := "\nEXIT STATUS\n"
	for _, e := range exitCodes {
		s += fmt.Sprintf("  %-4d %s\n", e.code, e.meaning)
	}
	return strings.TrimSuffix(s, "\n")
}()

// usageError marks errors of commands, flags and arguments: exit 2, and a
// hint to the command's help.
type usageError struct {
	path  string // the command's full path, "blk volume create"
	usage string // for wrong arguments, the command's use line
	err   error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// Main runs blk with os.Args and returns the exit code.
func Main() int {
	return Run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

// Run runs blk with args and the given streams; tests call it directly.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return run(ctx, &App{In: stdin, Out: stdout, Err: stderr}, args)
}

func run(ctx context.Context, app *App, args []string) int {
	parent := ctx
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if app.tty == nil {
		app.tty = &ttys{in: isTerminal(app.In), out: isTerminal(app.Out), err: isTerminal(app.Err)}
	}
	app.stderr = &statusWriter{w: app.Err, tty: app.tty.err}
	// The first signal cancels, and the workflow undoes what it made (for
	// up to two minutes, a hung tool included). A second one must still
	// end blk at once: what is left is then what a kill leaves, which the
	// same command, run again, finishes or undoes.
	finished := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	defer func() { close(finished); wg.Wait() }() // before stop cancels ctx
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
			if parent.Err() == nil {
				stop()
				fmt.Fprintln(app.stderr, "blk: interrupted: undoing what this command made; interrupt again to stop at once (then rerun the command)")
			}
		case <-finished:
		}
	}()
	root := newRootCmd(app)
	root.SetArgs(args)
	root.SetIn(app.In)
	root.SetOut(app.Out)
	root.SetErr(app.Err)
	err := root.ExecuteContext(ctx)
	app.close()
	if err == nil {
		return ExitOK
	}
	code := exitCode(err)
	msg := oneLine(err)
	switch {
	case ctx.Err() != nil && !errors.Is(err, volume.ErrInvalid):
		code = ExitInterrupted
		msg = plain(msg, context.Canceled, "interrupted")
	case app.timedOut():
		code = ExitFailure
		msg = plain(msg, context.DeadlineExceeded, fmt.Sprintf("timed out after %s (--timeout)", app.Timeout))
	}
	app.stderr.clear()
	fmt.Fprintf(app.Err, "blk: error: %s\n", msg)
	if h := hint(err); h != "" {
		fmt.Fprintf(app.Err, "blk: hint: %s\n", h)
	}
	return code
}

// plain replaces the context package's words for why work stopped
// ("context canceled") with the operator's; an error that does not say it
// (a tool killed by the cancel) gets it in front.
func plain(msg string, cause error, say string) string {
	if strings.Contains(msg, cause.Error()) {
		return strings.ReplaceAll(msg, cause.Error(), say)
	}
	return say + ": " + msg
}

func exitCode(err error) int {
	var ue *usageError
	switch {
	case errors.As(err, &ue), errors.Is(err, volume.ErrInvalid):
		return ExitUsage
	case errors.Is(err, volume.ErrPartial):
		return ExitPartial
	case errors.Is(err, volume.ErrDrift):
		return ExitDrift
	case errors.Is(err, volume.ErrConflict), errors.Is(err, volume.ErrNoSpace):
		return ExitConflict
	case errors.Is(err, volume.ErrNotFound):
		return ExitNotFound
	default:
		return ExitFailure
	}
}

func hint(err error) string {
	var ue *usageError
	switch {
	case errors.As(err, &ue) && ue.usage != "":
		return "usage: " + ue.usage + "; see '" + ue.path + " --help'"
	case errors.As(err, &ue):
		return "see '" + ue.path + " --help'"
	}
	return ""
}

// oneLine keeps an error to one line for the terminal; joined errors are
// separated by "; ".
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

func flagError(cmd *cobra.Command, err error) error {
	return &usageError{path: cmd.CommandPath(), err: err}
}
