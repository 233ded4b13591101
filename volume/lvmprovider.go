package volume

import (
	"context"
	"errors"
	"fmt"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/fault"
	"github.com/blk-project/blk/iscsi"
	"github.com/blk-project/blk/lvm"
	"github.com/blk-project/blk/state"
)

// lvmProvider makes volumes as LVs and exports them over iSCSI (tgt on the
// storage host, open-iscsi on the compute host), as Cinder's LVM driver.
type lvmProvider struct {
	s    *Service
	name string
	b    config.Backend
}

func (p lvmProvider) thin(o CreateOptions) (bool, error) {
	if o.Preallocate {
		return false, invalid("backend %q is lvm: --preallocate is for nfs backends (an LV is thick unless --thin)", p.name)
	}
	if o.Thin && p.b.ThinPool == "" {
		return false, invalid("backend %q has no thin_pool: --thin needs one", p.name)
	}
	return o.Thin, nil
}

func (p lvmProvider) make(ctx context.Context, r *reverter, v state.Volume) (int64, string, error) {
	l, err := p.s.lvm(ctx, p.b)
	if err != nil {
		return 0, "", err
	}
	lv, err := p.s.createLV(ctx, r, l, p.b.ThinPool, v)
	return lv.SizeBytes, lv.Path(), err
}

func (p lvmProvider) remove(ctx context.Context, v state.Volume, wipe bool) error {
	l, err := p.s.lvm(ctx, p.b)
	if err != nil {
		return err
	}
	// A thin volume's last backup snapshot is blk's, not the user's: it
	// goes with the volume (its backups stay in their repository).
	// (A thick one's are removed by each backup; a killed one's are
	// reconcile's.)
	if v.Thin {
		if err := removeBackupSnaps(ctx, l, v.UUID); err != nil {
			return fmt.Errorf("remove the backup snapshots of %s: %w", v.Name, err)
		}
	}
	return p.s.removeLV(ctx, l, v, wipe)
}

func (p lvmProvider) fill(ctx context.Context, info *BackendInfo) error {
	return p.s.fillLVM(ctx, info)
}

func (lvmProvider) allocated(context.Context, state.Volume) (int64, bool) { return 0, false }

func (p lvmProvider) connection(v state.Volume, o AttachOptions) state.ConnectionInfo {
	conn := state.ConnectionInfo{DriverVolumeType: "iscsi", TargetPortal: p.b.Portal, TargetIQN: p.b.IQNPrefix + ":" + v.UUID,
		TargetLUN: lunID, Bus: o.Bus, ReadOnly: o.ReadOnly}
	if p.b.CHAP {
		conn.AuthMethod, conn.AuthUsername, conn.AuthPassword = "CHAP", "blk-"+v.UUID[:8], newSecret()
	}
	return conn
}

func (p lvmProvider) connect(ctx context.Context, r *reverter, v state.Volume, rec *state.AttachmentRecord) error {
	return p.s.connect(ctx, r, p.b, v, rec)
}

func (p lvmProvider) release(ctx context.Context, rec state.AttachmentRecord) []detachStep {
	conn := rec.Conn
	initiator := func() (iscsi.Initiator, error) {
		compute, err := p.s.Hosts.Runner(rec.Host)
		return iscsi.Initiator{Run: compute}, err
	}
	return []detachStep{
		{"device-removed", func() error {
			i, err := initiator()
			if err != nil {
				return err
			}
			return i.RemoveDevice(ctx, iscsi.ByPath(conn.TargetPortal, conn.TargetIQN, lunID))
		}},
		{"logged-out", func() error {
			i, err := initiator()
			if err != nil {
				return err
			}
			return i.Logout(ctx, conn.TargetPortal, conn.TargetIQN)
		}},
		{"target-removed", func() error {
			storage, err := p.s.Hosts.Runner(p.b.Host)
			if err != nil {
				return err
			}
			return p.s.removeTarget(ctx, iscsi.Target{Run: storage}, conn)
		}},
	}
}

func (p lvmProvider) grow(ctx context.Context, v state.Volume, size int64) (int64, error) {
	l, err := p.s.lvm(ctx, p.b)
	if err != nil {
		return 0, err
	}
	lv, err := l.Extend(ctx, lvName(v.UUID), size)
	if errors.Is(err, lvm.ErrNoSpace) {
		err = fault.Wrap(ErrConflict, err)
	}
	return lv.SizeBytes, err
}

func (p lvmProvider) reveal(ctx context.Context, v state.Volume, rec state.AttachmentRecord, size int64) error {
	return p.s.revealISCSI(ctx, p.b.Host, v, rec, size)
}

func (p lvmProvider) exists(ctx context.Context, v state.Volume) (bool, error) {
	l, err := p.s.lvm(ctx, p.b)
	if err != nil {
		return false, err
	}
	_, err = l.LV(ctx, lvName(v.UUID))
	if errors.Is(err, lvm.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
