package volume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/blk-project/blk/backup"
	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/retry"
	"github.com/blk-project/blk/lvm"
	"github.com/blk-project/blk/state"
)

// BackupOptions are those of backup create.
type BackupOptions struct {
	Volume string
	Name   string // empty: backup-<first 8 of its uuid>
	Repo   string // empty: defaults.backup_repo
	// Full reads the whole volume even when a thin base could say what
	// changed.
	Full    bool
	Quiesce string // auto (empty), require or off
}

// Validate checks the options alone.
func (o BackupOptions) Validate() error {
	if err := CheckRef(o.Volume); err != nil {
		return err
	}
	if o.Name != "" {
		if err := CheckName("backup", o.Name); err != nil {
			return err
		}
	}
	if !slices.Contains([]string{"", QuiesceAuto, QuiesceRequire, QuiesceOff}, o.Quiesce) {
		return invalid("--quiesce %q: use auto, require or off", Truncate(o.Quiesce))
	}
	return nil
}

// A thin volume's last backup keeps its snapshot as the base the next one
// asks thin_delta against. It is blk's, not the user's: no snapshot row,
// never listed by snapshot list, removed with its volume.
const backupBaseTag = "blk-backup-base"

// backupTag ties a base to the backup (manifest uuid) read from it: a base
// is used only for the backup it was read for, the parent of the next.
func backupTag(uuid string) string { return "blk-backup-" + uuid }

// backupSnapPrefix starts the name of every backup snapshot of a volume
// (LVM reserves names starting with "snapshot").
func backupSnapPrefix(volUUID string) string { return "_backup-" + volUUID + "-" }

func isBackupSnap(name string) bool { return strings.HasPrefix(name, "_backup-") }

// metadataSnapTimeout bounds the release of a pool's metadata snapshot,
// which runs past Ctrl-C: a pool holds only one, and the next backup of any
// of its volumes needs it.
var metadataSnapTimeout = time.Minute

// poolLockWait is how long a backup waits for another one's thin_delta on
// the same pool.
var poolLockWait = 2 * time.Minute

