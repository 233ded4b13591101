package volume

import (
	"context"
	"fmt"
	"maps"
	"slices"
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
	// Thin provisioning, where the backend has it (a thin pool, or an
	// export's sparse files): what is promised, and what placement may
	// still promise, ratio × size − provisioned.
	ProvisionedBytes         int64   `json:"provisioned_bytes,omitempty" yaml:"provisioned_bytes,omitempty"`
	MaxOverSubscriptionRatio float64 `json:"max_over_subscription_ratio,omitempty" yaml:"max_over_subscription_ratio,omitempty"`
	VirtualFreeBytes         int64   `json:"virtual_free_bytes,omitempty" yaml:"virtual_free_bytes,omitempty"`
	// UsedPercent is the thin pool's data use, or the export's use;
	// MetadataPercent the thin pool's metadata use.
	UsedPercent     float64 `json:"used_percent,omitempty" yaml:"used_percent,omitempty"`
	MetadataPercent float64 `json:"metadata_percent,omitempty" yaml:"metadata_percent,omitempty"`
	VolumeCount     int     `json:"volume_count" yaml:"volume_count"`
	Error           string  `json:"error,omitempty" yaml:"error,omitempty"`
}

// Backends reports every configured backend, asking the hosts in
// parallel. A backend whose host fails is reported with its error, and the
// error is returned too, so a script sees it in the exit code.
func (s *Service) Backends(ctx context.Context) ([]BackendInfo, error) {
	return s.backendInfos(ctx, slices.Sorted(maps.Keys(s.Config.Backends)))
}

// backendInfos reads the named backends, at most DefaultParallel at once.
func (s *Service) backendInfos(ctx context.Context, names []string) ([]BackendInfo, error) {
	usage, err := s.State.BackendUsage(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]BackendInfo, len(names))
	for i, n := range names {
		b := s.Config.Backends[n]
		out[i] = BackendInfo{Name: n, Type: b.Type, Host: b.Host, VG: b.VG, ThinPool: b.ThinPool,
			AllocatedBytes: usage[n].AllocatedBytes, VolumeCount: usage[n].Volumes}
	}
	errs := each(ctx, len(names), 0, func(i int) error {
		n := names[i]
		p, err := s.provider(n, s.Config.Backends[n])
		if err == nil {
			err = p.fill(ctx, &out[i])
		}
		if err != nil {
			out[i].Error = err.Error()
			return fmt.Errorf("backend %q: %w", n, err)
		}
		return nil
	})
	return out, firstError(errs)
}

// thinCapacity fills in what thin provisioning may still promise on total
// bytes of which provisioned are promised.
func thinCapacity(info *BackendInfo, ratio float64, total, provisioned int64) {
	info.ProvisionedBytes, info.MaxOverSubscriptionRatio = provisioned, ratio
	info.VirtualFreeBytes = int64(ratio*float64(total)) - provisioned
}

func (s *Service) fillLVM(ctx context.Context, info *BackendInfo) error {
	b := s.Config.Backends[info.Name]
	l, err := s.lvm(ctx, b)
	if err != nil {
		return err
	}
	vg, err := l.Group(ctx)
	if err != nil {
		return err
	}
	info.SizeBytes, info.FreeBytes = vg.SizeBytes, vg.FreeBytes
	if info.ThinPool != "" {
		pool, err := l.ThinPool(ctx, info.ThinPool)
		if err != nil {
			return fmt.Errorf("thin pool: %w", err)
		}
		info.PoolSizeBytes = pool.SizeBytes
		info.PoolUsedBytes = int64(float64(pool.SizeBytes) * pool.DataPercent / 100)
		info.UsedPercent, info.MetadataPercent = pool.DataPercent, pool.MetadataPercent
		thinCapacity(info, b.OverSubscription(), pool.SizeBytes, pool.ProvisionedBytes)
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
