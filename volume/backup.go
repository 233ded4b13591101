package volume

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/blk-project/blk/backup"
	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/fault"
)

// Backup is what blk reports about a backup. Its JSON and YAML field names
// are a contract with scripts.
type Backup struct {
	UUID        string    `json:"uuid" yaml:"uuid"`
	Name        string    `json:"name" yaml:"name"`
	Volume      string    `json:"volume" yaml:"volume"`
	VolumeUUID  string    `json:"volume_uuid" yaml:"volume_uuid"`
	Repo        string    `json:"repo" yaml:"repo"`
	Status      string    `json:"status" yaml:"status"`
	SizeBytes   int64     `json:"size_bytes" yaml:"size_bytes"`
	ReadBytes   int64     `json:"read_bytes" yaml:"read_bytes"`
	StoredBytes int64     `json:"stored_bytes" yaml:"stored_bytes"`
	ChunkCount  int       `json:"chunk_count" yaml:"chunk_count"`
	Parent      string    `json:"parent" yaml:"parent"`
	Incremental bool      `json:"incremental" yaml:"incremental"`
	Consistency string    `json:"consistency" yaml:"consistency"`
	CreatedAt   time.Time `json:"created_at" yaml:"created_at"`
	// Warnings are what a person should hear about how it was taken (no
	// guest agent answered, read in full); not part of the output.
	Warnings []string `json:"-" yaml:"-"`
}

func backupOf(repo string, m *backup.Manifest) Backup {
	t, _ := time.Parse(time.RFC3339Nano, m.CreatedAt)
	// A manifest exists only once its backup is complete.
	return Backup{UUID: m.UUID, Name: m.Name, Volume: m.Volume, VolumeUUID: m.VolumeUUID, Repo: repo, Status: "available",
		SizeBytes: m.SizeBytes, ReadBytes: m.ReadBytes, StoredBytes: m.StoredBytes, ChunkCount: m.ChunkCount,
		Parent: m.Parent, Incremental: m.Incremental, Consistency: m.Consistency, CreatedAt: t}
}

// repoFS gives the file access to a repository's host: the local file
// system, or SFTP in the host's one SSH connection (its session lasts as
// long as blk runs).
var repoFS = func(ctx context.Context, s *Service, host string) (backup.FS, error) {
	h, ok := s.Config.Hosts[host]
	if !ok {
		return nil, invalid("backup repository host %q is not configured", host)
	}
	if h.Local {
		return backup.OS{}, nil
	}
	r, err := s.Hosts.Runner(host)
	if err != nil {
		return nil, err
	}
	c, err := exec.SFTP(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("backup repository on host %q: %w", host, err)
	}
	return backup.SFTP{C: c}, nil
}

// s3FS connects to an S3 repository's bucket with the keys from its
// credentials file or blk's environment.
func s3FS(ctx context.Context, rc config.BackupRepo) (backup.FS, error) {
	k, err := backup.LoadS3Keys(rc.CredentialsFile, rc.AccessKeyEnv, rc.SecretKeyEnv, os.Getenv)
	if err != nil {
		return nil, fault.Wrap(ErrInvalid, err)
	}
	return backup.NewS3(ctx, backup.S3Config{Endpoint: rc.Endpoint, Bucket: rc.Bucket, Region: rc.Region, Prefix: rc.Prefix,
		AccessKey: k.AccessKey, SecretKey: k.SecretKey, SessionToken: k.SessionToken})
}

// openRepo opens the named repository (empty: defaults.backup_repo, or the
// only one configured).
func (s *Service) openRepo(ctx context.Context, name string) (string, *backup.Repo, error) {
	return s.repo(ctx, name, backup.Open)
}

// repo finds the named repository and opens it with open (backup.Open, or
// backup.Init for the first backup into it).
func (s *Service) repo(ctx context.Context, name string, open func(backup.FS, string) (*backup.Repo, error)) (string, *backup.Repo, error) {
	if name == "" {
		name = s.Config.Defaults.BackupRepo
		if name == "" {
			if len(s.Config.BackupRepos) != 1 {
				return "", nil, invalid("no --repo given and no defaults.backup_repo configured (configured: %s)", repoNames(s))
			}
			for n := range s.Config.BackupRepos {
				name = n
			}
		}
	}
	rc, ok := s.Config.BackupRepos[name]
	if !ok {
		return "", nil, invalid("backup repository %q is not configured (configured: %s)", Truncate(name), repoNames(s))
	}
	root := rc.Path
	var fsys backup.FS
	var err error
	if rc.S3() {
		root = rc.Prefix
		if fsys, err = s3FS(ctx, rc); err != nil {
			return name, nil, repoError(fmt.Errorf("backup repository %q: %w", name, err))
		}
	} else if fsys, err = repoFS(ctx, s, rc.Host); err != nil {
		return name, nil, err
	}
	r, err := open(fsys, root)
	if err != nil {
		return name, nil, repoError(fmt.Errorf("backup repository %q: %w", name, err))
	}
	return name, r, nil
}

func repoNames(s *Service) string {
	if len(s.Config.BackupRepos) == 0 {
		return "none"
	}
	return strings.Join(slices.Sorted(maps.Keys(s.Config.BackupRepos)), ", ")
}

// repoError gives the repository's errors the kinds exit codes follow.
func repoError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, backup.ErrNotFound), errors.Is(err, backup.ErrNotRepository), errors.Is(err, backup.ErrBucketMissing):
		return fault.Wrap(ErrNotFound, err)
	case errors.Is(err, backup.ErrLocked):
		return fault.Wrap(ErrConflict, err)
	case errors.Is(err, backup.ErrDirInUse): // the configured path is wrong
		return fault.Wrap(ErrInvalid, err)
	}
	return err
}

