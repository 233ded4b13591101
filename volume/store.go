package volume

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/blk-project/blk/state"
)

// Store is what the workflows need of the state file.
type Store interface {
	Volume(ctx context.Context, ref string) (state.Volume, error)
	ListVolumes(ctx context.Context, f state.VolumeFilter) ([]state.Volume, error)
	WriteVolumesJSON(ctx context.Context, f state.VolumeFilter, w io.Writer) error
	Path() string
	Missing() bool // no state file: reads are empty
	BackendUsage(ctx context.Context) (map[string]state.BackendUsage, error)
	Attachment(ctx context.Context, uuid string) (state.AttachmentRecord, error)
	AttachmentsOn(ctx context.Context, host string) ([]state.AttachmentRecord, error)
	Holder(ctx context.Context, object string) string
	Stale(ctx context.Context, object string) bool
	ReservedDevices(ctx context.Context, host, instance string) ([]string, error)
	WipeRequested(ctx context.Context, object string) (bool, error)
	Attachments(ctx context.Context) ([]state.AttachmentRecord, error)
	RunningOps(ctx context.Context) ([]state.OpRecord, error)

	// InsertVolume records a new volume and its create operation at once.
	InsertVolume(ctx context.Context, v *state.Volume) (Op, error)
	MoveVolume(ctx context.Context, uuid string, m state.Move) (state.Volume, error)
	DeleteVolume(ctx context.Context, uuid, from string) error
	Reserve(ctx context.Context, uuid string, a state.AttachmentRecord) (state.Volume, error)
	// ReserveOp is Reserve that journals op at once.
	ReserveOp(ctx context.Context, uuid string, a state.AttachmentRecord, op string) (state.Volume, Op, error)
	UpdateAttachment(ctx context.Context, a state.AttachmentRecord) error
	FinishAttach(ctx context.Context, uuid string) (state.Volume, error)
	Unreserve(ctx context.Context, uuid string) (state.Volume, error)
	FinishDetach(ctx context.Context, uuid string) (state.Volume, error)
	BeginOp(ctx context.Context, op, object string) (Op, error)
	// Claim moves the volume and journals op at once, unless a live
	// process holds it.
	Claim(ctx context.Context, op, uuid string, from []string, to string) (Op, error)
	// EndStaleOp closes a running operation whose owner is provably gone.
	EndStaleOp(ctx context.Context, id int64) (bool, error)
	// AdoptVolume records a volume found with no row, available.
	AdoptVolume(ctx context.Context, v *state.Volume) error
	// ResetVolume sets a volume's status, whatever it was (reset-state).
	ResetVolume(ctx context.Context, uuid string, r state.Reset) (state.Volume, error)

	Snapshot(ctx context.Context, ref string) (state.Snapshot, error)
	ListSnapshots(ctx context.Context, volume string) ([]state.Snapshot, error)
	// InsertSnapshot records a new snapshot and its create operation at once.
	InsertSnapshot(ctx context.Context, sn *state.Snapshot) (Op, error)
	MoveSnapshot(ctx context.Context, uuid string, m state.SnapshotMove) (state.Snapshot, error)
	DeleteSnapshot(ctx context.Context, uuid, from string) error
	ClaimSnapshot(ctx context.Context, op, uuid string, from []string, to string) (Op, error)

	// RecordBackup and ForgetBackups keep the cache of backups (the
	// repositories hold the truth).
	RecordBackup(ctx context.Context, b state.BackupRecord) error
	ForgetBackups(ctx context.Context, uuids ...string) error
	// Lock journals op on an object that is no row (a thin pool), unless a
	// live process holds it.
	Lock(ctx context.Context, op, object string) (Op, error)
	Close() error
}

// Op is a journaled operation, ended with the workflow's outcome.
type Op interface {
	// Step records how far it got, for a rerun to read.
	Step(ctx context.Context, step string) error
	End(ctx context.Context, err error) error
}

// stateStore is the state file itself.
type stateStore struct{ *state.Store }

func (s stateStore) InsertVolume(ctx context.Context, v *state.Volume) (Op, error) {
	o, err := s.Store.InsertVolume(ctx, v)
	if err != nil {
		return nil, err
	}
	return o, nil
}

func (s stateStore) ReserveOp(ctx context.Context, uuid string, a state.AttachmentRecord, op string) (state.Volume, Op, error) {
	v, o, err := s.Store.ReserveOp(ctx, uuid, a, op)
	if err != nil {
		return v, nil, err
	}
	return v, o, nil
}

func (s stateStore) BeginOp(ctx context.Context, op, object string) (Op, error) {
	o, err := s.Store.BeginOp(ctx, op, object)
	if err != nil {
		return nil, err
	}
	return o, nil
}

func (s stateStore) Claim(ctx context.Context, op, uuid string, from []string, to string) (Op, error) {
	o, err := s.Store.Claim(ctx, op, uuid, from, to)
	if err != nil {
		return nil, err
	}
	return o, nil
}

