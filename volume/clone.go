package volume

import (
	"context"
	"errors"
	"fmt"

	"github.com/blk-project/blk/internal/blockcopy"
	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/lvm"
	"github.com/blk-project/blk/state"
)

// cloneSource is what a volume create --from-snapshot or --from-volume
// copies: a snapshot, or a volume.
type cloneSource struct {
	vol     state.Volume    // the volume, or the snapshot's volume
	snap    *state.Snapshot // nil for a volume
	backend config.Backend
	size    int64 // bytes to copy
	inUse   bool  // a volume in use: copied quiesced
	warning string
}

// ref is what the new volume records as its source.
func (c *cloneSource) ref() string {
	if c.snap != nil {
		return "snapshot:" + c.snap.UUID
	}
	return "volume:" + c.vol.UUID
}

func (c *cloneSource) name() string {
	if c.snap != nil {
		return "snapshot " + c.snap.Name
	}
	return "volume " + c.vol.Name
}

// lv is the source's LV on an lvm backend.
func (c *cloneSource) lv() string {
	if c.snap != nil {
		return snapLVName(c.snap.UUID)
	}
	return lvName(c.vol.UUID)
}

// path is the source's device or file on its storage host.
func (c *cloneSource) path() string {
	if c.snap != nil {
		return c.snap.Path
	}
	return c.vol.Path
}

// fit fills what o leaves to the source: its backend, its thinness on that
// backend, and its size, which o may only grow.
func (c *cloneSource) fit(o *CreateOptions, size int64) (int64, error) {
	if o.Backend == "" {
		o.Backend = c.vol.Backend
	}
	if o.Backend == c.vol.Backend && c.vol.Thin && c.backend.Type == "lvm" && !o.Preallocate {
		o.Thin = true
	}
	if size == 0 {
		return c.size, nil
	}
	if size < c.size {
		return 0, invalid("--size %s is smaller than %s (%s): a copy cannot shrink", FormatSize(size), c.name(), FormatSize(c.size))
	}
	return size, nil
}

// resolveSource finds what o copies, and refuses what cannot be copied now.
func (s *Service) resolveSource(ctx context.Context, o CreateOptions) (*cloneSource, error) {
	var src cloneSource
	if o.FromSnapshot != "" {
		sn, err := s.State.Snapshot(ctx, o.FromSnapshot)
		if err != nil {
			return nil, err
		}
		if sn.Status != state.Available {
			return nil, &state.ConflictError{Kind: "snapshot", Volume: sn.Name, Status: sn.Status,
				Reason: "is " + sn.Status + ": only an available snapshot can be copied"}
		}
		if src.vol, err = s.State.Volume(ctx, sn.Volume); err != nil {
			return nil, err
		}
		src.snap, src.size = &sn, sn.SizeBytes
	} else {
		v, err := s.State.Volume(ctx, o.FromVolume)
		if err != nil {
			return nil, err
		}
		src.vol, src.size = v, v.SizeBytes
	}
	b, err := s.backendOf(src.vol)
	if err != nil {
		return nil, err
	}
	src.backend = b
	if src.snap == nil && b.Type == "nfs" && src.vol.Status == state.InUse {
		return nil, conflict("volume %q is in use: a volume on nfs backend %q is copied only when available "+
			"(a guest writing during the copy would tear it): detach it, or snapshot it first and create from the snapshot", src.vol.Name, src.vol.Backend)
	}
	return &src, nil
}

// makeVolume makes v's storage: empty, or from src. A thin volume from a
// thin source in the same pool is a writable thin snapshot of it, made at
// once with nothing copied; any other is a new volume and a streamed copy.
func (s *Service) makeVolume(ctx context.Context, r *reverter, p provider, b config.Backend, v state.Volume, src *cloneSource) (int64, string, error) {
	if src == nil {
		return p.make(ctx, r, v)
	}
	if src.snap == nil {
		h, err := s.holdVolume(ctx, r, "clone", src.vol)
		if err != nil {
			return 0, "", err
		}
		defer h.release(context.WithoutCancel(ctx), nil)
		src.inUse = h.orig == state.InUse
		if src.inUse && !s.instant(v, b, src) {
			return s.copyFromTemporarySnapshot(ctx, r, p, b, v, src, h)
		}
	} else {
		// The snapshot must stay while it is read: its delete waits.
		op, err := s.State.ClaimSnapshot(ctx, "clone", src.snap.UUID, []string{state.Available}, state.Available)
		if err != nil {
			return 0, "", err
		}
		defer op.End(context.WithoutCancel(ctx), nil)
	}
	if s.instant(v, b, src) {
		return s.thinClone(ctx, r, b, v, src)
	}
	made, path, err := p.make(ctx, r, v)
	if err != nil {
		return 0, "", err
	}
	return made, path, s.copyInto(ctx, src.backend.Host, src.path(), b, v, path, src.size)
}

