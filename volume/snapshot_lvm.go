package volume

import (
	"context"
	"errors"
	"fmt"

	"github.com/blk-project/blk/internal/fault"
	"github.com/blk-project/blk/lvm"
	"github.com/blk-project/blk/state"
)

// snapLVName is a snapshot's LV: LVM reserves names that start with
// "snapshot".
func snapLVName(uuid string) string { return "_snapshot-" + uuid }

func snapTags(sn state.Snapshot) []string {
	return []string{lvm.Tag, lvm.SnapshotTag(sn.UUID), lvm.VolumeTag(sn.Volume)}
}

// An LVM snapshot of an in-use volume is safe: the device-mapper takes it
// at one instant, and quiesce makes that instant a consistent one.
func (lvmProvider) snapshotIn(state.Volume, string) error { return nil }

// snapshot makes a thin snapshot of a thin volume, or a thick one sized so
// that it holds every block of its origin and never overflows (an
// overflowed snapshot is lost).
func (p lvmProvider) snapshot(ctx context.Context, r *reverter, v state.Volume, sn state.Snapshot) (int64, string, error) {
	l, err := p.s.lvm(ctx, p.b)
	if err != nil {
		return 0, "", err
	}
	lv, err := p.s.snapshotOf(ctx, r, l, p.b.ThinPool, lvName(v.UUID), v.SizeBytes, v.Thin, snapLVName(sn.UUID), snapTags(sn))
	return v.SizeBytes, lv.Path(), err
}

// snapshotOf snapshots the LV origin (of size bytes) as name: a snapshot,
// a temporary one for a copy, or a thin clone. What a killed run of the same
// operation made is taken; the removal is registered on r.
func (s *Service) snapshotOf(ctx context.Context, r *reverter, l lvm.LVM, pool, origin string, size int64, thin bool, name string, tags []string) (lvm.LV, error) {
	remove := func(ctx context.Context) error {
		if _, err := l.LV(ctx, name); errors.Is(err, lvm.ErrNotFound) {
			return nil
		}
		return l.Remove(ctx, name)
	}
	if lv, err := l.LV(ctx, name); err == nil {
		r.add("lv "+name, remove)
		return lv, nil
	} else if !errors.Is(err, lvm.ErrNotFound) {
		return lv, err
	}
	o := lvm.SnapshotOptions{Name: name, Origin: origin, Tags: tags}
	var err error
	if thin {
		err = l.Fits(ctx, 0, pool)
	} else {
		o.SizeBytes = lvm.ThickSnapshotSize(size)
		err = l.Fits(ctx, o.SizeBytes, "")
	}
	if err != nil {
		if errors.Is(err, ErrNoSpace) {
			err = fault.Wrap(ErrConflict, err)
		}
		return lvm.LV{}, err
	}
	r.add("lv "+name, remove) // a failed lvcreate may still have made it
	return l.Snapshot(ctx, o)
}

func (p lvmProvider) removeSnapshot(ctx context.Context, sn state.Snapshot) error {
	l, err := p.s.lvm(ctx, p.b)
	if err != nil {
		return err
	}
	name := snapLVName(sn.UUID)
	if _, err := l.LV(ctx, name); errors.Is(err, lvm.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	return l.Remove(ctx, name)
}

// revert merges the snapshot into its volume (lvconvert --merge), which
// consumes the snapshot. The volume's LV keeps its name; its tags are
// checked, as a thin merge may leave the snapshot's.
func (p lvmProvider) revert(ctx context.Context, v state.Volume, sn state.Snapshot) (bool, error) {
	l, err := p.s.lvm(ctx, p.b)
	if err != nil {
		return false, err
	}
	// A revert killed after its merge finds the snapshot merged already.
	_, err = l.LV(ctx, snapLVName(sn.UUID))
	switch {
	case err == nil:
		if err = l.Merge(ctx, snapLVName(sn.UUID), v.Thin); err != nil {
			return false, err
		}
	case !errors.Is(err, lvm.ErrNotFound):
		return false, err
	}
	lv, err := l.LV(ctx, lvName(v.UUID))
	if err != nil {
		return true, err
	}
	if lv.SizeBytes < v.SizeBytes {
		// Extended since the snapshot, the volume keeps its size, as in
		// Cinder: a merge gives it the snapshot's.
		if lv, err = l.Extend(ctx, lv.Name, v.SizeBytes); err != nil {
			return true, fmt.Errorf("grow the merged volume back to %s: %w", FormatSize(v.SizeBytes), err)
		}
	}
	return true, l.Retag(ctx, lv, []string{lvm.Tag, lvm.VolumeTag(v.UUID)}, "blk-snap-")
}
