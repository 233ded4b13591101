package volume

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/state"
)

// The kinds of drift reconcile reports. Their names are a contract with
// scripts (-o json).
const (
	DriftOrphanLV         = "orphan-lv"         // an LV tagged blk-vol-<uuid> with no row
	DriftOrphanFile       = "orphan-file"       // an NFS volume file with no row
	DriftMissingLV        = "missing-lv"        // a row whose LV is gone
	DriftMissingFile      = "missing-file"      // a row whose NFS file is gone
	DriftOrphanTarget     = "orphan-target"     // a tgt target of blk's with no attachment
	DriftOrphanAccount    = "orphan-account"    // a CHAP account of blk's no attachment uses
	DriftOrphanACL        = "orphan-acl"        // an initiator bound to a target that is not the attachment's
	DriftMissingTarget    = "missing-target"    // an in-use volume not exported (storage host rebooted)
	DriftIncompleteTarget = "incomplete-target" // its target lacks the LUN, ACL or CHAP account
	DriftOrphanSession    = "orphan-session"    // an iSCSI session to a blk target with no attachment
	DriftOrphanNode       = "orphan-node"       // an iSCSI node record of a blk target with no attachment
	DriftMissingSession   = "missing-session"   // an in-use volume's compute host not logged in
	DriftOrphanMount      = "orphan-mount"      // an NFS mount under /var/lib/blk/mnt no attachment uses
	DriftMissingMount     = "missing-mount"     // an in-use NFS volume whose export is not mounted
	DriftMissingDisk      = "missing-disk"      // an attachment whose disk is not in the domain
	DriftOrphanDisk       = "orphan-disk"       // a disk with a volume's serial and no attachment
	DriftStaleOperation   = "stale-operation"   // a running operation whose owner is gone
	DriftStuckStatus      = "stuck-status"      // a transitional status no live operation holds
)

// fixOrder is the order --fix repairs in: a stuck workflow first (it
// cleans up after itself), then what is on the compute hosts (sessions
// hold targets open), then the exports, then what is made again.
var fixOrder = []string{DriftStaleOperation, DriftStuckStatus, DriftOrphanSession, DriftOrphanNode, DriftOrphanMount,
	DriftOrphanACL, DriftOrphanTarget, DriftOrphanAccount, DriftMissingTarget, DriftIncompleteTarget,
	DriftMissingSession, DriftMissingMount, DriftOrphanLV, DriftOrphanFile}

// Drift is one way the state file and a host disagree.
type Drift struct {
	Host   string `json:"host" yaml:"host"`
	Kind   string `json:"kind" yaml:"kind"`
	Object string `json:"object" yaml:"object"`           // what is on the host: an LV, a target IQN, a mount point
	Volume string `json:"volume,omitempty" yaml:"volume"` // its volume's name, or UUID when it has no row
	Detail string `json:"detail" yaml:"detail"`
	// Action is what --fix does, or, when it does nothing, what the
	// operator can do.
	Action string `json:"action" yaml:"action"`
	// Fixable says whether --fix (with --adopt, for an orphan LV or file)
	// repairs it.
	Fixable  bool   `json:"fixable" yaml:"fixable"`
	Fixed    bool   `json:"fixed" yaml:"fixed"`
	FixError string `json:"fix_error,omitempty" yaml:"fix_error,omitempty"`

	uuid  string // the volume it concerns, to leave out one a live operation holds
	adopt bool   // repaired only with --adopt
	fix   func(ctx context.Context) error
}

// HostDrift is reconcile's finding on one host.
type HostDrift struct {
	Host  string   `json:"host" yaml:"host"`
	Roles []string `json:"roles" yaml:"roles"`
	// Error says why some checks could not be made (the host is down).
	Error string  `json:"error,omitempty" yaml:"error,omitempty"`
	Drift []Drift `json:"drift" yaml:"drift"`
}

type ReconcileOptions struct {
	Host  string // only this host; "" for every one
	Fix   bool
	Adopt bool // with Fix: record orphan LVs and files as volumes
	// AdoptOnly repairs nothing but adopting: the state file was just
	// made (the old one lost), so every export and session would look
	// orphaned, and removing them would cut the guests using them off.
	AdoptOnly bool
}