func (s stateStore) InsertSnapshot(ctx context.Context, sn *state.Snapshot) (Op, error) {
	o, err := s.Store.InsertSnapshot(ctx, sn)
	if err != nil {
		return nil, err
	}
	return o, nil
}

func (s stateStore) ClaimSnapshot(ctx context.Context, op, uuid string, from []string, to string) (Op, error) {
	o, err := s.Store.ClaimSnapshot(ctx, op, uuid, from, to)
	if err != nil {
		return nil, err
	}
	return o, nil
}

func (s stateStore) Lock(ctx context.Context, op, object string) (Op, error) {
	o, err := s.Store.Lock(ctx, op, object)
	if err != nil {
		return nil, err
	}
	return o, nil
}

// dryStore is the state file in a dry run: reads pass through, and each
// change is checked as the real one would be (a compare-and-set on the
// status) and then kept in memory only, so the later steps of the same
// workflow see it and the file never does.
type dryStore struct {
	Store
	mu    sync.Mutex
	rows  map[string]dryRow // by UUID
	snaps map[string]drySnap
}

type drySnap struct {
	sn   state.Snapshot
	gone bool
}

type dryRow struct {
	v    state.Volume
	gone bool
}

func newDryStore(s Store) *dryStore {
	return &dryStore{Store: s, rows: map[string]dryRow{}, snaps: map[string]drySnap{}}
}

func (d *dryStore) Volume(ctx context.Context, ref string) (state.Volume, error) {
	d.mu.Lock()
	for uuid, r := range d.rows {
		if uuid == ref || r.v.Name == ref {
			d.mu.Unlock()
			if r.gone {
				return state.Volume{}, fmt.Errorf("volume %q: %w", ref, ErrNotFound)
			}
			return r.v, nil
		}
	}
	d.mu.Unlock()
	return d.Store.Volume(ctx, ref)
}

func (d *dryStore) set(v state.Volume, gone bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rows[v.UUID] = dryRow{v, gone}
}

// move is the compare-and-set of every status change.
func (d *dryStore) move(ctx context.Context, uuid string, from []string, to string) (state.Volume, error) {
	v, err := d.Volume(ctx, uuid)
	if err != nil {
		return v, err
	}
	if !slices.Contains(from, v.Status) {
		return v, &state.ConflictError{Volume: v.Name, Status: v.Status, Holder: d.Holder(ctx, uuid)}
	}
	v.PreviousStatus, v.Status = v.Status, to
	d.set(v, false)
	return v, nil
}

func (d *dryStore) InsertVolume(ctx context.Context, v *state.Volume) (Op, error) {
	if old, err := d.Volume(ctx, v.Name); err == nil {
		return nil, &state.ConflictError{Volume: v.Name, Status: old.Status, Reason: "already exists (" + old.Status + ")",
			Holder: d.Holder(ctx, old.UUID)}
	}
	d.set(*v, false)
	return dryOp{}, nil
}

func (d *dryStore) MoveVolume(ctx context.Context, uuid string, m state.Move) (state.Volume, error) {
	v, err := d.move(ctx, uuid, m.From, m.To)
	if err != nil {
		return v, err
	}
	if m.SizeBytes != 0 {
		v.SizeBytes = m.SizeBytes
	}
	if m.Path != "" {
		v.Path = m.Path
	}
	if m.LastError != nil {
		v.LastError = *m.LastError
	}
	d.set(v, false)
	return v, nil
}

func (d *dryStore) DeleteVolume(ctx context.Context, uuid, from string) error {
	v, err := d.move(ctx, uuid, []string{from}, "")
	if err == nil {
		d.set(v, true)
	}
	return err
}

func (d *dryStore) Reserve(ctx context.Context, uuid string, a state.AttachmentRecord) (state.Volume, error) {
	return d.move(ctx, uuid, []string{state.Available}, state.Attaching)
}

func (d *dryStore) ReserveOp(ctx context.Context, uuid string, a state.AttachmentRecord, _ string) (state.Volume, Op, error) {
	v, err := d.Reserve(ctx, uuid, a)
	return v, dryOp{}, err
}

func (d *dryStore) UpdateAttachment(context.Context, state.AttachmentRecord) error { return nil }

func (d *dryStore) FinishAttach(ctx context.Context, uuid string) (state.Volume, error) {
	return d.move(ctx, uuid, []string{state.Attaching}, state.InUse)
}

func (d *dryStore) Unreserve(ctx context.Context, uuid string) (state.Volume, error) {
	return d.move(ctx, uuid, []string{state.Attaching}, state.Available)
}

func (d *dryStore) FinishDetach(ctx context.Context, uuid string) (state.Volume, error) {
	v, err := d.move(ctx, uuid, []string{state.Detaching}, state.Available)
	v.Attachment = nil
	return v, err
}

func (d *dryStore) BeginOp(context.Context, string, string) (Op, error) { return dryOp{}, nil }

