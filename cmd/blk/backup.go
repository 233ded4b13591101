package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/blk-project/blk/backup"
	"github.com/blk-project/blk/state"
	"github.com/blk-project/blk/volume"
	"github.com/spf13/cobra"
)

func newBackupCmd(a *App) *cobra.Command {
	var repo string
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Back volumes up into a repository, restore them, and list, verify, delete and prune backups",
		Long: `Backups live in repositories named in the config (backup_repos: {NAME: {host:
H, path: P}}): a directory of chunks, each stored once under its SHA-256 and
compressed with zstd, and one manifest per backup; on the host blk runs on, or
reached over SFTP in blk's SSH connection to it. Or the same layout under a
prefix of an S3 bucket ({NAME: {type: s3, endpoint: E, bucket: B, prefix: P}},
keys from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or a mode 0600
credentials_file). A repository describes
itself: with it alone, a fresh blk lists, verifies and restores its backups;
the state file is not needed. --repo picks one (default: defaults.backup_repo,
or the only one configured).`,
	}
	cmd.PersistentFlags().StringVar(&repo, "repo", "", "backup repository (default defaults.backup_repo)")
	cmd.AddCommand(newBackupCreateCmd(a, &repo), newBackupRestoreCmd(a, &repo), newBackupListCmd(a, &repo), newBackupShowCmd(a, &repo), newBackupVerifyCmd(a, &repo),
		newBackupDeleteCmd(a, &repo), newBackupPruneCmd(a, &repo))
	return cmd
}

// withRepo runs fn for a command that needs the configuration, not the
// state file: repositories are read on their own.
func (a *App) withRepo(cmd *cobra.Command, fn func(ctx context.Context, svc *volume.Service) error) error {
	return a.withReader(cmd, state.ReadOnlyOrEmpty, fn)
}

