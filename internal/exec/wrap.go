package exec

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Logged reports every command through slog: host, masked argv, duration,
// exit code.
type Logged struct {
	Runner
	Log *slog.Logger
}

func (l Logged) Run(ctx context.Context, cmd Cmd) (Result, error) {
	start := time.Now()
	res, err := l.Runner.Run(ctx, cmd)
	code := 0
	if err != nil {
		code = ExitCode(err)
	}
	l.Log.Debug("exec", "host", l.Host(), "argv", Quote(Mask(cmd.Args, cmd.Secrets)),
		"duration", time.Since(start).Round(time.Millisecond), "exit", code)
	return res, err
}

// DryRun passes reads through and prints, instead of running, every
// command that would change something. A read of such a change (Observes)
// is skipped and answered with empty output.
type DryRun struct {
	Runner
	Out io.Writer
	mu  *sync.Mutex
}

func NewDryRun(r Runner, out io.Writer, mu *sync.Mutex) DryRun {
	return DryRun{Runner: r, Out: out, mu: mu}
}

func (d DryRun) Run(ctx context.Context, cmd Cmd) (Result, error) {
	if cmd.Observes {
		return Result{}, nil
	}
	if !cmd.Mutates {
		return d.Runner.Run(ctx, cmd)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.Out, "%s: %s\n", d.Host(), Quote(Mask(cmd.Args, cmd.Secrets)))
	return Result{}, nil
}
