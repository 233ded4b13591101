package volume

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// BackendInfo is one backend's capacity, from LVM or the export's
// filesystem, and use, from state.
type BackendInfo struct {
	Name           string `json:"name" yaml:"name"`
	Type           string `json:"type" yaml:"type"`
	Host           string `json:"host" yaml:"host"`
	VG             string `json:"vg,omitempty" yaml:"vg,omitempty"`
	ThinPool       string `json:"thin_pool,omitempty" yaml:"thin_pool,omitempty"`
	SizeBytes      int64  `json:"size_bytes" yaml:"size_bytes"`
	FreeBytes      int64  `json:"free_bytes" yaml:"free_bytes"`
	AllocatedBytes int64  `json:"allocated_bytes" yaml:"allocated_bytes"`
	PoolSizeBytes  int64  `json:"pool_size_bytes,omitempty" yaml:"pool_size_bytes,omitempty"`
	PoolUsedBytes  int64  `json:"pool_used_bytes,omitempty" yaml:"pool_used_bytes,omitempty"`
	VolumeCount    int    `json:"volume_count" yaml:"volume_count"`
	Error          string `json:"error,omitempty" yaml:"error,omitempty"`
}

// Backends reports every configured backend, asking the hosts in
// parallel. A backend whose host fails is reported with its error, and the
// error is returned too, so a script sees it in the exit code.
func (s *Service) Backends(ctx context.Context) ([]BackendInfo, error) {
	usage, err := s.State.BackendUsage(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(s.Config.Backends))
	for n := range s.Config.Backends {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]BackendInfo, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		b := s.Config.Backends[n]
		out[i] = BackendInfo{Name: n, Type: b.Type, Host: b.Host, VG: b.VG, ThinPool: b.ThinPool,
			AllocatedBytes: usage[n].AllocatedBytes, VolumeCount: usage[n].Volumes}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := s.provider(n, b)
			if err == nil {
				err = p.fill(ctx, &out[i])
			}
			errs[i] = err
			if errs[i] != nil {
				out[i].Error = errs[i].Error()
				errs[i] = fmt.Errorf("backend %q: %w", n, errs[i])
			}
		}()
	}
	wg.Wait()
	return out, firstError(errs)
}

func (s *Service) fillLVM(ctx context.Context, info *BackendInfo) error {
	l, err := s.lvm(ctx, s.Config.Backends[info.Name])
	if err != nil {
		return err
	}
	vg, err := l.Group(ctx)
	if err != nil {
		return err
	}
	info.SizeBytes, info.FreeBytes = vg.SizeBytes, vg.FreeBytes
	if info.ThinPool != "" {
		pool, err := l.LV(ctx, info.ThinPool)
		if err != nil {
			return fmt.Errorf("thin pool: %w", err)
		}
		info.PoolSizeBytes = pool.SizeBytes
		info.PoolUsedBytes = int64(float64(pool.SizeBytes) * pool.DataPercent / 100)
	}
	return nil
}

func firstError(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
