package volume

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/blk-project/blk/internal/fault"
	"github.com/blk-project/blk/lvm"
	"github.com/blk-project/blk/state"
)

type CreateOptions struct {
	Name    string
	Size    string
	Backend string
	// BackendType, without Backend, places the volume on the backend of
	// this type (lvm or nfs) with the most free space that fits it.
	BackendType string
	Thin        bool
	// Preallocate writes an NFS volume's file in full instead of sparse.
	Preallocate bool
	// Placed, when set, is shown how the backend was chosen, when it was.
	Placed func(Placement)
	// FromSnapshot or FromVolume name what the volume starts as a copy of;
	// Size may then be left out (the source's) or larger.
	FromSnapshot, FromVolume string
	// FromImage is a raw or qcow2 image on the storage host to fill the
	// volume with; ImageFormat, when given, is its format (never probed).
	FromImage, ImageFormat string
	// FromBackup is a backup (name or uuid) in BackupRepo (empty: the
	// default repository) to restore into the new volume.
	FromBackup, BackupRepo string
}

// Validate checks the options alone, before anything is opened or run, and
// returns the size in bytes (0: the source's or the image's).
func (o CreateOptions) Validate() (int64, error) {
	if err := CheckName("volume", o.Name); err != nil {
		return 0, err
	}
	n := 0
	for _, from := range []string{o.FromSnapshot, o.FromVolume, o.FromImage, o.FromBackup} {
		if from != "" {
			n++
		}
	}
	if n > 1 {
		return 0, invalid("--from-snapshot, --from-volume, --from-image and --from-backup: choose one")
	}
	if err := CheckText("--from-image", o.FromImage); err != nil {
		return 0, err
	}
	if err := o.checkImage(); err != nil {
		return 0, err
	}
	if o.FromImage != "" && o.Size == "" {
		return 0, nil
	}
	for _, ref := range []string{o.FromSnapshot, o.FromVolume, o.FromBackup} {
		if ref != "" {
			if err := CheckRef(ref); err != nil {
				return 0, err
			}
			if o.Size == "" {
				return 0, nil
			}
		}
	}
	return ParseSize(o.Size)
}

// Create makes a volume: a row in creating, the storage (an LV, or a file on
// an NFS export), then available with the size really made. A failure
// removes both; a create whose process died is finished by running the same
// command again.
func (s *Service) Create(ctx context.Context, o CreateOptions) (_ Volume, err error) {
	size, err := o.Validate()
	if err != nil {
		return Volume{}, err
	}
	return s.create(ctx, o, size)
}

