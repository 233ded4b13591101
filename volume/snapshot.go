package volume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/lvm"
	"github.com/blk-project/blk/state"
)

// Snapshot is what blk reports about a snapshot. Its JSON and YAML field
// names are a contract with scripts.
type Snapshot struct {
	UUID       string `json:"uuid" yaml:"uuid"`
	Name       string `json:"name" yaml:"name"`
	Volume     string `json:"volume" yaml:"volume"` // the volume's name
	VolumeUUID string `json:"volume_uuid" yaml:"volume_uuid"`
	Backend    string `json:"backend" yaml:"backend"`
	Status     string `json:"status" yaml:"status"`
	SizeBytes  int64  `json:"size_bytes" yaml:"size_bytes"`
	// Consistency is filesystem (taken with the guest's filesystems
	// frozen), crash (of a volume in use, as a power cut would leave it)
	// or clean (of a volume attached to nothing: nothing was writing).
	Consistency string    `json:"consistency" yaml:"consistency"`
	Path        string    `json:"path" yaml:"path"`
	CreatedAt   time.Time `json:"created_at" yaml:"created_at"`
	UpdatedAt   time.Time `json:"updated_at" yaml:"updated_at"`
	LastError   string    `json:"last_error" yaml:"last_error"`
	// Warning is what a person should hear about how it was taken (no
	// guest agent answered); not part of the output.
	Warning string `json:"-" yaml:"-"`
}

func snapshotOf(sn state.Snapshot) Snapshot {
	return Snapshot{UUID: sn.UUID, Name: sn.Name, Volume: sn.VolumeName, VolumeUUID: sn.Volume, Backend: sn.Backend,
		Status: sn.Status, SizeBytes: sn.SizeBytes, Consistency: sn.Consistency, Path: sn.Path, CreatedAt: sn.CreatedAt,
		UpdatedAt: sn.UpdatedAt, LastError: sn.LastError}
}

// Consistency of a snapshot or a copy.
const (
	Filesystem = "filesystem"
	Crash      = "crash"
	Clean      = "clean"
)

// Quiesce modes of snapshot create.
const (
	QuiesceAuto    = "auto"
	QuiesceRequire = "require"
	QuiesceOff     = "off"
)

// snapshotter is what a backend type does for snapshots.
type snapshotter interface {
	// snapshotIn refuses a snapshot of v in its status, when the backend
	// cannot take one safely.
	snapshotIn(v state.Volume, status string) error
	// snapshot makes the snapshot's storage of v, or takes what a killed
	// run made, registering its undo on r; it returns its size and path.
	snapshot(ctx context.Context, r *reverter, v state.Volume, sn state.Snapshot) (int64, string, error)
	// removeSnapshot removes its storage; already gone is done.
	removeSnapshot(ctx context.Context, sn state.Snapshot) error
	// revert makes v read as sn; consumed says the snapshot is gone
	// with it (an LVM merge).
	revert(ctx context.Context, v state.Volume, sn state.Snapshot) (consumed bool, err error)
}

func (s *Service) snapshotter(v state.Volume) (snapshotter, error) {
	b, err := s.backendOf(v)
	if err != nil {
		return nil, err
	}
	p, err := s.provider(v.Backend, b)
	if err != nil {
		return nil, err
	}
	sp, ok := p.(snapshotter)
	if !ok {
		return nil, invalid("backend %q (%s) cannot take snapshots", v.Backend, b.Type)
	}
	return sp, nil
}

// SnapshotOptions are those of snapshot create.
type SnapshotOptions struct {
	Volume  string
	Name    string // empty: <volume>-snap-<first 8 of its UUID>
	Quiesce string // auto (empty), require or off
}

