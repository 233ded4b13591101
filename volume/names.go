package volume

import (
	"context"
	"slices"
	"sync"
)

// Instances lists the domains of the compute hosts, for shell completion:
// the hosts are asked at once, and one that fails or is slow is left out
// (ctx bounds the wait).
func (hs *Hosts) Instances(ctx context.Context) []string {
	var (
		mu    sync.Mutex
		names []string
		wg    sync.WaitGroup
	)
	for _, h := range hs.cfg.Compute {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hv, err := hs.Hypervisor(ctx, h)
			if err != nil {
				return
			}
			lister, ok := hv.(interface {
				Domains(context.Context) ([]string, error)
			})
			if !ok {
				return
			}
			if doms, err := lister.Domains(ctx); err == nil {
				mu.Lock()
				names = append(names, doms...)
				mu.Unlock()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(names)
	return slices.Compact(slices.Clone(names))
}