// instant says whether v can be a thin snapshot of src.
func (s *Service) instant(v state.Volume, b config.Backend, src *cloneSource) bool {
	return b.Type == "lvm" && v.Thin && src.vol.Thin && src.vol.Backend == v.Backend
}

// thinClone makes v a thin snapshot of src, quiesced when src is a volume
// in use, grown to v's size when that is larger.
func (s *Service) thinClone(ctx context.Context, r *reverter, b config.Backend, v state.Volume, src *cloneSource) (int64, string, error) {
	l, err := s.lvm(ctx, b)
	if err != nil {
		return 0, "", err
	}
	var lv lvm.LV
	_, src.warning, err = s.quiesced(ctx, src.vol, src.inUse, QuiesceAuto, func() (err error) {
		lv, err = s.snapshotOf(ctx, r, l, b.ThinPool, src.lv(), src.size, true, lvName(v.UUID), []string{lvm.Tag, lvm.NameTag(v.Name), lvm.VolumeTag(v.UUID)})
		return err
	})
	if err != nil {
		return 0, "", err
	}
	if v.SizeBytes > lv.SizeBytes && lv.SizeBytes > 0 {
		if lv, err = l.Extend(ctx, lv.Name, v.SizeBytes); err != nil {
			return 0, "", err
		}
	}
	if lv.SizeBytes == 0 { // a dry run made nothing to read back
		lv.SizeBytes = v.SizeBytes
	}
	return lv.SizeBytes, lv.Path(), nil
}

// copyFromTemporarySnapshot copies an in-use LVM volume through a snapshot
// of it taken for the copy (quiesced as snapshot create's auto) and removed
// after it: the guest goes on writing to the volume meanwhile.
func (s *Service) copyFromTemporarySnapshot(ctx context.Context, r *reverter, p provider, b config.Backend, v state.Volume, src *cloneSource, h *hold) (int64, string, error) {
	l, err := s.lvm(ctx, src.backend)
	if err != nil {
		return 0, "", err
	}
	tmp := snapLVName(v.UUID) // named by the new volume: a rerun finds it
	var snap lvm.LV
	_, src.warning, err = s.quiesced(ctx, src.vol, true, QuiesceAuto, func() (err error) {
		snap, err = s.snapshotOf(ctx, r, l, src.backend.ThinPool, src.lv(), src.size, src.vol.Thin, tmp,
			[]string{lvm.Tag, lvm.VolumeTag(src.vol.UUID)})
		return err
	})
	if err != nil {
		return 0, "", err
	}
	// The snapshot holds the data now: the volume may be detached or
	// snapshotted again while the copy runs.
	if err = h.release(ctx, nil); err != nil {
		return 0, "", err
	}
	made, path, err := p.make(ctx, r, v)
	if err != nil {
		return 0, "", err
	}
	if err := s.copyInto(ctx, src.backend.Host, snap.Path(), b, v, path, src.size); err != nil {
		return 0, "", err
	}
	if err := l.Remove(ctx, tmp); err != nil {
		return 0, "", fmt.Errorf("remove the temporary snapshot: %w", err)
	}
	return made, path, nil
}

// copyInto streams size bytes of srcPath on srcHost into v's new storage at
// path. A new thin LV or volume file reads as zeros where nothing is
// written, so all-zero blocks are skipped there and take no space.
func (s *Service) copyInto(ctx context.Context, srcHost, srcPath string, b config.Backend, v state.Volume, path string, size int64) error {
	skipZeros := v.Thin || b.Type == "nfs"
	return s.copyData(ctx, "copy into "+v.Name, srcHost, srcPath, b.Host, path, size, skipZeros)
}

// copyData copies size bytes from srcPath on srcHost to dstPath on dstHost,
// both opened through the hosts' runners (locally, or over SFTP in the one
// SSH connection to each), with progress.
func (s *Service) copyData(ctx context.Context, label, srcHost, srcPath, dstHost, dstPath string, size int64, skipZeros bool) error {
	dr, err := s.Hosts.Runner(dstHost)
	if err != nil {
		return err
	}
	dst, err := exec.OpenFile(ctx, dr, dstPath, true)
	if err != nil {
		return err
	}
	defer dst.Close()
	if _, dry := dst.(exec.DiscardFile); dry {
		return nil
	}
	sr, err := s.Hosts.Runner(srcHost)
	if err != nil {
		return err
	}
	src, err := exec.OpenFile(ctx, sr, srcPath, false)
	if err != nil {
		return err
	}
	defer src.Close()
	p := s.progress(label, size)
	defer p.Done()
	if _, err := blockcopy.Copy(ctx, dst, src, size, blockcopy.Options{SkipZeros: skipZeros, Progress: p.Add}); err != nil {
		return fmt.Errorf("copy %s:%s to %s:%s: %w", srcHost, srcPath, dstHost, dstPath, err)
	}
	return errors.Join(dst.Close(), src.Close())
}