func (d *dryStore) Claim(ctx context.Context, _, uuid string, from []string, to string) (Op, error) {
	v, err := d.Volume(ctx, uuid)
	if err != nil {
		return nil, err
	}
	if slices.Contains(from, v.Status) && !d.Stale(ctx, uuid) {
		return nil, &state.ConflictError{Volume: v.Name, Status: v.Status, Holder: d.Holder(ctx, uuid)}
	}
	if _, err := d.move(ctx, uuid, from, to); err != nil {
		return nil, err
	}
	return dryOp{}, nil
}

func (d *dryStore) RecordBackup(context.Context, state.BackupRecord) error { return nil }
func (d *dryStore) ForgetBackups(context.Context, ...string) error         { return nil }
func (d *dryStore) Lock(context.Context, string, string) (Op, error)       { return dryOp{}, nil }

func (d *dryStore) EndStaleOp(context.Context, int64) (bool, error) { return true, nil }

func (d *dryStore) AdoptVolume(ctx context.Context, v *state.Volume) error {
	if old, err := d.Volume(ctx, v.Name); err == nil {
		return &state.ConflictError{Volume: v.Name, Status: old.Status, Reason: "cannot be adopted: its name is taken by another row"}
	}
	v.Status = state.Available
	d.set(*v, false)
	return nil
}

func (d *dryStore) ResetVolume(ctx context.Context, uuid string, r state.Reset) (state.Volume, error) {
	v, err := d.Volume(ctx, uuid)
	if err != nil {
		return v, err
	}
	if !d.Stale(ctx, uuid) {
		return v, &state.ConflictError{Volume: v.Name, Status: v.Status, Holder: d.Holder(ctx, uuid)}
	}
	v.PreviousStatus, v.Status, v.LastError = v.Status, r.To, r.Reason
	if r.DropAttachment {
		v.Attachment = nil
	}
	d.set(v, false)
	return v, nil
}

type dryOp struct{}

func (dryOp) Step(context.Context, string) error { return nil }
func (dryOp) End(context.Context, error) error   { return nil }

func (d *dryStore) Snapshot(ctx context.Context, ref string) (state.Snapshot, error) {
	d.mu.Lock()
	for uuid, r := range d.snaps {
		if uuid == ref || r.sn.Name == ref {
			d.mu.Unlock()
			if r.gone {
				return state.Snapshot{}, fmt.Errorf("snapshot %q: %w", ref, ErrNotFound)
			}
			return r.sn, nil
		}
	}
	d.mu.Unlock()
	return d.Store.Snapshot(ctx, ref)
}

func (d *dryStore) setSnap(sn state.Snapshot, gone bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.snaps[sn.UUID] = drySnap{sn, gone}
}

func (d *dryStore) moveSnap(ctx context.Context, uuid string, from []string, to string) (state.Snapshot, error) {
	sn, err := d.Snapshot(ctx, uuid)
	if err != nil {
		return sn, err
	}
	if !slices.Contains(from, sn.Status) {
		return sn, &state.ConflictError{Kind: "snapshot", Volume: sn.Name, Status: sn.Status, Holder: d.Holder(ctx, uuid)}
	}
	sn.Status = to
	d.setSnap(sn, false)
	return sn, nil
}

func (d *dryStore) InsertSnapshot(ctx context.Context, sn *state.Snapshot) (Op, error) {
	if old, err := d.Snapshot(ctx, sn.Name); err == nil {
		return nil, &state.ConflictError{Kind: "snapshot", Volume: sn.Name, Status: old.Status, Reason: "already exists (" + old.Status + ")"}
	}
	d.setSnap(*sn, false)
	return dryOp{}, nil
}

func (d *dryStore) MoveSnapshot(ctx context.Context, uuid string, m state.SnapshotMove) (state.Snapshot, error) {
	sn, err := d.moveSnap(ctx, uuid, m.From, m.To)
	if err != nil {
		return sn, err
	}
	if m.SizeBytes != 0 {
		sn.SizeBytes = m.SizeBytes
	}
	if m.Path != "" {
		sn.Path = m.Path
	}
	if m.Consistency != "" {
		sn.Consistency = m.Consistency
	}
	d.setSnap(sn, false)
	return sn, nil
}

func (d *dryStore) DeleteSnapshot(ctx context.Context, uuid, from string) error {
	sn, err := d.moveSnap(ctx, uuid, []string{from}, "")
	if err == nil {
		d.setSnap(sn, true)
	}
	return err
}

func (d *dryStore) ClaimSnapshot(ctx context.Context, _, uuid string, from []string, to string) (Op, error) {
	sn, err := d.Snapshot(ctx, uuid)
	if err != nil {
		return nil, err
	}
	if slices.Contains(from, sn.Status) && !d.Stale(ctx, uuid) {
		return nil, &state.ConflictError{Kind: "snapshot", Volume: sn.Name, Status: sn.Status, Holder: d.Holder(ctx, uuid)}
	}
	if _, err := d.moveSnap(ctx, uuid, from, to); err != nil {
		return nil, err
	}
	return dryOp{}, nil
}
