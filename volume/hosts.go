package volume

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
)

// Hosts hands out one runner per configured host, made on first use, so
// one invocation opens at most one SSH connection to each host.
type Hosts struct {
	cfg    *config.Config
	log    *slog.Logger
	dryRun io.Writer // non-nil: print mutating commands instead of running them

	mu      sync.Mutex
	runners map[string]exec.Runner
	hvs     map[string]hypervisor.Hypervisor
	rawHVs  map[string]hypervisor.Hypervisor // unwrapped, to see a dead connection
	raw     []exec.Runner                    // unwrapped, to count connections
	dryMu   sync.Mutex
	// New makes the runner for a host; tests replace it.
	New func(name string, h config.Host) exec.Runner
	// NewHypervisor connects to libvirt on a host; tests replace it.
	NewHypervisor func(ctx context.Context, name string, r exec.Runner) (hypervisor.Hypervisor, error)
}

// NewHosts prepares runners for cfg's hosts. With dryRun set, commands that
// change something are printed there and skipped.
func NewHosts(cfg *config.Config, log *slog.Logger, dryRun io.Writer) *Hosts {
	return &Hosts{cfg: cfg, log: log, dryRun: dryRun, runners: map[string]exec.Runner{},
		hvs: map[string]hypervisor.Hypervisor{}, rawHVs: map[string]hypervisor.Hypervisor{}, New: newRunner, NewHypervisor: dialLibvirt}
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
	hs.raw = append(hs.raw, r)
	if hs.log != nil {
		r = exec.Logged{Runner: r, Log: hs.log}
	}
	// Inside DryRun: a command it skips never ran, so it is no kill point.
	r = faultRunner(r)
	if hs.dryRun != nil {
		r = exec.NewDryRun(r, hs.dryRun, &hs.dryMu)
	}
	hs.runners[name] = r
	return r, nil
}

func dialLibvirt(ctx context.Context, name string, r exec.Runner) (hypervisor.Hypervisor, error) {
	return hypervisor.Dial(ctx, name, r.DialUnix)
}

// Hypervisor returns the libvirt connection of the named host, made on first
// use through the host's runner (so over its one SSH connection).
func (hs *Hosts) Hypervisor(ctx context.Context, name string) (hypervisor.Hypervisor, error) {
	r, err := hs.Runner(name)
	if err != nil {
		return nil, err
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if h, ok := hs.hvs[name]; ok {
		// A connection given up on (a call outlived its context) is dialled
		// again: the undo of an interrupted attach still has to unplug.
		if d, ok := hs.rawHVs[name].(interface{ Dead() bool }); !ok || !d.Dead() {
			return h, nil
		}
	}
	h, err := hs.NewHypervisor(ctx, name, r)
	if err != nil {
		return nil, err
	}
	hs.rawHVs[name] = h
	h = faultHypervisor(h, name)
	if hs.dryRun != nil {
		h = hypervisor.NewDryRun(h, name, hs.dryRun, &hs.dryMu)
	}
	hs.hvs[name] = h
	return h, nil
}

// DryRun reports whether changes are printed and skipped.
func (hs *Hosts) DryRun() bool { return hs.dryRun != nil }

// Close ends every connection.
func (hs *Hosts) Close() error {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, h := range hs.hvs {
		h.Close()
	}
	for _, r := range hs.runners {
		r.Close()
	}
	if hs.log != nil {
		for _, r := range hs.raw {
			if s, ok := r.(*exec.SSH); ok {
				hs.log.Debug("ssh", "host", s.Host(), "connections", s.Dials())
			}
		}
	}
	return nil
}

// run is a helper for commands whose output only matters when they fail.
func run(ctx context.Context, r exec.Runner, mutates bool, args ...string) (exec.Result, error) {
	return r.Run(ctx, exec.Cmd{Args: args, Mutates: mutates})
}