// create is Create of size bytes (reconcile finishes a killed create with
// the size its row holds).
func (s *Service) create(ctx context.Context, o CreateOptions, size int64) (_ Volume, err error) {
	var src *cloneSource
	if o.FromSnapshot != "" || o.FromVolume != "" {
		if src, err = s.resolveSource(ctx, o); err != nil {
			return Volume{}, err
		}
		if size, err = src.fit(&o, size); err != nil {
			return Volume{}, err
		}
	}
	var bk *backupSource
	if o.FromBackup != "" {
		if bk, err = s.resolveBackup(ctx, o); err != nil {
			return Volume{}, err
		}
		defer func() { err = errors.Join(err, bk.unlock()) }()
		if size == 0 {
			size = bk.m.SizeBytes
		} else if size < bk.m.SizeBytes {
			return Volume{}, invalid("--size %s is smaller than backup %s (%s)", FormatSize(size), bk.m.Name, FormatSize(bk.m.SizeBytes))
		}
	}
	bname, b, err := s.createBackend(ctx, o)
	if err != nil {
		return Volume{}, err
	}
	p, err := s.provider(bname, b)
	if err != nil {
		return Volume{}, err
	}
	thin, err := p.thin(o)
	if err != nil {
		return Volume{}, err
	}
	var img *image
	var source string
	if src != nil {
		source = src.ref()
	}
	if bk != nil {
		source = "backup:" + bk.m.UUID
	}
	if o.FromImage != "" {
		if img, size, err = s.inspectImage(ctx, b.Host, o, size); err != nil {
			return Volume{}, err
		}
		source = "image:" + img.Path
	}
	v := state.Volume{UUID: s.newUUID(), Name: o.Name, Backend: bname, SizeBytes: size, Thin: thin, Status: state.Creating, Source: source}
	op, err := s.State.InsertVolume(ctx, &v)
	rerun := false // a killed create's volume, taken over: its storage holds what that run wrote
	if err != nil {
		var ce *state.ConflictError
		if !errors.As(err, &ce) {
			return Volume{}, err
		}
		// A create that died before finishing left its row in creating:
		// the same command, run again, finishes it.
		old, gerr := s.State.Volume(ctx, o.Name)
		if gerr != nil || old.Status != state.Creating ||
			old.Backend != bname || old.Thin != thin || old.SizeBytes != size || old.Source != source {
			return Volume{}, err
		}
		v = old
		rerun = true
		var cerr error
		if op, cerr = s.State.Claim(ctx, "create", v.UUID, []string{state.Creating}, state.Creating); cerr != nil {
			if errors.As(cerr, &ce) {
				return Volume{}, err // held by a live run, or finished meanwhile
			}
			return volumeOf(v), cerr
		}
	}
	// Nothing of this volume may stay if a step fails: no LV or file, no row.
	r := newReverter()
	defer r.fail(ctx, &err)
	uuid := v.UUID // v is reassigned below, and may come back empty
	r.add("volume row", func(ctx context.Context) error {
		if left := r.leftovers(); len(left) > 0 {
			// Without its row the LV would be nobody's: keep the row, in
			// error, so delete can remove both.
			msg := "create failed and its " + strings.Join(left, ", ") + " could not be removed"
			_, merr := s.State.MoveVolume(ctx, uuid, state.Move{From: []string{state.Creating}, To: state.Error, LastError: &msg})
			return errors.Join(fmt.Errorf("volume %q is left in error: 'blk volume delete %s' removes it", o.Name, o.Name), merr)
		}
		return s.State.DeleteVolume(ctx, uuid, state.Creating)
	})
	r.journal(op)

	var zero bool
	if img != nil {
		if zero, err = s.imageTarget(ctx, p, v); err != nil {
			return volumeOf(v), fmt.Errorf("create volume %q: %w", o.Name, err)
		}
	}
	made, path, err := s.makeVolume(ctx, r, p, b, v, src)
	if err == nil && img != nil {
		err = s.fillFromImage(ctx, b.Host, v.Name, img, path, zero)
	}
	if err == nil && bk != nil {
		err = s.writeBackup(ctx, bk.repo, bk.m, b.Host, v, path, !rerun && v.Thin)
	}
	if err != nil {
		return volumeOf(v), fmt.Errorf("create volume %q: %w", o.Name, err)
	}
	if v, err = s.State.MoveVolume(ctx, v.UUID, state.Move{From: []string{state.Creating}, To: state.Available,
		SizeBytes: made, Path: path}); err != nil {
		return volumeOf(v), err
	}
	r.success()
	out := volumeOf(v)
	if src != nil {
		out.Warning = src.warning
	}
	return out, nil
}

// createLV makes the volume's LV, unless a previous run already did, once
// the group or thin pool is seen to have room for it.
func (s *Service) createLV(ctx context.Context, r *reverter, l lvm.LVM, pool string, v state.Volume) (lvm.LV, error) {
	name := lvName(v.UUID)
	if lv, err := l.LV(ctx, name); err == nil {
		r.add("lv", func(ctx context.Context) error { return l.Remove(ctx, name) })
		return lv, nil
	} else if !errors.Is(err, lvm.ErrNotFound) {
		return lv, err
	}
	if !v.Thin {
		pool = ""
	}
	if err := l.Fits(ctx, v.SizeBytes, pool); err != nil {
		if errors.Is(err, ErrNoSpace) {
			err = fault.Wrap(ErrConflict, err)
		}
		return lvm.LV{}, err
	}
	// A failed lvcreate may still have made the LV: remove it if it is there.
	r.add("lv", func(ctx context.Context) error {
		if _, err := l.LV(ctx, name); errors.Is(err, lvm.ErrNotFound) {
			return nil
		}
		return l.Remove(ctx, name)
	})
	return l.Create(ctx, lvm.CreateOptions{Name: name, SizeBytes: v.SizeBytes, ThinPool: pool,
		Tags: []string{lvm.Tag, lvm.NameTag(v.Name), lvm.VolumeTag(v.UUID)}})
}
