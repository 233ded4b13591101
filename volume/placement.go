package volume

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/state"
)

// Candidate is one backend weighed for a new volume.
type Candidate struct {
	Backend string `json:"backend" yaml:"backend"`
	Type    string `json:"type" yaml:"type"`
	Host    string `json:"host" yaml:"host"`
	Fits    bool   `json:"fits" yaml:"fits"`
	// Reason says why it does not fit, or why it was skipped.
	Reason string `json:"reason,omitempty" yaml:"reason,omitempty"`
	// FreeBytes is what the weigher compares: free space for a thick
	// volume, virtual free (ratio × size − provisioned) for a thin one.
	FreeBytes int64 `json:"free_bytes" yaml:"free_bytes"`
	// Thin is how the volume would be provisioned there.
	Thin bool `json:"thin" yaml:"thin"`
	// Skipped: its capacity could not be read (host down, group gone).
	Skipped bool `json:"skipped,omitempty" yaml:"skipped,omitempty"`

	invalid bool // the request itself is wrong for this backend
}

// Placement is the backend chosen for a new volume, and every backend
// weighed, in name order.
type Placement struct {
	Backend    string      `json:"backend" yaml:"backend"`
	SizeBytes  int64       `json:"size_bytes" yaml:"size_bytes"`
	Candidates []Candidate `json:"candidates" yaml:"candidates"`
}

// Placing says whether a create of o chooses its backend by capacity: no
// --backend, and either --backend-type, defaults.backend: auto, or several
// backends and no default. An explicit name always wins.
func Placing(cfg *config.Config, o CreateOptions) (bool, error) {
	if o.BackendType != "" && o.BackendType != "lvm" && o.BackendType != "nfs" {
		return false, invalid("--backend-type %q: want lvm or nfs", Truncate(o.BackendType))
	}
	if o.Backend != "" {
		_, b, err := Backend(cfg, o.Backend)
		if err == nil && o.BackendType != "" && b.Type != o.BackendType {
			err = invalid("backend %q is %s, not %s: give --backend or --backend-type, not both", o.Backend, b.Type, o.BackendType)
		}
		return false, err
	}
	if o.BackendType != "" {
		for _, b := range cfg.Backends {
			if b.Type == o.BackendType {
				return true, nil
			}
		}
		return false, invalid("no %s backend is configured", o.BackendType)
	}
	if cfg.Defaults.Backend == config.AutoBackend {
		return true, nil
	}
	if cfg.Defaults.Backend == "" && len(cfg.Backends) > 1 {
		return true, nil
	}
	_, _, err := Backend(cfg, "")
	return false, err
}

// createBackend is the backend a create of o goes to.
func (s *Service) createBackend(ctx context.Context, o CreateOptions) (string, config.Backend, error) {
	placing, err := Placing(s.Config, o)
	if err != nil {
		return "", config.Backend{}, err
	}
	if !placing {
		return s.backend(o.Backend)
	}
	// A create killed part-way is finished where it began, whatever the
	// backends' free space says now.
	if old, verr := s.State.Volume(ctx, o.Name); verr == nil && old.Status == state.Creating {
		if b, ok := s.Config.Backends[old.Backend]; ok && (o.BackendType == "" || b.Type == o.BackendType) {
			return old.Backend, b, nil
		}
	}
	p, err := s.Place(ctx, o)
	if o.Placed != nil && p.Candidates != nil {
		o.Placed(p)
	}
	if err != nil {
		return "", config.Backend{}, err
	}
	return p.Backend, s.Config.Backends[p.Backend], nil
}