// role is what a host is to blk, which says what is looked at there.
type role string

const (
	roleStorage role = "storage"
	roleCompute role = "compute"
	// roleState is no host: the checks of the state file alone, whose
	// drift is reported on the host it concerns.
	roleState role = "state"
)

// check finds one kind of drift. look reads reality on one host (hosts are
// looked at concurrently), and returns how to compare it with the state
// file, which is read once every host has been looked at: a thing made
// after its row (a target after its attachment) is then never taken for
// an orphan. Each kind of object blk makes is one check; a new kind
// (snapshots, pool metadata snapshots) is one more.
type check struct {
	name string
	role role
	look func(ctx context.Context, s *Service, host string) (compare func(*snapshot) []Drift, err error)
}

var checks = []check{
	{"lvm volumes", roleStorage, lookLVs},
	{"nfs volume files", roleStorage, lookFiles},
	{"tgt targets", roleStorage, lookTargets},
	{"iscsi sessions", roleCompute, lookSessions},
	{"nfs mounts", roleCompute, lookMounts},
	{"domain disks", roleCompute, lookDisks},
	{"operations", roleState, lookOperations},
	{"backup snapshots", roleStorage, lookBackupSnaps},
}

// snapshot is the state file, read once for a reconcile.
type snapshot struct {
	vols map[string]state.Volume           // by UUID
	snps []state.Snapshot                  // the snapshot rows
	atts map[string]state.AttachmentRecord // by volume UUID
	ops  []state.OpRecord                  // running
	// busy are objects a running operation holds whose owner may be
	// alive: what reality shows of them is work in progress, not drift.
	busy map[string]bool
}

