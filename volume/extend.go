package volume

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/retry"
	"github.com/blk-project/blk/iscsi"
	"github.com/blk-project/blk/state"
)

type ExtendOptions struct {
	Volume string
	Size   string
}

// Validate checks the options alone, before anything is opened or run, and
// returns the size in bytes.
func (o ExtendOptions) Validate() (int64, error) {
	if o.Size == "" {
		return 0, invalid("--size is required")
	}
	return ParseSize(o.Size)
}

// extendUnfinished starts the last_error of a volume whose storage grew while
// a later step failed: the same extend, run again, may then ask for the size
// already recorded, and finishes the steps.
const extendUnfinished = "extend unfinished: "

// Extend grows a volume, available or in use: the LV (lvextend) or the file
// (truncate); then, when attached, the compute host's view of it (iSCSI:
// tgtd reopens the LUN's backing store, the initiator rescans) and the
// running guest's (libvirt blockresize). Every step looks first and skips
// what is done, so running the same extend again finishes a killed or
// failed one. Storage that grew is never shrunk back: shrinking an LV or a
// file under data is how data is lost. A later step that fails leaves the
// volume larger, records its real size, and says so.
func (s *Service) Extend(ctx context.Context, o ExtendOptions) (_ Volume, err error) {
	size, err := o.Validate()
	if err != nil {
		return Volume{}, err
	}
	v, err := s.State.Volume(ctx, o.Volume)
	if err != nil {
		return Volume{}, err
	}
	from := []string{state.Available, state.InUse}
	unfinished := strings.HasPrefix(v.LastError, extendUnfinished)
	switch v.Status {
	case state.Available, state.InUse:
		if size < v.SizeBytes || size == v.SizeBytes && !unfinished {
			return volumeOf(v), invalid("volume %q is %s (%d bytes): extend only grows a volume, and %s (%d bytes) is not larger",
				v.Name, FormatSize(v.SizeBytes), v.SizeBytes, o.Size, size)
		}
	case state.Extending:
		// A killed extend: Claim takes it over only from a process proven
		// gone. Its size was not recorded yet.
		if size < v.SizeBytes {
			return volumeOf(v), invalid("volume %q is %s (%d bytes): extend only grows a volume", v.Name, FormatSize(v.SizeBytes), v.SizeBytes)
		}
		from = []string{state.Extending}
	default:
		return volumeOf(v), &state.ConflictError{Volume: v.Name, Status: v.Status, Holder: s.State.Holder(ctx, v.UUID),
			Reason: "is " + v.Status + ": only an available or in-use volume can be extended"}
	}
	b, err := s.backendOf(v)
	if err != nil {
		return volumeOf(v), err
	}
	if b.Type == "lvm" && !v.Thin && v.SnapshotCount > 0 && v.Status == state.InUse {
		return volumeOf(v), conflict("volume %q is in use and has %s: LVM grows a thick volume with snapshots only while it is inactive: "+
			"detach it or delete the snapshots first", v.Name, s.snapshotsOf(ctx, v))
	}
	p, err := s.provider(v.Backend, b)
	if err != nil {
		return volumeOf(v), err
	}
	op, err := s.State.Claim(ctx, "extend", v.UUID, from, state.Extending)
	if err != nil {
		return volumeOf(v), err
	}
	// Where it goes back to is what is true now, not previous_status: a
	// rerun's Claim recorded extending there. Read after the Claim: an
	// attach may have finished since v was read.
	if cur, cerr := s.State.Volume(ctx, v.UUID); cerr == nil {
		v = cur
	}
	back := state.Available
	var rec *state.AttachmentRecord
	if v.Attachment != nil {
		back = state.InUse
		a, aerr := s.State.Attachment(ctx, v.UUID)
		if aerr != nil {
			err = aerr
		}
		rec = &a
	}
	// v is reassigned at the end, and may come back empty.
	uuid, name, had := v.UUID, v.Name, v.SizeBytes
	grown := int64(0)
	if rec != nil && rec.Step == extendPaused && err == nil {
		// The extend that was killed had paused the guest: first of all,
		// let it run.
		err = s.resumePaused(ctx, *rec, false)
		rec.Step = attachedStep
	}
	defer func() {
		if err == nil {
			return
		}
		msg := err.Error()
		if grown > had || unfinished && grown > 0 {
			err = fmt.Errorf("%w: the volume stays %s, as its storage now is (storage is never shrunk back under data); "+
				"the guest may still see its old size: run 'blk volume extend %s --size %s' again to finish",
				err, FormatSize(grown), name, exactSize(grown))
			msg = extendUnfinished + err.Error()
		}
		// Also after Ctrl-C or --timeout: the volume must not stay extending.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer cancel()
		m := state.Move{From: []string{state.Extending}, To: back, SizeBytes: grown, LastError: &msg}
		if _, merr := s.State.MoveVolume(uctx, uuid, m); merr != nil {
			err = errors.Join(err, merr)
		}
		op.End(uctx, err)
	}()
	if err != nil {
		return volumeOf(v), err
	}
	wrap := func(err error) error { return fmt.Errorf("extend volume %q to %s: %w", v.Name, FormatSize(size), err) }
	if grown, err = p.grow(ctx, v, size); err != nil {
		return volumeOf(v), wrap(err)
	}
	if err = op.Step(ctx, "grown"); err != nil {
		return volumeOf(v), err
	}
	if rec != nil {
		if err = p.reveal(ctx, v, *rec, grown); err != nil {
			return volumeOf(v), wrap(err)
		}
		if err = op.Step(ctx, "host-sees"); err != nil {
			return volumeOf(v), err
		}
		if err = s.resizeDisk(ctx, *rec, grown); err != nil {
			return volumeOf(v), wrap(err)
		}
	}
	none := ""
	v, err = s.State.MoveVolume(ctx, v.UUID, state.Move{From: []string{state.Extending}, To: back, SizeBytes: grown, LastError: &none})
	if err != nil {
		return volumeOf(v), err
	}
	op.End(ctx, nil)
	return volumeOf(v), nil
}

