package volume

import (
	"context"
	"errors"
	"fmt"

	"github.com/blk-project/blk/lvm"
	"github.com/blk-project/blk/state"
)

type CreateOptions struct {
	Name    string
	Size    string
	Backend string
	Thin    bool
}

// Validate checks the options alone, before anything is opened or run, and
// returns the size in bytes.
func (o CreateOptions) Validate() (int64, error) {
	if err := CheckName("volume", o.Name); err != nil {
		return 0, err
	}
	return ParseSize(o.Size)
}

// Create makes a volume: a row in creating, the LV, then available with the
// size LVM really made. A failure removes both; a create whose process died
// is finished by running the same command again.
func (s *Service) Create(ctx context.Context, o CreateOptions) (v Volume, err error) {
	size, err := o.Validate()
	if err != nil {
		return v, err
	}
	bname, b, err := s.backend(o.Backend)
	if err != nil {
		return v, err
	}
	if b.Type != "lvm" {
		return v, invalid("backend %q: %s volumes are not supported yet", bname, b.Type)
	}
	if o.Thin && b.ThinPool == "" {
		return v, invalid("backend %q has no thin_pool: --thin needs one", bname)
	}
	l, err := s.lvm(ctx, b)
	if err != nil {
		return v, err
	}
	v = Volume{UUID: s.newUUID(), Name: o.Name, Backend: bname, SizeBytes: size, Thin: o.Thin, Status: state.Creating}
	if s.Hosts.DryRun() {
		if _, err := s.State.Volume(ctx, o.Name); err == nil {
			return v, conflict("volume %q already exists", o.Name)
		}
		v.Path = "/dev/" + b.VG + "/" + lvName(v.UUID)
		return v, s.createLV(ctx, l, b.ThinPool, v)
	}
	op, err := s.State.InsertVolume(ctx, &v)
	if err != nil {
		var ce *state.ConflictError
		if !errors.As(err, &ce) {
			return v, err
		}
		// A create that died before finishing left its row in creating:
		// the same command, run again, finishes it.
		old, gerr := s.State.Volume(ctx, o.Name)
		if gerr != nil || old.Status != state.Creating || !s.State.Stale(ctx, old.UUID) ||
			old.Backend != bname || old.Thin != o.Thin || old.SizeBytes != size {
			return v, err
		}
		v = old
		if op, err = s.State.BeginOp(ctx, "create", v.UUID); err != nil {
			return v, err
		}
	}
	defer func() { err = errors.Join(err, op.End(ctx, err)) }()

	if err := s.createLV(ctx, l, b.ThinPool, v); err != nil {
		// Nothing of this volume may stay: no LV, no row in creating.
		cleanup := context.WithoutCancel(ctx)
		if _, gerr := l.LV(cleanup, lvName(v.UUID)); gerr == nil {
			if rerr := l.Remove(cleanup, lvName(v.UUID)); rerr != nil {
				return v, errors.Join(fmt.Errorf("create volume %q: %w", o.Name, err), fmt.Errorf("remove its half-made LV: %w", rerr))
			}
		}
		if derr := s.State.DeleteVolume(cleanup, v.UUID, state.Creating); derr != nil {
			return v, errors.Join(fmt.Errorf("create volume %q: %w", o.Name, err), derr)
		}
		return v, fmt.Errorf("create volume %q: %w", o.Name, err)
	}
	lv, err := l.LV(ctx, lvName(v.UUID))
	if err != nil {
		return v, fmt.Errorf("create volume %q: read back: %w", o.Name, err)
	}
	return s.State.MoveVolume(ctx, v.UUID, state.Move{From: []string{state.Creating}, To: state.Available,
		SizeBytes: lv.SizeBytes, Path: lv.Path()})
}

// createLV makes the volume's LV unless a previous run already did.
func (s *Service) createLV(ctx context.Context, l lvm.LVM, pool string, v Volume) error {
	if _, err := l.LV(ctx, lvName(v.UUID)); err == nil {
		return nil
	} else if !errors.Is(err, lvm.ErrNotFound) {
		return err
	}
	if !v.Thin {
		pool = ""
	}
	return l.Create(ctx, lvm.CreateOptions{Name: lvName(v.UUID), SizeBytes: v.SizeBytes, ThinPool: pool,
		Tags: []string{lvm.Tag, lvm.VolumeTag(v.UUID)}})
}