func (s *Service) snapshot(ctx context.Context) (*snapshot, error) {
	snap := &snapshot{vols: map[string]state.Volume{}, atts: map[string]state.AttachmentRecord{}, busy: map[string]bool{}}
	vols, err := s.State.ListVolumes(ctx, state.VolumeFilter{})
	if err != nil {
		return nil, err
	}
	for _, v := range vols {
		snap.vols[v.UUID] = v
	}
	atts, err := s.State.Attachments(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range atts {
		snap.atts[a.Volume] = a
	}
	if snap.snps, err = s.State.ListSnapshots(ctx, ""); err != nil {
		return nil, err
	}
	if snap.ops, err = s.State.RunningOps(ctx); err != nil {
		return nil, err
	}
	for _, o := range snap.ops {
		if !o.Gone {
			snap.busy[o.Object] = true
		}
	}
	return snap, nil
}

// name is how a volume is named in a report: its name, or its UUID when
// it has no row.
func (snap *snapshot) name(uuid string) string {
	if v, ok := snap.vols[uuid]; ok {
		return v.Name
	}
	return uuid
}

// Reconcile compares the state file with every configured host (or the
// one asked) and returns the drift found, per host. With Fix it repairs
// what is safe and marks each item fixed or not; it never removes a
// volume's data. A host that could not be looked at is reported with its
// error, and the returned error names it.
func (s *Service) Reconcile(ctx context.Context, o ReconcileOptions) ([]HostDrift, error) {
	if o.Adopt && !o.Fix {
		return nil, invalid("--adopt goes with --fix")
	}
	if o.Host != "" {
		if _, ok := s.Config.Hosts[o.Host]; !ok {
			return nil, fmt.Errorf("host %q: %w (configured: %s)", o.Host, ErrNotFound, strings.Join(slices.Sorted(maps.Keys(s.Config.Hosts)), ", "))
		}
	}
	atts, err := s.State.Attachments(ctx)
	if err != nil {
		return nil, err
	}
	roles := s.reconcileRoles(atts)
	reports := map[string]*HostDrift{}
	for h, rs := range roles {
		if o.Host == "" || o.Host == h {
			reports[h] = &HostDrift{Host: h, Roles: rs, Drift: []Drift{}}
		}
	}

	// Reality first, every host at once (bounded), then the state file.
	type looked struct {
		host    string
		compare func(*snapshot) []Drift
	}
	var mu sync.Mutex
	var compares []looked
	hostErrs := map[string][]error{}
	names := slices.Sorted(maps.Keys(reports))
	s.Hosts.Each(ctx, names, 0, func(ctx context.Context, h string) error {
		for _, c := range checks {
			if c.role == roleState || !slices.Contains(reports[h].Roles, string(c.role)) {
				continue
			}
			compare, lerr := c.look(ctx, s, h)
			mu.Lock()
			if lerr != nil {
				hostErrs[h] = append(hostErrs[h], fmt.Errorf("%s: %w", c.name, lerr))
			} else if compare != nil {
				compares = append(compares, looked{h, compare})
			}
			mu.Unlock()
		}
		return nil
	})
	for _, c := range checks {
		if c.role != roleState {
			continue
		}
		compare, lerr := c.look(ctx, s, "")
		if lerr != nil {
			return nil, lerr
		}
		compares = append(compares, looked{"state", compare})
	}
	snap, err := s.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	var all []*Drift
	for _, l := range compares {
		for _, d := range l.compare(snap) {
			if d.uuid != "" && snap.busy[d.uuid] {
				continue // an operation is at work on it
			}
			if d.Host == "" {
				d.Host = l.host
			}
			if o.Host != "" && d.Host != o.Host {
				continue
			}
			d.Fixable = d.fix != nil && (!d.adopt || o.Adopt)
			rep := reports[d.Host]
			if rep == nil { // an operation's owner on a machine not configured
				rep = &HostDrift{Host: d.Host, Roles: []string{"admin"}, Drift: []Drift{}}
				reports[d.Host] = rep
			}
			rep.Drift = append(rep.Drift, d)
		}
	}
	for _, rep := range reports {
		slices.SortStableFunc(rep.Drift, func(a, b Drift) int {
			return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Object, b.Object))
		})
		for i := range rep.Drift {
			all = append(all, &rep.Drift[i])
		}
		if errs := hostErrs[rep.Host]; len(errs) > 0 {
			rep.Error = errors.Join(errs...).Error()
		}
	}
	if o.Fix {
		s.fixDrift(ctx, all, o)
	}
	out := make([]HostDrift, 0, len(reports))
	for _, h := range slices.Sorted(maps.Keys(reports)) {
		out = append(out, *reports[h])
	}
	if len(hostErrs) > 0 {
		var down []string
		for _, h := range slices.Sorted(maps.Keys(hostErrs)) {
			down = append(down, h+": "+errors.Join(hostErrs[h]...).Error())
		}
		return out, fmt.Errorf("reconcile could not look at every host: %s", strings.Join(down, "; "))
	}
	return out, nil
}

// fixDrift runs the repairs in fixOrder, one at a time: each looks again
// before it acts, as an earlier one (a workflow finished) may have done its
// work.
func (s *Service) fixDrift(ctx context.Context, all []*Drift, o ReconcileOptions) {
	// A kind fixOrder does not name is repaired last.
	rank := func(kind string) int {
		if i := slices.Index(fixOrder, kind); i >= 0 {
			return i
		}
		return len(fixOrder)
	}
	slices.SortStableFunc(all, func(a, b *Drift) int { return cmp.Compare(rank(a.Kind), rank(b.Kind)) })
	for _, d := range all {
		if d.fix == nil || d.adopt && !o.Adopt {
			continue
		}
		if o.AdoptOnly && !d.adopt {
			d.FixError = "not repaired: the state file was new, so this may be in use; check it, then run --fix again"
			continue
		}
		if err := d.fix(ctx); err != nil {
			d.FixError = err.Error()
			continue
		}
		d.Fixed = true
	}
}

// Unfixed counts the drift items a report still holds.
func Unfixed(reports []HostDrift) int {
	n := 0
	for _, r := range reports {
		for _, d := range r.Drift {
			if !d.Fixed {
				n++
			}
		}
	}
	return n
}

