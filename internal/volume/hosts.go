package volume

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
)

// Hosts hands out one runner per configured host, made on first use, so
// one invocation opens at most one SSH connection to each host.
type Hosts struct {
	cfg     *config.Config
	log     *slog.Logger
	dryRun  io.Writer // non-nil: print mutating commands instead of running them
	timeout time.Duration

	mu      sync.Mutex
	runners map[string]exec.Runner
	dryMu   sync.Mutex
	// New makes the runner for a host; tests replace it.
	New func(name string, h config.Host) exec.Runner
}

// NewHosts prepares runners for cfg's hosts. With dryRun set, commands that
// change something are printed there and skipped.
func NewHosts(cfg *config.Config, log *slog.Logger, dryRun io.Writer) *Hosts {
	return &Hosts{cfg: cfg, log: log, dryRun: dryRun, runners: map[string]exec.Runner{}, New: newRunner}
}

func newRunner(name string, h config.Host) exec.Runner {
	if h.Local {
		return &exec.Local{Name: name}
	}
	return exec.NewSSH(exec.SSHConfig{Name: name, Address: h.Address, Port: h.Port, User: h.User,
		Identity: h.Identity, KnownHosts: h.KnownHosts})
}

// Runner returns the runner of the named host.
func (hs *Hosts) Runner(name string) (exec.Runner, error) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if r, ok := hs.runners[name]; ok {
		return r, nil
	}
	h, ok := hs.cfg.Hosts[name]
	if !ok {
		return nil, fmt.Errorf("host %q: %w", name, ErrNotFound)
	}
	var r exec.Runner = hs.New(name, h)
	if hs.log != nil {
		r = exec.Logged{Runner: r, Log: hs.log}
	}
	if hs.dryRun != nil {
		r = exec.NewDryRun(r, hs.dryRun, &hs.dryMu)
	}
	hs.runners[name] = r
	return r, nil
}

// DryRun reports whether mutating commands are skipped.
func (hs *Hosts) DryRun() bool { return hs.dryRun != nil }

// Close ends every connection.
func (hs *Hosts) Close() error {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, r := range hs.runners {
		r.Close()
	}
	return nil
}

// run is a helper for commands whose output only matters when they fail.
func run(ctx context.Context, r exec.Runner, mutates bool, args ...string) (exec.Result, error) {
	return r.Run(ctx, exec.Cmd{Args: args, Mutates: mutates})
}