// CreateBackup backs a volume up into a repository: it snapshots the volume
// (quiesced when in use, as snapshot create), reads the snapshot where it
// lives, and stores the chunks the repository lacks. A thin volume whose
// last backup's snapshot is still there reads only what thin_delta says
// changed since. The volume is backing-up meanwhile, and goes on serving
// its guest.
func (s *Service) CreateBackup(ctx context.Context, o BackupOptions) (_ Backup, err error) {
	if err = o.Validate(); err != nil {
		return Backup{}, err
	}
	if o.Quiesce == "" {
		o.Quiesce = QuiesceAuto
	}
	if s.Hosts.DryRun() {
		return Backup{}, invalid("backup create has no --dry-run: what it would read depends on snapshots it would take")
	}
	v, err := s.State.Volume(ctx, o.Volume)
	if err != nil {
		return Backup{}, err
	}
	b, err := s.backendOf(v)
	if err != nil {
		return Backup{}, err
	}
	orig := v.Status
	if orig == state.BackingUp {
		orig = statusBeforeBackup(v) // a killed backup's: taken over below
	}
	switch {
	case orig != state.Available && orig != state.InUse:
		return Backup{}, &state.ConflictError{Volume: v.Name, Status: v.Status,
			Reason: "is " + v.Status + ": only an available or in-use volume can be backed up", Holder: s.State.Holder(ctx, v.UUID)}
	case b.Type == "nfs" && orig == state.InUse:
		return Backup{}, conflict("volume %q is in use: a volume on nfs backend %q is backed up only when available "+
			"(it has no instant snapshot, and a guest writing during the read would tear the backup): detach it first", v.Name, v.Backend)
	case b.Type != "nfs" && b.Type != "lvm":
		return Backup{}, invalid("backend %q (%s) cannot be backed up", v.Backend, b.Type)
	}
	repoName, repo, err := s.repo(ctx, o.Repo, backup.Init)
	if err != nil {
		return Backup{}, err
	}
	lock, err := repo.Lock(backup.Shared, "backup")
	if err != nil {
		return Backup{}, repoError(fmt.Errorf("backup repository %q: %w", repoName, err))
	}
	defer func() { err = errors.Join(err, lock.Unlock()) }()
	// Names pick backups in show, verify, restore: one name, one backup.
	if o.Name != "" {
		if m, ferr := repo.Find(o.Name); ferr == nil {
			return Backup{}, conflict("backup repository %q holds a backup named %q already (%s): choose another --name", repoName, o.Name, m.UUID)
		} else if !errors.Is(ferr, backup.ErrNotFound) {
			return Backup{}, repoError(ferr)
		}
	}

	op, err := s.State.Claim(ctx, "backup", v.UUID, []string{v.Status}, state.BackingUp)
	if err != nil {
		return Backup{}, err
	}
	r := newReverter()
	defer r.fail(ctx, &err)
	r.journal(op)
	back := func(ctx context.Context) error {
		_, merr := s.State.MoveVolume(ctx, v.UUID, state.Move{From: []string{state.BackingUp}, To: orig})
		return merr
	}
	r.add("volume status", back)
	// The run taken over may have died with the guest frozen.
	if v.Status == state.BackingUp {
		if err = s.thawAttached(ctx, v); err != nil {
			return Backup{}, err
		}
	}

	parent, err := repo.Latest(v.UUID)
	if err != nil {
		return Backup{}, repoError(fmt.Errorf("backup repository %q: %w", repoName, err))
	}
	var out Backup
	opt := backup.Options{Name: o.Name, Volume: v.Name, VolumeUUID: v.UUID, Parent: parent, Consistency: Clean}
	path := v.Path // an available NFS volume is read as it is: held in backing-up, nothing can attach it
	var l lvm.LVM
	var snap string
	if b.Type == "lvm" {
		if l, err = s.lvm(ctx, b); err != nil {
			return Backup{}, err
		}
		snap = backupSnapPrefix(v.UUID) + s.newUUID()[:8]
		tags := []string{lvm.Tag, lvm.VolumeTag(v.UUID), backupBaseTag}
		var lv lvm.LV
		var warning string
		opt.Consistency, warning, err = s.quiesced(ctx, v, orig == state.InUse, o.Quiesce, func() (err error) {
			lv, err = s.snapshotOf(ctx, r, l, b.ThinPool, lvName(v.UUID), v.SizeBytes, v.Thin, snap, tags)
			return err
		})
		if err != nil {
			return Backup{}, fmt.Errorf("back up volume %q: snapshot: %w", v.Name, err)
		}
		if warning != "" {
			out.Warnings = append(out.Warnings, warning)
		}
		path = lv.Path()
		if v.Thin && parent != nil && !o.Full {
			var why string
			opt.Changed, why, err = s.thinChanges(ctx, l, b, v, parent, snap)
			if err != nil {
				return Backup{}, fmt.Errorf("back up volume %q: %w", v.Name, err)
			}
			if why != "" {
				out.Warnings = append(out.Warnings, "reading all of "+v.Name+": "+why)
			}
		}
	}
	m, err := s.readBackup(ctx, repo, b.Host, path, v, opt)
	if err != nil {
		return Backup{}, fmt.Errorf("back up volume %q: %w", v.Name, err)
	}
	// The backup is complete from here: what follows only tidies, and its
	// failures are said, not undone.
	r.success()
	out.Warnings = append(out.Warnings, s.keepBase(ctx, l, v, snap, m)...)
	// Also after Ctrl-C meanwhile: no undo gives the volume back now.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	if err := s.State.RecordBackup(ctx, state.BackupRecord{UUID: m.UUID, Name: m.Name, Volume: v.UUID, Parent: m.Parent,
		Repo: repoName, Status: state.Available, SizeBytes: m.SizeBytes, StoredBytes: m.StoredBytes, ChunkCount: m.ChunkCount,
		CreatedAt: m.CreatedAt}); err != nil {
		out.Warnings = append(out.Warnings, "the state file does not list the backup (the repository does): "+err.Error())
	}
	if err := back(ctx); err != nil {
		return Backup{}, err
	}
	ws := out.Warnings
	out = backupOf(repoName, m)
	out.Warnings = ws
	return out, nil
}