// reconcileRoles says what each configured host is to blk: the hosts of backends
// are storage hosts; the compute hosts are the configured ones, or, when
// none are, every other host and any host an attachment names.
func (s *Service) reconcileRoles(atts []state.AttachmentRecord) map[string][]string {
	roles := map[string][]string{}
	add := func(h string, r role) {
		if _, ok := s.Config.Hosts[h]; ok && !slices.Contains(roles[h], string(r)) {
			roles[h] = append(roles[h], string(r))
		}
	}
	for _, b := range s.Config.Backends {
		add(b.Host, roleStorage)
	}
	compute := s.Config.Compute
	if len(compute) == 0 {
		for h := range s.Config.Hosts {
			if roles[h] == nil {
				compute = append(compute, h)
			}
		}
		for _, a := range atts {
			compute = append(compute, a.Host)
		}
	}
	for _, h := range compute {
		add(h, roleCompute)
	}
	for h := range roles {
		slices.Sort(roles[h])
	}
	return roles
}

// backendsOn are the configured backends of type typ on host, by name.
func (s *Service) backendsOn(host, typ string) map[string]config.Backend {
	out := map[string]config.Backend{}
	for n, b := range s.Config.Backends {
		if b.Host == host && b.Type == typ {
			out[n] = b
		}
	}
	return out
}

func (s *Service) hasBackend(typ string) bool {
	for _, b := range s.Config.Backends {
		if b.Type == typ {
			return true
		}
	}
	return false
}

// volumeUUID is the UUID in a volume's LV or file name, or "".
func volumeUUID(name string) string {
	u, ok := strings.CutPrefix(name, "volume-")
	if !ok || !uuidRE.MatchString(u) {
		return ""
	}
	return u
}

// resumers finish or roll back what a workflow killed in a status left,
// with the workflow's own rerun: a new workflow that has a transitional
// status adds its own here.
var resumers = map[string]struct {
	action string
	run    func(ctx context.Context, s *Service, v state.Volume) error
}{
	state.Creating: {"--fix finishes the create (as rerunning it would)", func(ctx context.Context, s *Service, v state.Volume) error {
		o := CreateOptions{Name: v.Name, Backend: v.Backend, Thin: v.Thin}
		kind, from, _ := strings.Cut(v.Source, ":")
		switch kind {
		case "image":
			o.FromImage = from
		case "snapshot":
			o.FromSnapshot = from
		case "volume":
			o.FromVolume = from
		case "backup": // found in the default repository, or not at all
			o.FromBackup = from
		}
		if b, ok := s.Config.Backends[v.Backend]; ok && b.Type == "nfs" {
			o.Thin, o.Preallocate = false, !v.Thin
		}
		_, err := s.create(ctx, o, v.SizeBytes)
		return err
	}},
	state.Deleting: {"--fix finishes the delete (as rerunning it would)", func(ctx context.Context, s *Service, v state.Volume) error {
		_, err := s.Delete(ctx, DeleteOptions{Refs: []string{v.UUID}})
		return err
	}},
	state.Attaching: {"--fix rolls the attach back (as 'blk volume detach --force' would)", func(ctx context.Context, s *Service, v state.Volume) error {
		_, err := s.Detach(ctx, DetachOptions{Volume: v.UUID, Force: true})
		return err
	}},
	state.Detaching: {"--fix finishes the detach (as rerunning it would)", func(ctx context.Context, s *Service, v state.Volume) error {
		_, err := s.Detach(ctx, DetachOptions{Volume: v.UUID})
		return err
	}},
	state.Extending: {"--fix finishes the extend (as rerunning it would)", func(ctx context.Context, s *Service, v state.Volume) error {
		_, err := s.FinishExtend(ctx, v.UUID)
		return err
	}},
	state.BackingUp: {"--fix thaws its guest and puts it back as it was (the backup was not made: run it again)", func(ctx context.Context, s *Service, v state.Volume) error {
		// Killed between freeze and thaw, the backup left the guest frozen.
		return s.putBack(ctx, v, state.BackingUp, statusBeforeBackup(v), func(ctx context.Context) error { return s.thawAttached(ctx, v) })
	}},
	state.Restoring: {"--fix marks it error_restoring (its data is part restored: run the restore again)", func(ctx context.Context, s *Service, v state.Volume) error {
		msg := "a restore into it was killed part-way: run it again"
		_, err := s.State.MoveVolume(ctx, v.UUID, state.Move{From: []string{state.Restoring}, To: state.ErrorRestoring, LastError: &msg})
		return err
	}},
	state.Snapshotting: {"--fix finishes the snapshot it was taking (as rerunning 'blk snapshot create' with its name would), else thaws its guest and puts it back",
		func(ctx context.Context, s *Service, v state.Volume) error {
			if sn, ok, err := s.snapshotIn(ctx, v.UUID, state.Creating); err != nil || ok {
				if err == nil {
					_, err = s.CreateSnapshot(ctx, SnapshotOptions{Volume: v.UUID, Name: sn.Name})
				}
				return err
			}
			// Held for a clone (whose new volume's create is finished on
			// its own), or killed before its snapshot had a row. Thawed
			// only once taken over: a live run may have frozen it since.
			return s.putBack(ctx, v, state.Snapshotting, statusBeforeBackup(v), func(ctx context.Context) error { return s.thawAttached(ctx, v) })
		}},
	state.Reverting: {"--fix finishes the revert (as rerunning 'blk snapshot revert' would), else puts it back available",
		func(ctx context.Context, s *Service, v state.Volume) error {
			if sn, ok, err := s.snapshotIn(ctx, v.UUID, state.Restoring); err != nil || ok {
				if err == nil {
					_, err = s.RevertSnapshot(ctx, sn.UUID)
				}
				return err
			}
			// Killed before it held the snapshot (nothing was merged), or
			// after the merge consumed it (the volume reads as the
			// snapshot): available either way.
			return s.putBack(ctx, v, state.Reverting, state.Available, nil)
		}},
}