// withRepoLock runs fn on the repository under a lock of kind.
func (s *Service) withRepoLock(ctx context.Context, repo string, kind backup.LockKind, op string, fn func(name string, r *backup.Repo) error) error {
	name, r, err := s.openRepo(ctx, repo)
	if err != nil {
		return err
	}
	if s.Hosts.DryRun() {
		// A dry run only reads: even a lock file would be a change.
		return repoError(fn(name, r))
	}
	l, err := r.Lock(kind, op)
	if err != nil {
		return repoError(fmt.Errorf("backup repository %q: %w", name, err))
	}
	err = repoError(fn(name, r))
	return errors.Join(err, l.Unlock())
}

// Backups lists the backups in a repository read from its manifests alone,
// oldest first; only those of volume (name or uuid) when given. Manifests
// that cannot be read are reported in the error, after the others.
func (s *Service) Backups(ctx context.Context, repo, volume string) ([]Backup, error) {
	name, r, err := s.openRepo(ctx, repo)
	if err != nil {
		return nil, err
	}
	ms, bad, err := r.List()
	if err != nil {
		return nil, err
	}
	out := []Backup{}
	for _, m := range ms {
		if volume == "" || m.Volume == volume || m.VolumeUUID == volume {
			out = append(out, backupOf(name, m))
		}
	}
	var errs []error
	for _, u := range slices.Sorted(maps.Keys(bad)) {
		errs = append(errs, bad[u])
	}
	if len(errs) > 0 {
		return out, fault.New(ErrPartial, "backup repository %q: %d manifests cannot be read: %w", name, len(errs), errors.Join(errs...))
	}
	return out, nil
}

// ShowBackup finds one backup by name or uuid.
func (s *Service) ShowBackup(ctx context.Context, repo, ref string) (Backup, error) {
	name, r, err := s.openRepo(ctx, repo)
	if err != nil {
		return Backup{}, err
	}
	m, err := r.Find(ref)
	if err != nil {
		return Backup{}, repoError(err)
	}
	return backupOf(name, m), nil
}

// VerifyBackup checks that the chunks of a backup are all in its
// repository; with readData it re-reads and re-hashes each.
func (s *Service) VerifyBackup(ctx context.Context, repo, ref string, readData bool) (Backup, error) {
	var b Backup
	err := s.withRepoLock(ctx, repo, backup.Shared, "verify", func(name string, r *backup.Repo) error {
		m, err := r.Find(ref)
		if err != nil {
			return err
		}
		b = backupOf(name, m)
		return r.Verify(ctx, m, readData)
	})
	return b, err
}

// DeleteBackups removes backups (by name or uuid) from their repository,
// then the chunks no other backup uses. A dry run finds them and changes
// nothing.
func (s *Service) DeleteBackups(ctx context.Context, repo string, refs []string) ([]Backup, backup.GCResult, error) {
	var out []Backup
	var gc backup.GCResult
	err := s.withRepoLock(ctx, repo, backup.Exclusive, "delete", func(name string, r *backup.Repo) error {
		var uuids []string
		for _, ref := range refs {
			m, err := r.Find(ref)
			if err != nil {
				return err
			}
			if slices.Contains(uuids, m.UUID) {
				continue // named twice (by name and uuid): deleted once
			}
			out = append(out, backupOf(name, m))
			uuids = append(uuids, m.UUID)
		}
		if s.Hosts.DryRun() {
			return nil
		}
		if err := r.Delete(uuids...); err != nil {
			return err
		}
		// The state file's cache of backups may be read-only here, or
		// gone: the repository is what counts.
		_ = s.State.ForgetBackups(ctx, uuids...)
		var err error
		gc, err = r.GC(false)
		return err
	})
	return out, gc, err
}

// PruneResult is what prune kept and removed.
type PruneResult struct {
	Keep        []Backup `json:"keep" yaml:"keep"`
	Remove      []Backup `json:"remove" yaml:"remove"`
	FreedChunks int      `json:"freed_chunks" yaml:"freed_chunks"`
	FreedBytes  int64    `json:"freed_bytes" yaml:"freed_bytes"`
	DryRun      bool     `json:"dry_run" yaml:"dry_run"`
}

// PruneBackups applies a keep policy per volume (only volume's, by name or
// uuid, when given), then removes the chunks nothing uses. A dry run says
// what it would remove.
func (s *Service) PruneBackups(ctx context.Context, repo, volume string, p backup.Policy) (PruneResult, error) {
	res := PruneResult{DryRun: s.Hosts.DryRun(), Keep: []Backup{}, Remove: []Backup{}}
	if p.Empty() {
		return res, invalid("prune needs at least one --keep-* rule: without one it would remove every backup")
	}
	err := s.withRepoLock(ctx, repo, backup.Exclusive, "prune", func(name string, r *backup.Repo) error {
		volUUID := ""
		if volume != "" {
			ms, _, err := r.List()
			if err != nil {
				return err
			}
			for _, m := range ms {
				if m.Volume == volume || m.VolumeUUID == volume {
					volUUID = m.VolumeUUID
				}
			}
			if volUUID == "" {
				return fault.New(ErrNotFound, "backup repository %q holds no backup of volume %q", name, Truncate(volume))
			}
		}
		pr, err := r.Prune(p, volUUID, res.DryRun)
		for _, m := range pr.Keep {
			res.Keep = append(res.Keep, backupOf(name, m))
		}
		for _, m := range pr.Remove {
			res.Remove = append(res.Remove, backupOf(name, m))
		}
		res.FreedChunks, res.FreedBytes = pr.GC.Chunks, pr.GC.Bytes
		return err
	})
	return res, err
}
