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
	hvs     map[string]*hvSlot
	raw     []exec.Runner // unwrapped, to count connections
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
		hvs: map[string]*hvSlot{}, New: newRunner, NewHypervisor: dialLibvirt}
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

// hvSlot is one host's libvirt connection. Its own lock is held while it
// is dialled, so hosts are dialled in parallel and one host only once.
type hvSlot struct {
	mu  sync.Mutex
	h   hypervisor.Hypervisor
	raw hypervisor.Hypervisor // unwrapped, to see a dead connection
}

// Hypervisor returns the libvirt connection of the named host, made on first
// use through the host's runner (so over its one SSH connection).
func (hs *Hosts) Hypervisor(ctx context.Context, name string) (hypervisor.Hypervisor, error) {
	r, err := hs.Runner(name)
	if err != nil {
		return nil, err
	}
	hs.mu.Lock()
	slot := hs.hvs[name]
	if slot == nil {
		slot = &hvSlot{}
		hs.hvs[name] = slot
	}
	hs.mu.Unlock()
	slot.mu.Lock()
	defer slot.mu.Unlock()
	if slot.h != nil {
		// A connection given up on (a call outlived its context) is dialled
		// again: the undo of an interrupted attach still has to unplug.
		if d, ok := slot.raw.(interface{ Dead() bool }); !ok || !d.Dead() {
			return slot.h, nil
		}
	}
	h, err := hs.NewHypervisor(ctx, name, r)
	if err != nil {
		return nil, err
	}
	slot.raw = h
	h = faultHypervisor(h, name)
	if hs.dryRun != nil {
		h = hypervisor.NewDryRun(h, name, hs.dryRun, &hs.dryMu)
	}
	slot.h = h
	return h, nil
}

// DryRun reports whether changes are printed and skipped.
func (hs *Hosts) DryRun() bool { return hs.dryRun != nil }

// Close ends every connection.
func (hs *Hosts) Close() error {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, slot := range hs.hvs {
		slot.mu.Lock()
		if slot.h != nil {
			slot.h.Close()
		}
		slot.mu.Unlock()
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

// DefaultParallel bounds how many hosts one blk run talks to at once. It
// is high enough that 100 hosts cost about as long as the slowest one
// (bench/hosts.sh, tools that take 0.5 s: 32 at once made host check of
// 100 hosts take 4.5 times as long as of one, 128 at once 1.5 times), and
// low enough that the admin machine's open files (one TCP connection a
// host) and CPU (an SSH handshake a host, a few ms) stay bounded.
const DefaultParallel = 128

// Each runs fn for each of names, at most limit at once (0:
// DefaultParallel), and returns fn's errors in the order of names, so
// output built from them stays in a stable order. Names not started when
// ctx ends get its error.
func (hs *Hosts) Each(ctx context.Context, names []string, limit int, fn func(ctx context.Context, name string) error) []error {
	return each(ctx, len(names), limit, func(i int) error { return fn(ctx, names[i]) })
}

func each(ctx context.Context, n, limit int, fn func(i int) error) []error {
	if limit <= 0 {
		limit = DefaultParallel
	}
	errs := make([]error, n)
	slots := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		if err := ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errs
}
