package volume

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/retry"
	"github.com/blk-project/blk/iscsi"
	"github.com/blk-project/blk/state"
)

type DetachOptions struct {
	Volume   string
	Instance string // when set, the volume must be attached to it
	Force    bool
	// killedAttach rolls back an attach whose process died (the volume
	// attaching), stopping at the first step that fails, as a plain
	// detach does: the volume then stays held.
	killedAttach bool
}

// DetachResult tells what detach did.
type DetachResult struct {
	Volume     Volume
	WasPresent bool     // false: the volume was not attached
	Warnings   []string // --force: steps that failed and were passed over
}

// detachWait bounds how long a guest may take to release a disk, per try.
var detachWait = 10 * time.Second

// Detach unplugs the disk, then undoes what made the volume reachable (the
// SCSI device, session and iSCSI export; or the NFS mount, once no other
// attachment on the host needs it), each step idempotent. A failed step leaves the volume
// detaching with the step recorded; running detach again continues. With
// Force every step is tried whatever fails before it, and the volume ends
// available.
func (s *Service) Detach(ctx context.Context, o DetachOptions) (res DetachResult, err error) {
	v, err := s.State.Volume(ctx, o.Volume)
	if err != nil {
		return res, err
	}
	res.Volume = volumeOf(v)
	rec, err := s.State.Attachment(ctx, v.UUID)
	if errors.Is(err, state.ErrNotFound) && v.Status == state.Available {
		return res, nil
	}
	if err != nil {
		return res, err
	}
	if o.Instance != "" && rec.Instance != o.Instance {
		return res, conflict("volume %q is attached to %s, not %s", v.Name, rec.Instance, o.Instance)
	}
	if _, err = s.backendOf(v); err != nil {
		return res, err
	}
	from := []string{state.InUse}
	if v.Status == state.Detaching || (o.Force || o.killedAttach) && v.Status == state.Attaching {
		// Continue a detach, or clean up a killed attach: Claim takes it
		// over only from a process proven gone.
		from = []string{v.Status}
	}
	res.WasPresent = true
	op, err := s.State.Claim(ctx, "detach", v.UUID, from, state.Detaching)
	if err != nil {
		var ce *state.ConflictError
		if errors.As(err, &ce) && ce.Status == state.Attaching && ce.Holder == "" {
			ce.Reason = "is attaching and its attach is gone: clean up with 'blk volume detach --force " + v.Name + "'"
		}
		return res, err
	}
	defer func() { op.End(ctx, err) }()
	res.Warnings, err = s.disconnect(ctx, rec, o.Force)
	if err != nil {
		return res, fmt.Errorf("detach volume %q from %q: %w (the volume stays detaching; run detach again to continue, or with --force)", v.Name, rec.Instance, err)
	}
	v, err = s.State.FinishDetach(ctx, v.UUID)
	res.Volume = volumeOf(v)
	return res, err
}

// disconnect runs the detach steps. Without force the first failure stops
// it; with force failures become warnings.
func (s *Service) disconnect(ctx context.Context, rec state.AttachmentRecord, force bool) ([]string, error) {
	v, err := s.State.Volume(ctx, rec.Volume)
	if err != nil {
		return nil, err
	}
	b, err := s.backendOf(v)
	if err != nil {
		return nil, err
	}
	p, err := s.provider(v.Backend, b)
	if err != nil {
		return nil, err
	}
	var warnings []string
	do := func(name string, fn func() error) error {
		err := fn()
		if err == nil {
			rec.Step = name
			return s.State.UpdateAttachment(ctx, rec)
		}
		if force {
			warnings = append(warnings, fmt.Sprintf("%s: %v", name, err))
			return nil
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	serial := hypervisor.SerialOf(v.UUID)
	steps := append([]detachStep{
		{"libvirt-detached", func() error {
			hv, err := s.Hosts.Hypervisor(ctx, rec.Host)
			if err != nil {
				return err
			}
			err = s.unplug(ctx, hv, rec.Instance, serial)
			if errors.Is(err, hypervisor.ErrNoDomain) {
				return nil // the domain is gone, and its disk with it
			}
			return err
		}},
	}, p.release(ctx, rec)...)
	for _, st := range steps {
		if err := do(st.name, st.fn); err != nil {
			return warnings, err
		}
	}
	return warnings, nil
}

// removeTarget removes the ACL, account, LUN and target of a volume; what is
// already gone is skipped. The target id comes from tgtd, as a killed attach
// may never have recorded it.
func (s *Service) removeTarget(ctx context.Context, t iscsi.Target, conn state.ConnectionInfo) error {
	if conn.AuthUsername != "" {
		if err := t.DeleteAccount(ctx, conn.AuthUsername); err != nil {
			return err
		}
	}
	ids, err := t.Targets(ctx)
	if err != nil {
		return err
	}
	// A command of a killed attach may still be landing on tgtd: look again
	// after removing, and remove again, until the target stays gone.
	removals := 0
	return retry.Do(ctx, retry.Policy{Attempts: 5, Delay: 200 * time.Millisecond, Retry: func(err error) bool { return errors.Is(err, errTargetBack) }},
		func() error {
			tid, ok := ids[conn.TargetIQN]
			if !ok {
				return nil
			}
			if conn.InitiatorIQN != "" {
				if err = t.Unbind(ctx, tid, conn.InitiatorIQN); err != nil {
					return err
				}
			}
			if err = t.DeleteLUN(ctx, tid, lunID); err != nil {
				return err
			}
			if err = t.Delete(ctx, tid); err != nil {
				return err
			}
			removals++
			if ids, err = t.Recheck(ctx); err != nil {
				return err
			}
			if _, ok := ids[conn.TargetIQN]; ok {
				return fmt.Errorf("target %s (tid %d) is still there after %d removals: %w", conn.TargetIQN, tid, removals, errTargetBack)
			}
			return nil
		})
}

var errTargetBack = errors.New("it came back")

// unplug removes the disk with serial from the domain: from the persistent
// definition, then from the live one, asking again while the guest has not
// let go. libvirt reporting success is no proof: only the live XML is. A
// shut-off domain has only the persistent definition, and no guest to wait
// for.
func (s *Service) unplug(ctx context.Context, hv hypervisor.Hypervisor, domain, serial string) error {
	active, err := hv.Active(ctx, domain)
	if err != nil {
		return err
	}
	for _, persistent := range []bool{true, false} {
		if !persistent && !active {
			break
		}
		x, err := hv.DomainXML(ctx, domain, persistent)
		if err != nil {
			return err
		}
		disks, err := hypervisor.Disks(x)
		if err != nil {
			return err
		}
		for _, d := range disks {
			if d.Serial != serial {
				continue
			}
			dx, err := d.Marshal()
			if err != nil {
				return err
			}
			flags := hypervisor.Flags{Persistent: persistent, Live: !persistent}
			if persistent {
				if err := hv.DetachDevice(ctx, domain, dx, flags); err != nil {
					return err
				}
				continue
			}
			// The guest may ignore a request: ask again. A request while the
			// guest is still releasing the disk is refused with "already in
			// the process of unplug", which is no failure.
			return retry.Do(ctx, retry.Policy{Attempts: 3, Retry: func(err error) bool { return errors.Is(err, hypervisor.ErrNotReleased) }},
				func() error {
					if err := hv.DetachDevice(ctx, domain, dx, flags); err != nil && !strings.Contains(err.Error(), "in the process of unplug") {
						return err
					}
					return hypervisor.WaitGone(ctx, hv, domain, serial, detachWait)
				})
		}
	}
	return nil
}
