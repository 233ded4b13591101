package volume

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/lvm"
	"github.com/blk-project/blk/state"
	"github.com/google/uuid"
)

// Volume is what blk reports about a volume.
type Volume = state.Volume

// Service runs the workflows against one configuration, state file and set
// of hosts.
type Service struct {
	Config *config.Config
	State  *state.Store
	Hosts  *Hosts
	// Progress, when set, is called for long work (wipe) and returns where to
	// report bytes done; nil means no progress display.
	Progress func(label string, total int64) Progress

	// testHookUUID, when set, is the UUID the next create uses.
	testHookUUID string
}

func (s *Service) newUUID() string {
	if s.testHookUUID != "" {
		return s.testHookUUID
	}
	return uuid.NewString()
}

// Progress receives bytes done of long work.
type Progress interface {
	Add(n int64)
	Done()
}

type noProgress struct{}

func (noProgress) Add(int64) {}
func (noProgress) Done()     {}

func (s *Service) progress(label string, total int64) Progress {
	if s.Progress == nil {
		return noProgress{}
	}
	return s.Progress(label, total)
}

func (s *Service) backend(name string) (string, config.Backend, error) {
	if name == "" {
		name = s.Config.Defaults.Backend
		if name == "" {
			if len(s.Config.Backends) != 1 {
				return "", config.Backend{}, invalid("no --backend given and no defaults.backend configured")
			}
			for n := range s.Config.Backends {
				name = n
			}
		}
	}
	b, ok := s.Config.Backends[name]
	if !ok {
		return "", b, invalid("backend %q is not configured (configured: %s)", Truncate(name), strings.Join(slices.Sorted(maps.Keys(s.Config.Backends)), ", "))
	}
	return name, b, nil
}

func (s *Service) lvm(ctx context.Context, b config.Backend) (lvm.LVM, error) {
	r, err := s.Hosts.Runner(b.Host)
	if err != nil {
		return lvm.LVM{}, err
	}
	return lvm.LVM{Run: r, VG: b.VG}, nil
}

// lvName is the LV behind a volume: named by UUID, as Cinder does, so a
// rename never touches the storage.
func lvName(uuid string) string { return "volume-" + uuid }

// Show finds one volume by name or UUID.
func (s *Service) Show(ctx context.Context, ref string) (Volume, error) {
	return s.State.Volume(ctx, ref)
}

// ListOptions filter List.
type ListOptions = state.VolumeFilter

func (s *Service) List(ctx context.Context, o ListOptions) ([]Volume, error) {
	return s.State.ListVolumes(ctx, o)
}