func newBackupCreateCmd(a *App, repo *string) *cobra.Command {
	var o volume.BackupOptions
	return withFlags(&cobra.Command{
		Use:   "create VOLUME [--name B] [--repo R] [--full] [--quiesce auto|require|off]",
		Short: "Back a volume up into a repository",
		Long: `Back a volume up: snapshot it, read the snapshot on its storage host, and
store the 4 MiB chunks the repository lacks (the first backup into a
repository makes it). The volume is backing-up meanwhile, and goes back to
available or in-use after; its guest goes on using it throughout.

An in-use volume is snapshotted with its guest's filesystems frozen for the
moment it is taken, as 'blk snapshot create' (--quiesce auto: crash-consistent
and said when no guest agent answers; require: refuse; off: do not ask). An
nfs volume has no instant snapshot: it is backed up only when available,
read as it is while held (an in-use one is refused, exit 3).

Every backup is complete (a restore never needs another), and incremental:
only chunks the repository lacks are written. A thin LVM volume reads only
what changed: the snapshot of its last backup is kept (an LV
_backup-<volume uuid>-<id>, tagged blk-backup-base; not a snapshot of yours,
not listed by 'snapshot list', removed with the volume) and thin_delta, on
the pool's reserved metadata snapshot (always released), names the blocks
that differ from the new one. When that snapshot is gone, or with --full,
everything is read, and blk says so. Thick LVM and nfs volumes are read in
full every time.

A name (--name) picks one backup in its repository: one already used there is
refused (exit 3). A progress bar on a terminal, a progress line every few
seconds otherwise. A backup killed before its manifest was written leaves no
backup; run the command again (it takes the volume over, and reuses the
chunks already stored). One killed after it is complete: its snapshot is
removed by the next backup of the volume, or 'blk reconcile --fix'. There is
no --dry-run (exit 2): what a backup reads depends on the snapshot it takes.`,
		Example: `  blk backup create db1
  blk backup create db1 --name db1-nightly --repo offsite -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Volume, o.Repo = args[0], *repo
			if err := o.Validate(); err != nil {
				return err
			}
			return a.withService(cmd, func(ctx context.Context, svc *volume.Service) error {
				b, err := svc.CreateBackup(ctx, o)
				for _, w := range b.Warnings {
					a.warn("%s", w)
				}
				if err != nil {
					return err
				}
				return a.print(backupView(b))
			})
		},
	}, func(cmd *cobra.Command) {
		f := cmd.Flags()
		f.StringVar(&o.Name, "name", "", "name of the backup (default backup-<first 8 of its uuid>)")
		f.BoolVar(&o.Full, "full", false, "read the whole volume, even where a thin base says nothing changed")
		f.StringVar(&o.Quiesce, "quiesce", volume.QuiesceAuto, "freeze an in-use volume's guest filesystems: auto, require or off")
	})
}

func newBackupRestoreCmd(a *App, repo *string) *cobra.Command {
	var o volume.RestoreOptions
	return withFlags(&cobra.Command{
		Use:   "restore NAME|UUID (--to VOLUME | --new NAME [--backend BE] [--thin]) [--repo R]",
		Short: "Restore a backup into a volume, or into a new one",
		Long: `Restore a backup, read from its repository alone (the state file need not
know it): every chunk is decompressed and checked against its hash as it is
written, in order, with a progress bar.

--to VOLUME writes it over an available volume at least as large; the volume
is restoring meanwhile. If the restore fails part-way the volume is left
error_restoring (its data is neither what it was nor the backup's): run the
same command again.

--new NAME makes a new volume of the backup's size (on --backend, default
defaults.backend), as 'blk volume create NAME --from-backup B': on a new thin
LV or sparse file the backup's zeros are not written. If the restore fails
the new volume is removed.`,
		Example: `  blk backup restore db1-nightly --new db1-restored
  blk backup restore db1-nightly --to db1-test --repo offsite`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Backup, o.Repo = args[0], *repo
			if err := o.Validate(); err != nil {
				return err
			}
			return a.withService(cmd, func(ctx context.Context, svc *volume.Service) error {
				v, err := svc.RestoreBackup(ctx, o)
				if err != nil {
					return err
				}
				if a.DryRun {
					return a.dryRunDone()
				}
				return a.print(volumeView(v))
			})
		},
	}, func(cmd *cobra.Command) {
		f := cmd.Flags()
		f.StringVar(&o.To, "to", "", "an available volume to restore into (at least as large)")
		f.StringVar(&o.New, "new", "", "name of a new volume to restore into")
		f.StringVar(&o.Backend, "backend", "", "with --new: the backend of the new volume")
		f.BoolVar(&o.Thin, "thin", false, "with --new: thin-provision the new volume")
	})
}

func newBackupListCmd(a *App, repo *string) *cobra.Command {
	return &cobra.Command{
		Use:     "list [VOLUME] [--repo R]",
		Aliases: []string{"ls"},
		Short:   "List the backups in a repository, oldest first (of one volume, if named)",
		Long: `List the backups in a repository from their manifests, oldest first; of one
volume (name or uuid) if given. A manifest that cannot be read is reported and
the others are still listed (exit 5).`,
		Example: "  blk backup list\n  blk backup list db1 --repo offsite -o json",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vol := ""
			if len(args) == 1 {
				vol = args[0]
			}
			return a.withRepo(cmd, func(ctx context.Context, svc *volume.Service) error {
				bs, err := svc.Backups(ctx, *repo, vol)
				if bs != nil {
					if perr := a.print(backupsView(bs)); perr != nil {
						return perr
					}
				}
				return err
			})
		},
	}
}

func newBackupShowCmd(a *App, repo *string) *cobra.Command {
	return &cobra.Command{
		Use:     "show NAME|UUID [--repo R]",
		Short:   "Show one backup",
		Example: "  blk backup show db1-nightly\n  blk backup show 0b6e...-... -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withRepo(cmd, func(ctx context.Context, svc *volume.Service) error {
				b, err := svc.ShowBackup(ctx, *repo, args[0])
				if err != nil {
					return err
				}
				return a.print(backupView(b))
			})
		},
	}
}

func newBackupVerifyCmd(a *App, repo *string) *cobra.Command {
	var readData bool
	return withFlags(&cobra.Command{
		Use:   "verify NAME|UUID [--read-data] [--repo R]",
		Short: "Check that a backup's chunks are all in its repository",
		Long: `Check a backup: its manifest reads, and every chunk it names is in the
repository. With --read-data every chunk is read back, decompressed and
re-hashed, and every damaged or missing chunk is named (index, hash, offset).
Runs alongside backups and restores (shared lock).`,
		Example: "  blk backup verify db1-nightly\n  blk backup verify db1-nightly --read-data",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withRepo(cmd, func(ctx context.Context, svc *volume.Service) error {
				b, err := svc.VerifyBackup(ctx, *repo, args[0], readData)
				if err != nil {
					return err
				}
				how := "all chunks present"
				if readData {
					how = "all chunks read back and match their hashes"
				}
				a.note("backup %s (%s): %s", b.Name, b.UUID, how)
				return nil
			})
		},
	}, func(cmd *cobra.Command) {
		cmd.Flags().BoolVar(&readData, "read-data", false, "read, decompress and re-hash every chunk")
	})
}

func newBackupDeleteCmd(a *App, repo *string) *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME|UUID... [--repo R] [--yes]",
		Aliases: []string{"rm"},
		Short:   "Delete backups, then the chunks no other backup uses",
		Long: `Delete backups from their repository: their manifests first, then every
chunk no remaining backup uses. Waits for no one: while a backup, restore or
verify runs on the repository it refuses (exit 3).

On a terminal blk asks first; without one, --yes is required.`,
		Example: "  blk backup delete db1-old --yes",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.confirm(a.context(cmd), "delete", "Delete backups "+strings.Join(args, ", ")+"?"); err != nil {
				return err
			}
			return a.withRepo(cmd, func(ctx context.Context, svc *volume.Service) error {
				bs, gc, err := svc.DeleteBackups(ctx, *repo, args)
				if err != nil {
					return err
				}
				if a.DryRun {
					for _, b := range bs {
						fmt.Fprintf(a.Out, "would delete backup %s (%s)\n", b.Name, b.UUID)
					}
					return a.dryRunDone()
				}
				a.note("deleted %d backups; freed %d chunks (%s)", len(bs), gc.Chunks, volume.FormatSize(gc.Bytes))
				return a.print(backupsView(bs))
			})
		},
	}
}

func newBackupPruneCmd(a *App, repo *string) *cobra.Command {
	var p backup.Policy
	return withFlags(&cobra.Command{
		Use:   "prune [VOLUME] [--repo R] --keep-last N --keep-hourly N --keep-daily N --keep-weekly N --keep-monthly N",
		Short: "Remove the backups outside a keep policy, then the chunks nothing uses",
		Long: `Apply a keep policy to the backups of each volume (of one volume, if named),
delete the backups it does not keep, and then every chunk no remaining backup
uses. The rules are restic's: --keep-last N keeps the N newest backups;
--keep-hourly/daily/weekly/monthly N keep the newest backup of each of the last
N hours, days, ISO weeks and months (UTC) that have one; -1 keeps all of them.
A backup any rule keeps is kept; while a rule has counts left it also keeps
the oldest backup. At least one rule is required.

Meant for cron: no question is asked. --dry-run lists what would go.
Refuses (exit 3) while a backup, restore or verify runs on the repository.`,
		Example: `  blk backup prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12
  blk backup prune db1 --keep-last 3 --dry-run`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vol := ""
			if len(args) == 1 {
				vol = args[0]
			}
			return a.withRepo(cmd, func(ctx context.Context, svc *volume.Service) error {
				res, err := svc.PruneBackups(ctx, *repo, vol, p)
				if err != nil {
					return err
				}
				verb, free := "removed", "freed"
				if res.DryRun {
					verb, free = "would remove", "would free"
				}
				v := view{obj: res, header: []string{"BACKUP", "VOLUME", "CREATED", "ACTION"}}
				for _, list := range []struct {
					bs     []volume.Backup
					action string
				}{{res.Keep, "keep"}, {res.Remove, verb}} {
					for _, b := range list.bs {
						v.rows = append(v.rows, []string{b.Name, b.Volume, b.CreatedAt.Local().Format(time.DateTime), list.action})
						if list.action != "keep" {
							v.names = append(v.names, b.Name)
						}
					}
				}
				if perr := a.print(v); perr != nil {
					return perr
				}
				a.note("%s %d backups, kept %d; %s %d unused chunks (%s)", verb, len(res.Remove), len(res.Keep),
					free, res.FreedChunks, volume.FormatSize(res.FreedBytes))
				return nil
			})
		},
	}, func(cmd *cobra.Command) {
		f := cmd.Flags()
		f.IntVar(&p.Last, "keep-last", 0, "keep the N newest backups")
		f.IntVar(&p.Hourly, "keep-hourly", 0, "keep the newest backup of each of the last N hours")
		f.IntVar(&p.Daily, "keep-daily", 0, "keep the newest backup of each of the last N days")
		f.IntVar(&p.Weekly, "keep-weekly", 0, "keep the newest backup of each of the last N weeks")
		f.IntVar(&p.Monthly, "keep-monthly", 0, "keep the newest backup of each of the last N months")
	})
}

var backupHeader = []string{"NAME", "VOLUME", "SIZE", "STORED", "CREATED"}
var backupWideHeader = []string{"NAME", "UUID", "VOLUME", "REPO", "STATUS", "SIZE", "READ", "STORED", "CHUNKS", "INCREMENTAL", "PARENT", "CONSISTENCY", "CREATED"}

func backupRow(b volume.Backup) (row, wide []string) {
	created := b.CreatedAt.Local().Format(time.DateTime)
	row = []string{b.Name, b.Volume, volume.FormatSize(b.SizeBytes), volume.FormatSize(b.StoredBytes), created}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	wide = []string{b.Name, b.UUID, b.Volume, b.Repo, b.Status, volume.FormatSize(b.SizeBytes), volume.FormatSize(b.ReadBytes),
		volume.FormatSize(b.StoredBytes), strconv.Itoa(b.ChunkCount), strconv.FormatBool(b.Incremental), dash(b.Parent),
		dash(b.Consistency), created}
	return row, wide
}

func backupsView(bs []volume.Backup) view {
	v := view{obj: bs, header: backupHeader, wideHeader: backupWideHeader}
	for _, b := range bs {
		r, w := backupRow(b)
		v.rows, v.wideRows = append(v.rows, r), append(v.wideRows, w)
		v.names = append(v.names, b.Name)
	}
	return v
}

func backupView(b volume.Backup) view {
	v := view{obj: b, header: []string{"FIELD", "VALUE"}, names: []string{b.Name}, object: true}
	_, wide := backupRow(b)
	for i, h := range backupWideHeader {
		v.rows = append(v.rows, []string{strings.ToLower(h), wide[i]})
	}
	return v
}