// snapshotIn finds the volume's snapshot in status, if it has one.
func (s *Service) snapshotIn(ctx context.Context, volume, status string) (state.Snapshot, bool, error) {
	sns, err := s.State.ListSnapshots(ctx, volume)
	for _, sn := range sns {
		if sn.Status == status {
			return sn, true, nil
		}
	}
	return state.Snapshot{}, false, err
}

// stillIn says whether a row a repair was planned for is still in the
// status it was seen in: another repair (a clone's create finished) or a
// rerun may have moved it, or removed it (no error then).
func stillIn(status, was string, err error) (bool, error) {
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil && status == was, err
}

// putBack moves a volume a dead run held from status from to status to:
// it takes the dead run's operation over first (so nothing a live run does
// is touched), runs before, if any, and moves it.
func (s *Service) putBack(ctx context.Context, v state.Volume, from, to string, before func(context.Context) error) error {
	op, err := s.State.Claim(ctx, "reconcile", v.UUID, []string{from}, from)
	if err != nil {
		return err
	}
	if before != nil {
		if err = before(ctx); err != nil {
			return errors.Join(err, op.End(ctx, err))
		}
	}
	_, err = s.State.MoveVolume(ctx, v.UUID, state.Move{From: []string{from}, To: to})
	return errors.Join(err, op.End(ctx, err))
}

// snapshotResumers finish what a killed snapshot workflow left in a status,
// when its volume is not stuck too (then the volume's resumer does it).
var snapshotResumers = map[string]struct {
	action string
	run    func(ctx context.Context, s *Service, sn state.Snapshot) error
}{
	state.Creating: {"--fix finishes the snapshot create (as rerunning 'blk snapshot create' with its name would)", func(ctx context.Context, s *Service, sn state.Snapshot) error {
		_, err := s.CreateSnapshot(ctx, SnapshotOptions{Volume: sn.Volume, Name: sn.Name})
		return err
	}},
	state.Deleting: {"--fix finishes the snapshot delete (as rerunning it would)", func(ctx context.Context, s *Service, sn state.Snapshot) error {
		_, err := s.DeleteSnapshots(ctx, []string{sn.UUID})
		return err
	}},
	state.Restoring: {"--fix finishes the revert (as rerunning 'blk snapshot revert' would)", func(ctx context.Context, s *Service, sn state.Snapshot) error {
		_, err := s.RevertSnapshot(ctx, sn.UUID)
		return err
	}},
}

// endDeadOps ends the dead runs' operations on object that a repair left
// running (one that only moved a status takes nothing over), once the
// repair succeeded.
func (s *Service) endDeadOps(ctx context.Context, snap *snapshot, object string, err error) error {
	if err != nil {
		return err
	}
	for _, o := range snap.ops {
		if o.Object == object && o.Gone {
			if _, eerr := s.State.EndStaleOp(ctx, o.ID); eerr != nil {
				return eerr
			}
		}
	}
	return nil
}