// Validate checks the options alone.
func (o SnapshotOptions) Validate() error {
	if err := CheckRef(o.Volume); err != nil {
		return err
	}
	if o.Name != "" {
		if err := CheckName("snapshot", o.Name); err != nil {
			return err
		}
	}
	if !slices.Contains([]string{"", QuiesceAuto, QuiesceRequire, QuiesceOff}, o.Quiesce) {
		return invalid("--quiesce %q: use auto, require or off", Truncate(o.Quiesce))
	}
	return nil
}

func snapshotName(volume, uuid string) string {
	suffix := "-snap-" + uuid[:8]
	return volume[:min(len(volume), 63-len(suffix))] + suffix
}

// freezeTimeout bounds a guest agent's freeze; thawTimeout its thaw, which
// runs past Ctrl-C and --timeout: a guest must never be left frozen.
var (
	freezeTimeout = 30 * time.Second
	thawTimeout   = 30 * time.Second
)

// quiesced runs fn, which reads or snapshots v, with the guest's
// filesystems frozen when v is in use and mode asks for it, and says how
// consistent what fn took is. The thaw always runs once a freeze was
// asked for, even when fn failed or ctx ended, within thawTimeout; if it
// fails, so does the whole.
func (s *Service) quiesced(ctx context.Context, v state.Volume, inUse bool, mode string, fn func() error) (consistency, warning string, err error) {
	if !inUse {
		return Clean, "", fn()
	}
	if mode == QuiesceOff {
		return Crash, "", fn()
	}
	att, err := s.State.Attachment(ctx, v.UUID)
	if err != nil {
		return "", "", err
	}
	hv, err := s.Hosts.Hypervisor(ctx, att.Host)
	if err != nil {
		return "", "", err
	}
	fctx, cancel := context.WithTimeout(ctx, freezeTimeout)
	_, ferr := hv.FSFreeze(fctx, att.Instance)
	cancel()
	// Nothing was frozen when no agent answers, the domain does not run or
	// is gone; a freeze that failed otherwise (timed out) may have frozen
	// some filesystems: thaw those too.
	noAgent := errors.Is(ferr, hypervisor.ErrNoAgent) || errors.Is(ferr, hypervisor.ErrNotRunning) ||
		errors.Is(ferr, hypervisor.ErrNoDomain)
	if !noAgent {
		defer func() {
			if terr := s.thaw(ctx, att.Host, att.Instance); terr != nil {
				err = errors.Join(err, terr)
			}
		}()
	}
	switch {
	case ferr == nil:
		return Filesystem, "", fn()
	case mode == QuiesceRequire:
		return "", "", fmt.Errorf("--quiesce require: cannot freeze the filesystems of %s on %s, so no snapshot was taken: %w",
			att.Instance, att.Host, ferr)
	case ctx.Err() != nil:
		return "", "", ferr
	}
	warning = fmt.Sprintf("cannot freeze the filesystems of %s on %s (%v): %s is snapshotted crash-consistent only "+
		"(install and start qemu-guest-agent in the guest, with an agent channel in the domain, for filesystem consistency)",
		att.Instance, att.Host, ferr, v.Name)
	return Crash, warning, fn()
}

// thaw thaws the guest on a connection of its own: the freeze's may have
// been given up on when ctx ended.
func (s *Service) thaw(ctx context.Context, host, instance string) error {
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), thawTimeout)
	defer cancel()
	hv, err := s.Hosts.Hypervisor(tctx, host)
	if err == nil {
		_, err = hv.FSThaw(tctx, instance)
	}
	if err != nil {
		return fmt.Errorf("thaw the filesystems of %s on %s: %w: the guest may be frozen still: run 'virsh domfsthaw %s' on %s now",
			instance, host, err, instance, host)
	}
	return nil
}

// hold is a volume held in snapshotting while a snapshot or a copy of it
// is taken (no attach, detach, delete or revert meanwhile).
type hold struct {
	s    *Service
	v    state.Volume
	orig string // the status to go back to
	op   Op
	done bool
}

