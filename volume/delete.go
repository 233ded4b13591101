package volume

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/lvm"
	"github.com/blk-project/blk/state"
)

type DeleteOptions struct {
	Refs []string
	Wipe bool
}

// DeleteResult is the outcome for one volume of a delete.
type DeleteResult struct {
	Ref    string `json:"volume" yaml:"volume"`
	UUID   string `json:"uuid,omitempty" yaml:"uuid,omitempty"`
	Status string `json:"status" yaml:"status"` // deleted, would delete (dry run), or failed
	Wiped  bool   `json:"wiped" yaml:"wiped"`
	Error  string `json:"error,omitempty" yaml:"error,omitempty"`
	Err    error  `json:"-" yaml:"-"`
	// Note tells a person what blk chose (a wipe an earlier delete asked for).
	Note string `json:"-" yaml:"-"`
}

// deletable are the statuses delete accepts outright; creating and deleting
// are accepted too when the process that set them is gone.
var deletable = []string{state.Available, state.Error, state.ErrorDeleting, state.ErrorRestoring}

// Delete removes volumes one by one. It returns ErrPartial when some
// succeeded and some did not, or the single failure's own error.
func (s *Service) Delete(ctx context.Context, o DeleteOptions) ([]DeleteResult, error) {
	for _, r := range o.Refs {
		if r == "" {
			return nil, invalid("empty volume name")
		}
	}
	done := "deleted"
	if s.Hosts.DryRun() {
		done = "would delete"
	}
	var results []DeleteResult
	var errs []error
	for _, ref := range o.Refs {
		res := DeleteResult{Ref: ref, Status: done}
		if err := s.deleteOne(ctx, ref, o.Wipe, &res); err != nil {
			res.Status, res.Error, res.Err = "failed", err.Error(), err
			errs = append(errs, err)
		}
		results = append(results, res)
	}
	switch {
	case len(errs) == 0:
		return results, nil
	case len(errs) == 1 && len(o.Refs) == 1:
		return results, errs[0]
	case len(errs) < len(o.Refs):
		return results, fmt.Errorf("%w: %d of %d volumes not deleted: %w", ErrPartial, len(errs), len(o.Refs), errors.Join(errs...))
	default:
		return results, errors.Join(errs...)
	}
}

func (s *Service) deleteOne(ctx context.Context, ref string, wipe bool, res *DeleteResult) (err error) {
	v, err := s.State.Volume(ctx, ref)
	if err != nil {
		return err
	}
	res.UUID = v.UUID
	if v.SnapshotCount > 0 {
		return conflict("volume %q has %s: delete them first ('blk snapshot delete NAME...')", v.Name, s.snapshotsOf(ctx, v))
	}
	from := deletable
	if v.Status == state.Creating || v.Status == state.Deleting {
		from = []string{v.Status} // Claim takes it over only from a process proven gone
	}
	b, err := s.backendOf(v)
	if err != nil {
		return err
	}
	p, err := s.provider(v.Backend, b)
	if err != nil {
		return err
	}
	if !wipe && v.Status != state.Available {
		// What an interrupted delete --wipe left is wiped too: its data is
		// what the operator meant to destroy.
		if wipe, err = s.State.WipeRequested(ctx, v.UUID); err != nil {
			return err
		}
		if wipe {
			res.Note = fmt.Sprintf("volume %s: wiping it first, as the earlier interrupted delete --wipe asked", v.Name)
		}
	}
	// The wipe is in the operation's name, journaled with the claim itself:
	// no moment where the delete has begun but its wipe is not on record.
	opName := "delete"
	if wipe {
		opName = "delete --wipe"
	}
	op, err := s.State.Claim(ctx, opName, v.UUID, from, state.Deleting)
	if err != nil {
		var ce *state.ConflictError
		if errors.As(err, &ce) && ce.Holder == "" {
			ce.Reason = "is " + ce.Status + ": only an available volume can be deleted"
			if ce.Status == state.InUse {
				ce.Reason += " (detach it first)"
			}
		}
		return err
	}
	// A delete that fails part-way leaves the volume error_deleting, with
	// the error, for a rerun: the LV may be half gone.
	r := newReverter()
	defer r.fail(ctx, &err)
	r.journal(op)
	r.add("status", func(ctx context.Context) error {
		msg := err.Error()
		_, merr := s.State.MoveVolume(ctx, v.UUID, state.Move{From: []string{state.Deleting}, To: state.ErrorDeleting, LastError: &msg})
		return merr
	})
	res.Wiped = wipe
	if err := p.remove(ctx, v, wipe); err != nil {
		return fmt.Errorf("delete volume %q: %w", v.Name, err)
	}
	if err := s.State.DeleteVolume(ctx, v.UUID, state.Deleting); err != nil {
		return err
	}
	r.success()
	return nil
}

// removeLV wipes (if asked) and removes the volume's LV; an LV already gone
// is fine, so a delete that died part-way can be run again.
func (s *Service) removeLV(ctx context.Context, l lvm.LVM, v state.Volume, wipe bool) error {
	lv, err := l.LV(ctx, lvName(v.UUID))
	if errors.Is(err, lvm.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if wipe {
		if err := s.wipe(ctx, l.Run, lv.Path(), lv.SizeBytes, v.Name, v.Thin); err != nil {
			return fmt.Errorf("wipe: %w", err)
		}
	}
	return l.Remove(ctx, lv.Name)
}

// wipeStep is how much one dd call zeroes: small enough for a live progress
// bar, large enough that per-call cost (an SSH round trip) stays noise.
const wipeStep = 256 << 20

// wipe zeroes a thick LV, or a volume file, in steps, reporting progress. A
// thin LV is discarded instead (discard): its blocks go back to the pool,
// which zeroes them before reuse, and writing zeros would fill the pool for
// other volumes.
func (s *Service) wipe(ctx context.Context, r exec.Runner, path string, size int64, name string, discard bool) error {
	if discard {
		_, err := run(ctx, r, true, "blkdiscard", path)
		return err
	}
	p := s.progress("wipe "+name, size)
	defer p.Done()
	for off := int64(0); off < size; off += wipeStep {
		n := min(wipeStep, size-off)
		_, err := run(ctx, r, true, "dd", "if=/dev/zero", "of="+path, "bs=4M",
			"seek="+strconv.FormatInt(off, 10), "count="+strconv.FormatInt(n, 10),
			"iflag=count_bytes", "oflag=seek_bytes,direct", "conv=notrunc,fsync", "status=none")
		if err != nil {
			return err
		}
		p.Add(n)
	}
	return nil
}