// thawAttached thaws the guest of an attached volume, which a run killed
// between freeze and thaw left frozen; one with no agent, not running or
// gone has nothing frozen.
func (s *Service) thawAttached(ctx context.Context, v state.Volume) error {
	if v.Attachment == nil {
		return nil
	}
	att, err := s.State.Attachment(ctx, v.UUID)
	if err != nil {
		return nil // detached meanwhile
	}
	err = s.thaw(ctx, att.Host, att.Instance)
	if err != nil && !errors.Is(err, hypervisor.ErrNoAgent) && !errors.Is(err, hypervisor.ErrNotRunning) &&
		!errors.Is(err, hypervisor.ErrNoDomain) {
		return err
	}
	return nil
}

// statusBeforeBackup is the status a volume a killed backup left goes back
// to: in-use if it is attached. (Its previous status says backing-up once a
// rerun took it over and was killed too.)
func statusBeforeBackup(v state.Volume) string {
	if v.Attachment != nil {
		return state.InUse
	}
	return state.Available
}

// readBackup reads path on host (whole chunks, in order, across the host's
// one connection) into the repository.
func (s *Service) readBackup(ctx context.Context, repo *backup.Repo, host, path string, v state.Volume, opt backup.Options) (*backup.Manifest, error) {
	run, err := s.Hosts.Runner(host)
	if err != nil {
		return nil, err
	}
	f, err := exec.OpenFile(ctx, run, path, false)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p := s.progress("backup "+v.Name, v.SizeBytes)
	defer p.Done()
	var done int64
	d, _ := p.(detailer)
	opt.Progress = func(pr backup.Progress) {
		if d != nil {
			d.Detail(fmt.Sprintf("read %s, stored %s", FormatSize(pr.Read), FormatSize(pr.Stored)))
		}
		p.Add(pr.Done - done)
		done = pr.Done
	}
	return repo.Backup(ctx, f, v.SizeBytes, opt)
}

// detailer is a Progress that can say more than bytes done.
type detailer interface{ Detail(string) }

// keepBase keeps a thin volume's new backup snapshot as the base of its
// next backup, and removes every other backup snapshot of the volume (the
// previous base, or one a killed run left); a thick one is removed. It
// returns what it could not do, to be said.
func (s *Service) keepBase(ctx context.Context, l lvm.LVM, v state.Volume, snap string, m *backup.Manifest) []string {
	if snap == "" {
		return nil
	}
	var warnings []string
	keep := ""
	if v.Thin {
		lv, err := l.LV(ctx, snap)
		if err == nil {
			err = l.Retag(ctx, lv, []string{backupTag(m.UUID)})
		}
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("cannot keep the snapshot of backup %s as the base of the next (%v): the next backup of %s reads it all", m.Name, err, v.Name))
		} else {
			keep = snap
		}
	}
	lvs, err := l.Tagged(ctx, backupBaseTag)
	if err != nil {
		return append(warnings, fmt.Sprintf("cannot list the backup snapshots of %s to remove the old ones: %v ('blk reconcile' finds them)", v.Name, err))
	}
	for _, lv := range lvs {
		if lv.Name == keep || !strings.HasPrefix(lv.Name, backupSnapPrefix(v.UUID)) {
			continue
		}
		if err := l.Remove(ctx, lv.Name); err != nil {
			warnings = append(warnings, fmt.Sprintf("cannot remove backup snapshot %s/%s: %v ('blk reconcile --fix' removes it)", l.VG, lv.Name, err))
		}
	}
	return warnings
}