// holdVolume moves v to snapshotting, journaling op, and registers the way
// back on r. A run that died holding it is taken over.
func (s *Service) holdVolume(ctx context.Context, r *reverter, op string, v state.Volume) (*hold, error) {
	orig := v.Status
	if orig == state.Snapshotting {
		orig = v.PreviousStatus
	}
	if orig != state.Available && orig != state.InUse {
		return nil, &state.ConflictError{Volume: v.Name, Status: v.Status,
			Reason: "is " + v.Status + ": only an available or in-use volume can be snapshotted or copied",
			Holder: s.State.Holder(ctx, v.UUID)}
	}
	o, err := s.State.Claim(ctx, op, v.UUID, []string{v.Status}, state.Snapshotting)
	if err != nil {
		return nil, err
	}
	h := &hold{s: s, v: v, orig: orig, op: o}
	r.add("volume status", func(ctx context.Context) error { return h.release(ctx, errors.New("undone")) })
	// The run taken over may have died with the guest frozen: its I/O
	// hangs until thawed, so thaw first (a thawed guest is unaffected).
	if v.Status == state.Snapshotting && orig == state.InUse {
		if att, aerr := s.State.Attachment(ctx, v.UUID); aerr == nil {
			terr := s.thaw(ctx, att.Host, att.Instance)
			if terr != nil && !errors.Is(terr, hypervisor.ErrNoAgent) && !errors.Is(terr, hypervisor.ErrNotRunning) {
				return nil, terr
			}
		}
	}
	return h, nil
}

// release puts the volume back, and ends the hold's operation with err;
// once done, it does nothing.
func (h *hold) release(ctx context.Context, err error) error {
	if h.done {
		return nil
	}
	_, merr := h.s.State.MoveVolume(ctx, h.v.UUID, state.Move{From: []string{state.Snapshotting}, To: h.orig})
	if merr != nil {
		return merr
	}
	h.done = true
	return h.op.End(ctx, err)
}

