package volume

import (
	"context"
	"errors"
	"fmt"

	"github.com/blk-project/blk/backup"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/state"
)

// RestoreOptions are those of backup restore: into an existing volume
// (To), or a new one (New, on Backend).
type RestoreOptions struct {
	Backup, Repo string
	To           string
	New, Backend string
	Thin         bool // with New
}

// Validate checks the options alone.
func (o RestoreOptions) Validate() error {
	if err := CheckRef(o.Backup); err != nil {
		return err
	}
	switch {
	case (o.To == "") == (o.New == ""):
		return invalid("restore needs --to VOLUME or --new NAME, one of them")
	case o.To != "" && (o.Backend != "" || o.Thin):
		return invalid("--backend and --thin go with --new: a volume restored --to stays as it is")
	case o.To != "":
		return CheckRef(o.To)
	}
	return CheckName("volume", o.New)
}

// RestoreBackup writes a backup into a volume: an available one at least
// as large (--to), which is restoring meanwhile and error_restoring if
// the restore fails part-way, or a new one made for it (--new), removed
// again if the restore fails. The repository alone says what the backup
// is: the state file need not know it.
func (s *Service) RestoreBackup(ctx context.Context, o RestoreOptions) (_ Volume, err error) {
	if err = o.Validate(); err != nil {
		return Volume{}, err
	}
	if o.New != "" {
		return s.Create(ctx, CreateOptions{Name: o.New, Backend: o.Backend, Thin: o.Thin, FromBackup: o.Backup, BackupRepo: o.Repo})
	}
	v, err := s.State.Volume(ctx, o.To)
	if err != nil {
		return Volume{}, err
	}
	b, err := s.backendOf(v)
	if err != nil {
		return Volume{}, err
	}
	repoName, repo, err := s.openRepo(ctx, o.Repo)
	if err != nil {
		return Volume{}, err
	}
	m, err := repo.Find(o.Backup)
	if err != nil {
		return Volume{}, repoError(fmt.Errorf("backup repository %q: %w", repoName, err))
	}
	if v.SizeBytes < m.SizeBytes {
		return Volume{}, invalid("volume %q (%s) is smaller than backup %q (%s): restore into a volume at least as large, or --new",
			v.Name, FormatSize(v.SizeBytes), m.Name, FormatSize(m.SizeBytes))
	}
	if s.Hosts.DryRun() {
		s.Hosts.dryMu.Lock()
		defer s.Hosts.dryMu.Unlock()
		fmt.Fprintf(s.Hosts.dryRun, "%s: write backup %s (%s) into %s (streamed restore)\n", b.Host, m.Name, FormatSize(m.SizeBytes), exec.QuoteWord(v.Path))
		return volumeOf(v), nil
	}
	// Locked first: a prune running now refuses it before the volume is
	// touched.
	lock, err := repo.Lock(backup.Shared, "restore")
	if err != nil {
		return Volume{}, repoError(fmt.Errorf("backup repository %q: %w", repoName, err))
	}
	defer func() { err = errors.Join(err, lock.Unlock()) }()
	// A restore that failed part-way is rerun; one killed is taken over.
	from := []string{state.Available, state.ErrorRestoring}
	if v.Status == state.Restoring {
		from = []string{state.Restoring}
	}
	op, err := s.State.Claim(ctx, "restore", v.UUID, from, state.Restoring)
	if err != nil {
		var ce *state.ConflictError
		if errors.As(err, &ce) && ce.Holder == "" {
			ce.Reason = "is " + ce.Status + ": only an available volume can be restored into"
			if ce.Status == state.InUse {
				ce.Reason += " (detach it first: its data would change under the guest)"
			}
		}
		return Volume{}, err
	}
	r := newReverter()
	defer r.fail(ctx, &err)
	r.journal(op)
	r.add("volume status", func(ctx context.Context) error {
		msg := fmt.Sprintf("restore of backup %s failed part-way: rerun 'blk backup restore %s --to %s'", m.Name, m.UUID, v.Name)
		_, merr := s.State.MoveVolume(ctx, v.UUID, state.Move{From: []string{state.Restoring}, To: state.ErrorRestoring, LastError: &msg})
		return merr
	})
	if err = s.writeBackup(ctx, repo, m, b.Host, v, v.Path, false); err != nil {
		return Volume{}, err
	}
	after, err := s.State.MoveVolume(ctx, v.UUID, state.Move{From: []string{state.Restoring}, To: state.Available, LastError: new(string)})
	if err != nil {
		return Volume{}, err
	}
	r.success()
	return volumeOf(after), nil
}

// writeBackup streams backup m into path on host (v's storage), checking
// every chunk; zeroed says the target reads as zeros already (a fresh thin
// LV or sparse file), so zero chunks are not written.
func (s *Service) writeBackup(ctx context.Context, repo *backup.Repo, m *backup.Manifest, host string, v state.Volume, path string, zeroed bool) error {
	run, err := s.Hosts.Runner(host)
	if err != nil {
		return err
	}
	f, err := exec.OpenFile(ctx, run, path, true)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, dry := f.(exec.DiscardFile); dry {
		return nil
	}
	p := s.progress("restore "+v.Name, m.SizeBytes)
	defer p.Done()
	var done int64
	err = repo.Restore(ctx, m, f, zeroed, func(pr backup.Progress) {
		p.Add(pr.Done - done)
		done = pr.Done
	})
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return fmt.Errorf("restore backup %s into volume %q: %w", m.Name, v.Name, err)
	}
	return f.Close()
}

// backupSource is the backup a volume create --from-backup restores.
type backupSource struct {
	repoName string
	repo     *backup.Repo
	m        *backup.Manifest
	lock     *backup.Lock
}

// resolveBackup finds the backup o names and takes the repository's shared
// lock, so it cannot be pruned before it is restored; the caller unlocks.
func (s *Service) resolveBackup(ctx context.Context, o CreateOptions) (*backupSource, error) {
	name, repo, err := s.openRepo(ctx, o.BackupRepo)
	if err != nil {
		return nil, err
	}
	m, err := repo.Find(o.FromBackup)
	if err != nil {
		return nil, repoError(fmt.Errorf("backup repository %q: %w", name, err))
	}
	src := &backupSource{repoName: name, repo: repo, m: m}
	if s.Hosts.DryRun() {
		return src, nil
	}
	if src.lock, err = repo.Lock(backup.Shared, "restore"); err != nil {
		return nil, repoError(fmt.Errorf("backup repository %q: %w", name, err))
	}
	return src, nil
}

func (b *backupSource) unlock() error {
	if b == nil || b.lock == nil {
		return nil
	}
	return b.lock.Unlock()
}