// removeBackupSnaps removes every backup snapshot of a volume.
func removeBackupSnaps(ctx context.Context, l lvm.LVM, volUUID string) error {
	lvs, err := l.Tagged(ctx, backupBaseTag)
	if err != nil {
		return err
	}
	for _, lv := range lvs {
		if strings.HasPrefix(lv.Name, backupSnapPrefix(volUUID)) {
			if err := l.Remove(ctx, lv.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// thinChanges asks thin_delta what differs between the base snapshot of
// parent and next, on the pool's metadata snapshot, which it always
// releases. Without a base it says why, and the backup reads everything.
func (s *Service) thinChanges(ctx context.Context, l lvm.LVM, b config.Backend, v state.Volume, parent *backup.Manifest, next string) (_ []backup.Range, why string, err error) {
	lvs, err := l.Tagged(ctx, backupTag(parent.UUID))
	if err != nil {
		return nil, "", err
	}
	base := ""
	for _, lv := range lvs {
		if strings.HasPrefix(lv.Name, backupSnapPrefix(v.UUID)) {
			base = lv.Name
		}
	}
	if base == "" {
		return nil, fmt.Sprintf("the snapshot of its last backup %s is gone, so nothing says what changed since", parent.Name), nil
	}
	baseID, err := l.ThinID(ctx, base)
	if err != nil {
		return nil, "", err
	}
	nextID, err := l.ThinID(ctx, next)
	if err != nil {
		return nil, "", err
	}
	unlock, err := s.lockPool(ctx, b)
	if err != nil {
		return nil, "", err
	}
	defer unlock()
	// Under the pool's lock no live backup holds its metadata snapshot: one
	// held is a killed run's.
	if err = l.ReleaseMetadataSnap(ctx, b.ThinPool); err != nil {
		return nil, "", fmt.Errorf("release the metadata snapshot a killed backup left on pool %s/%s: %w", b.VG, b.ThinPool, err)
	}
	// Released even when the reserve failed: its answer may be what was
	// lost, and a pool holds only one.
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), metadataSnapTimeout)
		defer cancel()
		if rerr := l.ReleaseMetadataSnap(rctx, b.ThinPool); rerr != nil {
			err = errors.Join(err, fmt.Errorf("release the metadata snapshot of pool %s/%s: %w: run 'dmsetup message %s-%s-tpool 0 release_metadata_snap' on %s",
				b.VG, b.ThinPool, rerr, b.VG, b.ThinPool, b.Host))
		}
	}()
	if err = l.ReserveMetadataSnap(ctx, b.ThinPool); err != nil {
		return nil, "", err
	}
	d, err := l.ThinDelta(ctx, b.ThinPool, baseID, nextID)
	if err != nil {
		return nil, "", err
	}
	// Unmapped blocks read as zeros from the new snapshot at no disk cost:
	// they are read like the others, and stored as zero chunks.
	changed := make([]backup.Range, 0, len(d.Changed)+len(d.Zeroed))
	for _, e := range slices.Concat(d.Changed, d.Zeroed) {
		changed = append(changed, backup.Range{Off: e.Offset, Len: e.Length})
	}
	return changed, "", nil
}

// lockPool serializes the users of a thin pool's one metadata snapshot
// among blk processes sharing this state file, waiting up to poolLockWait.
func (s *Service) lockPool(ctx context.Context, b config.Backend) (func(), error) {
	object := poolObject(b.Host, b.VG, b.ThinPool)
	var op Op
	err := retry.Do(ctx, retry.Policy{Within: poolLockWait, Delay: time.Second, Retry: func(err error) bool { return errors.Is(err, state.ErrConflict) }},
		func() (err error) {
			op, err = s.State.Lock(ctx, "thin_delta", object)
			return err
		})
	if err != nil {
		return nil, err
	}
	return func() { op.End(context.WithoutCancel(ctx), nil) }, nil
}