// Place chooses the backend for a new volume of o as cinder-scheduler's
// CapacityFilter and CapacityWeigher do: of the backends (of o's type)
// where it fits, the one with the most free space, virtual free space for
// a thin volume. A backend whose host does not answer is skipped and named.
func (s *Service) Place(ctx context.Context, o CreateOptions) (Placement, error) {
	size, err := o.Validate()
	if err != nil {
		return Placement{}, err
	}
	var names []string
	for _, n := range slices.Sorted(maps.Keys(s.Config.Backends)) {
		if o.BackendType == "" || s.Config.Backends[n].Type == o.BackendType {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return Placement{}, invalid("no %s backend is configured", o.BackendType)
	}
	// Backends the request does not suit (--thin where there is no thin
	// pool, --preallocate on lvm) are named, but their hosts not asked.
	pl := Placement{SizeBytes: size}
	var asked []string
	for _, n := range names {
		b := s.Config.Backends[n]
		c := Candidate{Backend: n, Type: b.Type, Host: b.Host}
		p, perr := s.provider(n, b)
		if perr == nil {
			c.Thin, perr = p.thin(o)
		}
		if perr != nil {
			c.Reason, c.invalid = perr.Error(), true
		} else {
			asked = append(asked, n)
		}
		pl.Candidates = append(pl.Candidates, c)
	}
	var infos []BackendInfo
	if len(asked) > 0 {
		// A backend that failed is in infos with its error: weigh skips it.
		if infos, err = s.backendInfos(ctx, asked); infos == nil {
			return pl, err
		}
	}
	best := -1
	for i := range pl.Candidates {
		c := &pl.Candidates[i]
		if c.invalid {
			continue
		}
		*c = weigh(infos[0], s.Config.Backends[c.Backend], size, c.Thin)
		infos = infos[1:]
		if c.Fits && (best < 0 || c.FreeBytes > pl.Candidates[best].FreeBytes) {
			best = i
		}
	}
	if best >= 0 {
		pl.Backend = pl.Candidates[best].Backend
		return pl, nil
	}
	return pl, noBackend(pl)
}

// noBackend explains why nothing fits: bad input when the request suits
// no backend, a failure when no host answered, a conflict (no space)
// otherwise.
func noBackend(pl Placement) error {
	var why []string
	invalids, failed := 0, 0
	for _, c := range pl.Candidates {
		why = append(why, c.Backend+": "+c.Reason)
		if c.invalid {
			invalids++
		}
		if c.Skipped {
			failed++
		}
	}
	msg := fmt.Sprintf("no backend fits a volume of %s (%s)", FormatSize(pl.SizeBytes), strings.Join(why, "; "))
	switch {
	case invalids == len(pl.Candidates):
		return invalid("%s", msg)
	case failed+invalids == len(pl.Candidates):
		return errors.New(msg)
	}
	return conflict("%s", msg)
}

// weigh is the capacity filter and weigher for one backend.
func weigh(info BackendInfo, b config.Backend, size int64, thin bool) Candidate {
	c := Candidate{Backend: info.Name, Type: info.Type, Host: info.Host, Thin: thin}
	if info.Error != "" {
		c.Reason, c.Skipped = "skipped: "+info.Error, true
		return c
	}
	no := func(format string, args ...any) Candidate {
		c.Reason = fmt.Sprintf(format, args...)
		return c
	}
	if !thin {
		c.FreeBytes = info.FreeBytes
		where := "volume group"
		if info.Type == "nfs" {
			where = "export"
		}
		if size > info.FreeBytes {
			return no("%s has %s free, %s needed", where, FormatSize(info.FreeBytes), FormatSize(size))
		}
		c.Fits = true
		return c
	}
	limit := float64(b.PoolUsageLimit())
	total := info.PoolSizeBytes
	where := "thin pool"
	if info.Type == "nfs" {
		total, where = info.SizeBytes, "export"
	}
	if total <= 0 {
		return no("%s reports no size", where)
	}
	c.FreeBytes = info.VirtualFreeBytes
	if info.UsedPercent >= limit {
		return no("%s %.1f%% used, at or over max_pool_usage_percent %d", where, info.UsedPercent, b.PoolUsageLimit())
	}
	if info.MetadataPercent >= limit {
		return no("%s metadata %.1f%% used, at or over max_pool_usage_percent %d", where, info.MetadataPercent, b.PoolUsageLimit())
	}
	if size > info.VirtualFreeBytes {
		return no("%s provisioned plus %s would pass %g × %s (max_over_subscription_ratio)",
			FormatSize(info.ProvisionedBytes), FormatSize(size), b.OverSubscription(), FormatSize(total))
	}
	c.Fits = true
	return c
}