// resizeDisk tells a running guest its disk grew; a shut-off domain reads
// the size when it starts.
func (s *Service) resizeDisk(ctx context.Context, rec state.AttachmentRecord, size int64) error {
	hv, err := s.Hosts.Hypervisor(ctx, rec.Host)
	if err != nil {
		return err
	}
	active, err := hv.Active(ctx, rec.Instance)
	if errors.Is(err, hypervisor.ErrNoDomain) {
		return fmt.Errorf("instance %q is gone from %s, its disk with it: detach the volume (--force)", rec.Instance, rec.Host)
	}
	if err != nil || !active {
		return err
	}
	return hv.BlockResize(ctx, rec.Instance, rec.Device, size)
}

// exactSize writes bytes as a size ParseSize reads back to at least as
// many bytes.
func exactSize(b int64) string {
	if b%(1<<20) == 0 {
		return strconv.FormatInt(b>>20, 10) + "MiB"
	}
	return strconv.FormatInt((b+1023)>>10, 10) + "KiB"
}

// sizeWait bounds how long the compute host's kernel may take to see a LUN's
// new size after the rescan.
var sizeWait = 30 * time.Second

var errSmaller = errors.New("still the old size")

// revealISCSI makes the compute host see the LUN's new size: tgtd reopens the
// backing store (it reads the size only at open), the initiator rescans this
// target's session, and the kernel's block device grows. A host that sees the
// size already is left alone: a rerun disturbs nothing.
func (s *Service) revealISCSI(ctx context.Context, storageHost string, v state.Volume, rec state.AttachmentRecord, size int64) error {
	compute, err := s.Hosts.Runner(rec.Host)
	if err != nil {
		return err
	}
	storage, err := s.Hosts.Runner(storageHost)
	if err != nil {
		return err
	}
	initiator, target, conn := iscsi.Initiator{Run: compute}, iscsi.Target{Run: storage}, rec.Conn
	link := iscsi.ByPath(conn.TargetPortal, conn.TargetIQN, lunID)
	if n, serr := initiator.DeviceSize(ctx, link); serr != nil {
		return serr
	} else if n >= size {
		return nil
	}
	ids, err := target.Targets(ctx)
	if err != nil {
		return err
	}
	tid, ok := ids[conn.TargetIQN]
	if !ok {
		return fmt.Errorf("%s: target %s of volume %q is gone from tgtd (storage host rebooted?): 'blk reconcile --fix' exports it again",
			storage.Host(), conn.TargetIQN, v.Name)
	}
	// tgtd closes and reopens the store in its main loop while its I/O
	// threads may still be running a command on the old descriptor, which
	// then fails (EBADF: a medium error in the guest; seen with tgt
	// 1.0.85). The guest is paused around the reopen: QEMU completes the
	// I/O in flight before the pause returns, and the guest only waits.
	resume, err := s.quiesce(ctx, rec)
	if err != nil {
		return err
	}
	err = target.Reopen(ctx, tid, lunID, v.Path)
	if rerr := resume(); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return fmt.Errorf("tgtadm reopen the backing store: %w", err)
	}
	if err = initiator.Rescan(ctx, conn.TargetPortal, conn.TargetIQN); err != nil {
		return err
	}
	if s.Hosts.DryRun() {
		return nil // nothing was rescanned to wait for
	}
	var seen int64
	err = retry.Do(ctx, retry.Policy{Within: sizeWait, Delay: 200 * time.Millisecond, Retry: func(err error) bool { return errors.Is(err, errSmaller) }},
		func() error {
			n, serr := initiator.DeviceSize(ctx, link)
			if serr == nil && n < size {
				seen, serr = n, errSmaller
			}
			return serr
		})
	if errors.Is(err, errSmaller) {
		return fmt.Errorf("%s: %s is still %d bytes %v after the rescan, want %d", compute.Host(), link, seen, sizeWait, size)
	}
	return err
}

