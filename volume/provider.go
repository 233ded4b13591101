package volume

import (
	"context"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/state"
)

// provider is what one backend type does for the workflows: each workflow
// has one path, and asks the volume's provider for its storage steps.
type provider interface {
	// thin says how a volume of o is provisioned, or refuses o.
	thin(o CreateOptions) (bool, error)
	// make creates the volume's storage, or takes what a killed create of
	// it made, registering its undo on r; it returns the size really made
	// and the path on the storage host.
	make(ctx context.Context, r *reverter, v state.Volume) (size int64, path string, err error)
	// exists says whether the storage of v is there.
	exists(ctx context.Context, v state.Volume) (bool, error)
	// remove wipes (when asked) and removes the storage; already gone is
	// done.
	remove(ctx context.Context, v state.Volume, wipe bool) error
	// fill reads the backend's capacity into info.
	fill(ctx context.Context, info *BackendInfo) error
	// allocated is what the storage of v really takes, when the backend
	// can tell cheaply and the host answers.
	allocated(ctx context.Context, v state.Volume) (int64, bool)
	// connection is how the compute host will reach v.
	connection(v state.Volume, o AttachOptions) state.ConnectionInfo
	// connect makes the volume reachable on rec.Host and plugs it in,
	// registering each undo on r.
	connect(ctx context.Context, r *reverter, v state.Volume, rec *state.AttachmentRecord) error
	// grow makes the storage of v at least size bytes, unless it is
	// already, and returns its real size.
	grow(ctx context.Context, v state.Volume, size int64) (int64, error)
	// reveal makes the compute host of rec see the storage's new size.
	reveal(ctx context.Context, v state.Volume, rec state.AttachmentRecord, size int64) error
	// release are the detach steps after the disk is unplugged.
	release(ctx context.Context, rec state.AttachmentRecord) []detachStep
}

// detachStep is one idempotent step of a detach, named as recorded.
type detachStep struct {
	name string
	fn   func() error
}

// provider is the provider of the named backend.
func (s *Service) provider(name string, b config.Backend) (provider, error) {
	switch b.Type {
	case "lvm":
		return lvmProvider{s, name, b}, nil
	case "nfs":
		return nfsProvider{s, name, b}, nil
	}
	return nil, invalid("backend type %q is not supported", b.Type)
}
