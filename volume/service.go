package volume

import (
	"context"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/lvm"
	"github.com/blk-project/blk/state"
	"github.com/google/uuid"
)

// Volume is what blk reports about a volume. Its JSON and YAML field names
// are a contract with scripts.
type Volume struct {
	UUID           string      `json:"uuid" yaml:"uuid"`
	Name           string      `json:"name" yaml:"name"`
	Backend        string      `json:"backend" yaml:"backend"`
	SizeBytes      int64       `json:"size_bytes" yaml:"size_bytes"`
	Status         string      `json:"status" yaml:"status"`
	PreviousStatus string      `json:"previous_status" yaml:"previous_status"`
	Thin           bool        `json:"thin" yaml:"thin"`
	Source         string      `json:"source" yaml:"source"`
	Path           string      `json:"path" yaml:"path"`
	CreatedAt      time.Time   `json:"created_at" yaml:"created_at"`
	UpdatedAt      time.Time   `json:"updated_at" yaml:"updated_at"`
	LastError      string      `json:"last_error" yaml:"last_error"`
	SnapshotCount  int         `json:"snapshot_count" yaml:"snapshot_count"`
	Attachment     *Attachment `json:"attachment" yaml:"attachment"`
	// AllocatedBytes is what a sparse file volume really takes on its
	// export; show sets it, for NFS volumes only.
	AllocatedBytes *int64 `json:"allocated_bytes,omitempty" yaml:"allocated_bytes,omitempty"`
	// Warning is what a person should hear about how it was made (a copy of
	// an in-use volume whose guest could not be frozen); not output.
	Warning string `json:"-" yaml:"-"`
}

// Attachment is where a volume is plugged in.
type Attachment struct {
	Instance   string    `json:"instance" yaml:"instance"`
	Host       string    `json:"host" yaml:"host"`
	Device     string    `json:"device" yaml:"device"`
	DevicePath string    `json:"device_path" yaml:"device_path"`
	AttachedAt time.Time `json:"attached_at" yaml:"attached_at"`
}

func volumeOf(v state.Volume) Volume {
	out := Volume{UUID: v.UUID, Name: v.Name, Backend: v.Backend, SizeBytes: v.SizeBytes, Status: v.Status,
		PreviousStatus: v.PreviousStatus, Thin: v.Thin, Source: v.Source, Path: v.Path, CreatedAt: v.CreatedAt,
		UpdatedAt: v.UpdatedAt, LastError: v.LastError, SnapshotCount: v.SnapshotCount}
	if a := v.Attachment; a != nil {
		out.Attachment = &Attachment{Instance: a.Instance, Host: a.Host, Device: a.Device, DevicePath: a.DevicePath, AttachedAt: a.AttachedAt}
	}
	return out
}

// Service runs the workflows against one configuration, state file and set
// of hosts.
type Service struct {
	Config     *config.Config
	ConfigFile string // for messages
	State      Store
	Hosts      *Hosts
	// Progress, when set, is called for long work (wipe) and returns where to
	// report bytes done; nil means no progress display.
	Progress func(label string, total int64) Progress

	// testHookUUID, when set, is the UUID the next create uses.
	testHookUUID string
}

// NewService runs the workflows on st and hosts. When hosts make a dry run,
// so does the state: it is read, and changes are checked but not made.
// NewService builds the workflows; file names the configuration for
// messages ("built-in default" when there is none).
func NewService(cfg *config.Config, file string, st *state.Store, hosts *Hosts) *Service {
	var store Store = stateStore{st}
	if hosts.DryRun() {
		store = newDryStore(store)
	}
	return &Service{Config: cfg, ConfigFile: file, State: store, Hosts: hosts}
}

// backendOf is the configured backend of a volume. One that left the
// configuration is refused before anything runs: half a detach, run against
// a host that is no longer known, would leave the export and the volume
// stuck.
func (s *Service) backendOf(v state.Volume) (config.Backend, error) {
	b, ok := s.Config.Backends[v.Backend]
	if !ok {
		return b, invalid("volume %q is on backend %q, which the configuration (%s) no longer defines: put it back to manage the volume",
			v.Name, v.Backend, s.ConfigFile)
	}
	return b, nil
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
	return Backend(s.Config, name)
}

// Backend resolves a --backend (empty: the default) in cfg, so a command can
// refuse an unknown one before it opens anything.
func Backend(cfg *config.Config, name string) (string, config.Backend, error) {
	if name == "" {
		name = cfg.Defaults.Backend
		if name == "" {
			if len(cfg.Backends) != 1 {
				return "", config.Backend{}, invalid("no --backend given and no defaults.backend configured")
			}
			for n := range cfg.Backends {
				name = n
			}
		}
	}
	b, ok := cfg.Backends[name]
	if !ok {
		return "", b, invalid("backend %q is not configured (configured: %s)", Truncate(name), strings.Join(slices.Sorted(maps.Keys(cfg.Backends)), ", "))
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
	v, err := s.State.Volume(ctx, ref)
	out := volumeOf(v)
	if err != nil {
		return out, err
	}
	if b, ok := s.Config.Backends[v.Backend]; ok {
		if p, perr := s.provider(v.Backend, b); perr == nil {
			if n, known := p.allocated(ctx, v); known {
				out.AllocatedBytes = &n
			}
		}
	}
	return out, nil
}

// ListOptions filter List.
type ListOptions = state.VolumeFilter

func (s *Service) List(ctx context.Context, o ListOptions) ([]Volume, error) {
	rows, err := s.State.ListVolumes(ctx, o)
	if err != nil {
		return nil, err
	}
	vols := make([]Volume, len(rows))
	for i, v := range rows {
		vols[i] = volumeOf(v)
	}
	return vols, nil
}

// WriteListJSON streams the volumes o selects to w as the JSON array List
// would encode, fast enough for lists of many thousands.
func (s *Service) WriteListJSON(ctx context.Context, o ListOptions, w io.Writer) error {
	return s.State.WriteVolumesJSON(ctx, o, w)
}