// lookOperations reads nothing on a host: it finds the journal's running
// operations whose owners are gone, and volumes stuck in a transitional
// status that no live operation holds.
func lookOperations(_ context.Context, s *Service, _ string) (func(*snapshot) []Drift, error) {
	return s.compareOperations, nil
}

func (s *Service) compareOperations(snap *snapshot) []Drift {
	var out []Drift
	stuck := map[string]bool{}
	for _, u := range slices.Sorted(maps.Keys(snap.vols)) {
		v := snap.vols[u]
		if !slices.Contains(state.Transitional, v.Status) || snap.busy[u] {
			continue
		}
		stuck[u] = true
		host := ""
		if b, ok := s.Config.Backends[v.Backend]; ok {
			host = b.Host
		}
		if a, ok := snap.atts[u]; ok && (v.Status == state.Attaching || v.Status == state.Detaching) {
			host = a.Host
		}
		why := "no operation holds it"
		for _, o := range snap.ops {
			if o.Object == u {
				why = fmt.Sprintf("its %s (by %s since %s) is gone: %s", o.Op, o.Owner, o.Started, o.Why)
			}
		}
		d := Drift{Host: host, Kind: DriftStuckStatus, Object: "volume " + v.Name, Volume: v.Name,
			Detail: fmt.Sprintf("volume %s is %s and %s", v.Name, v.Status, why),
			Action: fmt.Sprintf("rerun the command that left it; once reality agrees, 'blk volume reset-state %s --to STATUS'", v.Name)}
		if r, ok := resumers[v.Status]; ok {
			d.Action = r.action
			d.fix = func(ctx context.Context) error {
				cur, err := s.State.Volume(ctx, u)
				if ok, serr := stillIn(cur.Status, v.Status, err); !ok {
					return serr
				}
				return s.endDeadOps(ctx, snap, u, r.run(ctx, s, v))
			}
		}
		out = append(out, d)
	}
	for _, sn := range snap.snps {
		if !slices.Contains(state.SnapshotTransitional, sn.Status) || snap.busy[sn.UUID] {
			continue
		}
		stuck[sn.UUID] = true
		if v := snap.vols[sn.Volume]; stuck[sn.Volume] &&
			(v.Status == state.Snapshotting && sn.Status == state.Creating || v.Status == state.Reverting && sn.Status == state.Restoring) {
			continue // its volume's resumer finishes it
		}
		host := ""
		if b, ok := s.Config.Backends[sn.Backend]; ok {
			host = b.Host
		}
		r := snapshotResumers[sn.Status]
		out = append(out, Drift{Host: host, Kind: DriftStuckStatus, Object: "snapshot " + sn.Name, Volume: sn.VolumeName,
			Detail: fmt.Sprintf("snapshot %s of volume %s is %s and no live operation holds it", sn.Name, sn.VolumeName, sn.Status),
			Action: r.action,
			fix: func(ctx context.Context) error {
				cur, err := s.State.Snapshot(ctx, sn.UUID)
				if ok, serr := stillIn(cur.Status, sn.Status, err); !ok {
					return serr
				}
				return s.endDeadOps(ctx, snap, sn.UUID, r.run(ctx, s, sn))
			}})
	}
	for _, o := range snap.ops {
		if !o.Gone || stuck[o.Object] {
			continue
		}
		d := Drift{Host: o.Host, Kind: DriftStaleOperation, Object: fmt.Sprintf("operation %d", o.ID), Volume: snap.name(o.Object),
			Detail: fmt.Sprintf("%s of %s (by %s since %s, step %q) is journaled as running: %s", o.Op, snap.name(o.Object), o.Owner, o.Started, o.Step, o.Why),
			Action: "--fix marks it failed; the volume's status needs nothing",
			fix: func(ctx context.Context) error {
				ended, err := s.State.EndStaleOp(ctx, o.ID)
				if err == nil && !ended {
					err = errors.New("it is no longer running")
				}
				return err
			}}
		out = append(out, d)
	}
	return out
}