// attachedStep is the step a finished attach records.
const attachedStep = "libvirt-attached"

// extendPaused is the attachment's step while an extend has its guest
// paused: recorded before the pause, so a rerun of an extend killed
// meanwhile knows to resume it.
const extendPaused = "extend-paused"

// quiesce pauses the running domain of rec, unless it is paused already
// (then it stays so), and returns what lets it run again.
func (s *Service) quiesce(ctx context.Context, rec state.AttachmentRecord) (resume func() error, err error) {
	none := func() error { return nil }
	hv, err := s.Hosts.Hypervisor(ctx, rec.Host)
	if err != nil {
		return nil, err
	}
	active, err := hv.Active(ctx, rec.Instance)
	if errors.Is(err, hypervisor.ErrNoDomain) || err == nil && !active {
		return none, nil // nothing runs on the device
	}
	if err != nil {
		return nil, err
	}
	if paused, err := hv.Paused(ctx, rec.Instance); err != nil || paused {
		return none, err
	}
	rec.Step = extendPaused
	if err := s.State.UpdateAttachment(ctx, rec); err != nil {
		return nil, err
	}
	resume = func() error {
		// Also after Ctrl-C: a guest left paused is an outage.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer cancel()
		return s.resumePaused(uctx, rec, true)
	}
	if err := hv.Suspend(ctx, rec.Instance); err != nil {
		// A lost answer may still have paused it.
		return nil, errors.Join(fmt.Errorf("pause %s for the reopen: %w", rec.Instance, err), resume())
	}
	return resume, nil
}

// resumePaused lets the domain an extend paused run again, and records it;
// unless this run paused it, only if it is paused.
func (s *Service) resumePaused(ctx context.Context, rec state.AttachmentRecord, pausedHere bool) error {
	hv, err := s.Hosts.Hypervisor(ctx, rec.Host)
	if err != nil {
		return err
	}
	paused := pausedHere
	if !paused {
		paused, err = hv.Paused(ctx, rec.Instance)
	}
	if err == nil && paused {
		err = hv.Resume(ctx, rec.Instance)
	}
	if err != nil && !errors.Is(err, hypervisor.ErrNoDomain) {
		return fmt.Errorf("resume %s, paused by blk for the reopen: %w (virsh resume %s on %s)", rec.Instance, err, rec.Instance, rec.Host)
	}
	rec.Step = attachedStep
	return s.State.UpdateAttachment(ctx, rec)
}

// FinishExtend finishes an extend whose process died (the volume is
// extending): the size it asked for was not recorded, but its storage has
// it if it got that far, and extend never shrinks, so asking for the
// recorded size grows nothing and takes the storage's real size through
// the remaining steps. For reconcile --fix.
func (s *Service) FinishExtend(ctx context.Context, ref string) (Volume, error) {
	v, err := s.State.Volume(ctx, ref)
	if err != nil {
		return volumeOf(v), err
	}
	return s.Extend(ctx, ExtendOptions{Volume: v.UUID, Size: exactSize(v.SizeBytes)})
}