// CreateSnapshot takes a snapshot of a volume. Of an in-use volume, the
// guest's filesystems are frozen for the moment it is taken, unless
// o.Quiesce is off; with no guest agent, auto takes a crash-consistent one
// and says so, require takes none.
func (s *Service) CreateSnapshot(ctx context.Context, o SnapshotOptions) (_ Snapshot, err error) {
	if err = o.Validate(); err != nil {
		return Snapshot{}, err
	}
	if o.Quiesce == "" {
		o.Quiesce = QuiesceAuto
	}
	v, err := s.State.Volume(ctx, o.Volume)
	if err != nil {
		return Snapshot{}, err
	}
	sp, err := s.snapshotter(v)
	if err != nil {
		return Snapshot{}, err
	}
	status := v.Status
	if status == state.Snapshotting {
		status = v.PreviousStatus
	}
	if err = sp.snapshotIn(v, status); err != nil {
		return Snapshot{}, err
	}
	sn := state.Snapshot{UUID: s.newUUID(), Name: o.Name, Volume: v.UUID, VolumeName: v.Name, Backend: v.Backend,
		SizeBytes: v.SizeBytes, Status: state.Creating}
	if sn.Name == "" {
		sn.Name = snapshotName(v.Name, sn.UUID)
	}
	r := newReverter()
	defer r.fail(ctx, &err)
	h, err := s.holdVolume(ctx, r, "snapshot", v)
	if err != nil {
		return Snapshot{}, err
	}
	op, err := s.State.InsertSnapshot(ctx, &sn)
	if err != nil {
		if op, err = s.resumeSnapshot(ctx, err, v, &sn); err != nil {
			return Snapshot{}, err
		}
	}
	r.journal(op)
	r.add("snapshot row", func(ctx context.Context) error {
		if left := r.leftovers(); len(left) > 0 {
			msg := "create failed and its " + strings.Join(left, ", ") + " could not be removed"
			_, merr := s.State.MoveSnapshot(ctx, sn.UUID, state.SnapshotMove{From: []string{state.Creating}, To: state.Error, LastError: &msg})
			return errors.Join(fmt.Errorf("snapshot %q is left in error: 'blk snapshot delete %s' removes it", sn.Name, sn.Name), merr)
		}
		return s.State.DeleteSnapshot(ctx, sn.UUID, state.Creating)
	})
	var size int64
	var path string
	consistency, warning, err := s.quiesced(ctx, v, h.orig == state.InUse, o.Quiesce, func() (err error) {
		size, path, err = sp.snapshot(ctx, r, v, sn)
		return err
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot volume %q: %w", v.Name, err)
	}
	if size == 0 {
		size = v.SizeBytes // a thin snapshot reads as big as its origin
	}
	made, err := s.State.MoveSnapshot(ctx, sn.UUID, state.SnapshotMove{From: []string{state.Creating}, To: state.Available,
		SizeBytes: size, Path: path, Consistency: consistency})
	if err != nil {
		return Snapshot{}, err
	}
	r.success()
	if err := h.release(ctx, nil); err != nil {
		return snapshotOf(made), err
	}
	out := snapshotOf(made)
	out.Warning = warning
	return out, nil
}

// resumeSnapshot takes over the row of a snapshot create that died before
// it finished, when insertErr says sn's name is taken by it: the same
// command, run again, finishes it (snapshot takes the LV or file the dead
// run made). Any other conflict stands, as does a create still running.
func (s *Service) resumeSnapshot(ctx context.Context, insertErr error, v state.Volume, sn *state.Snapshot) (Op, error) {
	var ce *state.ConflictError
	if !errors.As(insertErr, &ce) {
		return nil, insertErr
	}
	old, err := s.State.Snapshot(ctx, sn.Name)
	if err != nil || old.Status != state.Creating || old.Volume != v.UUID {
		return nil, insertErr
	}
	op, err := s.State.ClaimSnapshot(ctx, "snapshot create", old.UUID, []string{state.Creating}, state.Creating)
	if err != nil {
		if errors.As(err, &ce) {
			return nil, insertErr // held by a live run, or finished meanwhile
		}
		return nil, err
	}
	*sn = old
	return op, nil
}

// ShowSnapshot finds one snapshot by name or UUID.
func (s *Service) ShowSnapshot(ctx context.Context, ref string) (Snapshot, error) {
	sn, err := s.State.Snapshot(ctx, ref)
	return snapshotOf(sn), err
}

// ListSnapshots lists the snapshots of one volume, or of all when ref is
// empty.
func (s *Service) ListSnapshots(ctx context.Context, ref string) ([]Snapshot, error) {
	uuid := ""
	if ref != "" {
		v, err := s.State.Volume(ctx, ref)
		if err != nil {
			return nil, err
		}
		uuid = v.UUID
	}
	rows, err := s.State.ListSnapshots(ctx, uuid)
	if err != nil {
		return nil, err
	}
	out := make([]Snapshot, len(rows))
	for i, sn := range rows {
		out[i] = snapshotOf(sn)
	}
	return out, nil
}

// snapshotDeletable are the statuses snapshot delete accepts outright;
// creating and deleting are accepted from a process proven gone.
var snapshotDeletable = []string{state.Available, state.Error, state.ErrorDeleting}

// DeleteSnapshots removes snapshots one by one, as Delete does volumes.
func (s *Service) DeleteSnapshots(ctx context.Context, refs []string) ([]DeleteResult, error) {
	done := "deleted"
	if s.Hosts.DryRun() {
		done = "would delete"
	}
	var results []DeleteResult
	var errs []error
	for _, ref := range refs {
		res := DeleteResult{Ref: ref, Status: done}
		if err := s.deleteSnapshot(ctx, ref, &res); err != nil {
			res.Status, res.Error, res.Err = "failed", err.Error(), err
			errs = append(errs, err)
		}
		results = append(results, res)
	}
	switch {
	case len(errs) == 0:
		return results, nil
	case len(errs) == 1 && len(refs) == 1:
		return results, errs[0]
	case len(errs) < len(refs):
		return results, fmt.Errorf("%w: %d of %d snapshots not deleted: %w", ErrPartial, len(errs), len(refs), errors.Join(errs...))
	default:
		return results, errors.Join(errs...)
	}
}

func (s *Service) deleteSnapshot(ctx context.Context, ref string, res *DeleteResult) (err error) {
	sn, err := s.State.Snapshot(ctx, ref)
	if err != nil {
		return err
	}
	res.UUID = sn.UUID
	v, err := s.State.Volume(ctx, sn.Volume)
	if err != nil {
		return err
	}
	sp, err := s.snapshotter(v)
	if err != nil {
		return err
	}
	from := snapshotDeletable
	if sn.Status == state.Creating || sn.Status == state.Deleting {
		from = []string{sn.Status}
	}
	op, err := s.State.ClaimSnapshot(ctx, "snapshot delete", sn.UUID, from, state.Deleting)
	if err != nil {
		var ce *state.ConflictError
		if errors.As(err, &ce) && ce.Holder == "" {
			ce.Reason = "is " + ce.Status + ": only an available snapshot can be deleted"
		}
		return err
	}
	r := newReverter()
	defer r.fail(ctx, &err)
	r.journal(op)
	r.add("status", func(ctx context.Context) error {
		msg := err.Error()
		_, merr := s.State.MoveSnapshot(ctx, sn.UUID, state.SnapshotMove{From: []string{state.Deleting}, To: state.ErrorDeleting, LastError: &msg})
		return merr
	})
	if err := sp.removeSnapshot(ctx, sn); err != nil {
		return fmt.Errorf("delete snapshot %q: %w", sn.Name, err)
	}
	if err := s.State.DeleteSnapshot(ctx, sn.UUID, state.Deleting); err != nil {
		return err
	}
	r.success()
	return nil
}

// RevertResult is what a revert did.
type RevertResult struct {
	Volume   Volume   `json:"volume" yaml:"volume"`
	Snapshot Snapshot `json:"snapshot" yaml:"snapshot"`
	// Consumed: the snapshot was merged into the volume and is gone.
	Consumed bool `json:"snapshot_consumed" yaml:"snapshot_consumed"`
}

// RevertSnapshot makes a volume read as its snapshot again. The volume must
// be available: its data changes under anything that reads it. An LVM
// revert merges the snapshot into the volume, which consumes it; an NFS
// revert copies it back, and keeps it.
func (s *Service) RevertSnapshot(ctx context.Context, ref string) (_ RevertResult, err error) {
	sn, err := s.State.Snapshot(ctx, ref)
	if err != nil {
		return RevertResult{}, err
	}
	v, err := s.State.Volume(ctx, sn.Volume)
	if err != nil {
		return RevertResult{}, err
	}
	sp, err := s.snapshotter(v)
	if err != nil {
		return RevertResult{}, err
	}
	// A revert that was killed left both held: Claim takes them over from
	// a process proven gone.
	snapFrom := []string{state.Available}
	if sn.Status == state.Restoring {
		snapFrom = []string{state.Restoring}
	} else if sn.Status != state.Available {
		return RevertResult{}, &state.ConflictError{Kind: "snapshot", Volume: sn.Name, Status: sn.Status,
			Reason: "is " + sn.Status + ": only an available snapshot can be reverted to", Holder: s.State.Holder(ctx, sn.UUID)}
	}
	// A revert that failed part-way left the volume in error, and is rerun.
	volFrom := []string{state.Available, state.Error}
	if v.Status == state.Reverting {
		volFrom = []string{state.Reverting}
	}
	vop, err := s.State.Claim(ctx, "revert", v.UUID, volFrom, state.Reverting)
	if err != nil {
		var ce *state.ConflictError
		if errors.As(err, &ce) && ce.Holder == "" {
			ce.Reason = "is " + ce.Status + ": only an available volume can be reverted"
			if ce.Status == state.InUse {
				ce.Reason += " (detach it first: its data would change under the guest)"
			}
		}
		return RevertResult{}, err
	}
	r := newReverter()
	defer r.fail(ctx, &err)
	r.journal(vop)
	back, partial := v.Status, false
	if back == state.Reverting {
		back = state.Error // what the killed run did to it is unknown
	}
	r.add("volume status", func(ctx context.Context) error {
		m := state.Move{From: []string{state.Reverting}, To: back}
		if partial {
			msg := fmt.Sprintf("revert to snapshot %s failed part-way: rerun 'blk snapshot revert %s'", sn.Name, sn.Name)
			m.To, m.LastError = state.Error, &msg
		}
		_, merr := s.State.MoveVolume(ctx, v.UUID, m)
		return merr
	})
	sop, err := s.State.ClaimSnapshot(ctx, "snapshot revert", sn.UUID, snapFrom, state.Restoring)
	if err != nil {
		return RevertResult{}, err
	}
	consumed := false
	r.add("snapshot status", func(ctx context.Context) error {
		if consumed {
			// Merged into the volume, its LV is gone: listed available it
			// would "revert" later by doing nothing. Left restoring, only
			// the rerun the volume's error asks for takes it, and ends it.
			return sop.End(ctx, err)
		}
		_, merr := s.State.MoveSnapshot(ctx, sn.UUID, state.SnapshotMove{From: []string{state.Restoring}, To: state.Available})
		return errors.Join(merr, sop.End(ctx, err))
	})
	consumed, err = sp.revert(ctx, v, sn)
	if err != nil {
		// A copy back may have rewritten part of the volume; a merge LVM
		// deferred changes it at the next activation; a merge done may
		// have left it with the snapshot's tags: either way it is not the
		// volume it was.
		partial = isCopyRevert(sp) || errors.Is(err, lvm.ErrInUse) || consumed
		return RevertResult{}, fmt.Errorf("revert volume %q to snapshot %q: %w", v.Name, sn.Name, err)
	}
	// The volume reads as the snapshot now: what is left records it, also
	// after Ctrl-C.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	res := RevertResult{Consumed: consumed, Snapshot: snapshotOf(sn)}
	if consumed {
		err = s.State.DeleteSnapshot(ctx, sn.UUID, state.Restoring)
	} else {
		var after state.Snapshot
		after, err = s.State.MoveSnapshot(ctx, sn.UUID, state.SnapshotMove{From: []string{state.Restoring}, To: state.Available})
		res.Snapshot = snapshotOf(after)
	}
	if err != nil {
		return res, err
	}
	if err = sop.End(ctx, nil); err != nil {
		return res, err
	}
	after, err := s.State.MoveVolume(ctx, v.UUID, state.Move{From: []string{state.Reverting}, To: state.Available, LastError: new(string)})
	if err != nil {
		return res, err
	}
	r.success()
	res.Volume = volumeOf(after)
	return res, nil
}

// isCopyRevert says whether a failed revert may have rewritten part of the
// volume (a copy back) rather than failed whole (a merge LVM refused).
func isCopyRevert(sp snapshotter) bool {
	_, ok := sp.(nfsProvider)
	return ok
}

// snapshotsOf names a volume's snapshots, for a delete refused because of
// them.
func (s *Service) snapshotsOf(ctx context.Context, v state.Volume) string {
	sns, err := s.State.ListSnapshots(ctx, v.UUID)
	if err != nil || len(sns) == 0 {
		return fmt.Sprintf("%d snapshot(s)", v.SnapshotCount)
	}
	names := make([]string, len(sns))
	for i, sn := range sns {
		names[i] = sn.Name
	}
	return "snapshot(s) " + strings.Join(names, ", ")
}
