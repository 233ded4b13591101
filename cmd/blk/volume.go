package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/blk-project/blk/state"
	"github.com/blk-project/blk/volume"
	"github.com/spf13/cobra"
)

func newVolumeCmd(a *App) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "volume",
		Aliases: []string{"vol"},
		Short:   "Create, list, show, attach, detach, extend, delete and reset volumes",
	}
	cmd.AddCommand(newVolumeCreateCmd(a), newVolumeListCmd(a), newVolumeShowCmd(a), newVolumeDeleteCmd(a),
		newVolumeAttachCmd(a), newVolumeDetachCmd(a), newVolumeExtendCmd(a), newVolumeResetStateCmd(a))
	return cmd
}

func newVolumeResetStateCmd(a *App) *cobra.Command {
	var o volume.ResetOptions
	return withFlags(&cobra.Command{
		Use:   "reset-state NAME|UUID --to available|in-use|error [--force]",
		Short: "Set a volume's status by hand, once the hosts agree (the admin's escape hatch)",
		Long: `Set a volume's status, whatever it is now: for a volume stuck in a status that
nothing moves it from. Prefer rerunning the command that left it, or
'blk reconcile --fix', which finish or roll back a killed workflow.

blk first looks at the hosts and refuses (exit 3), saying what it found, when
they contradict the status asked for:
  available  its LV or file is gone, or it still has an attachment, a tgt
             target, an iSCSI session on a compute host, or a disk with its
             serial in a domain;
  in-use     it has no attachment, or the attachment's domain has no disk
             with its serial, or its LV or file is gone;
  error      nothing: error is the operator's "I do not know".
A host that cannot be looked at counts as a contradiction too.

--force sets the status anyway and records what it overrode as the volume's
last error; reset to available then drops the attachment row, and
'blk reconcile' lists what is left of the export for --fix to remove. A
running operation whose process may be alive is never overridden, with
--force or not.`,
		Example: `  blk volume reset-state db1 --to available
  blk volume reset-state db1 --to error
  blk volume reset-state db1 --to available --force`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Volume = args[0]
			if err := volume.CheckRef(args[0]); err != nil {
				return err
			}
			if o.To == "" {
				return flagError(cmd, fmt.Errorf("--to is required (%s)", strings.Join(volume.ResetStates, ", ")))
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return a.withReader(cmd, state.Existing, func(ctx context.Context, svc *volume.Service) error {
				res, err := svc.ResetState(ctx, o)
				if err != nil {
					return err
				}
				for _, f := range res.Found {
					a.warn("volume %s set to %s despite: %s", res.Volume.Name, o.To, f)
				}
				a.note("volume %s: %s -> %s", res.Volume.Name, res.From, res.Volume.Status)
				return a.print(volumeView(res.Volume))
			})
		},
	}, func(cmd *cobra.Command) {
		cmd.Flags().StringVar(&o.To, "to", "", "the status to set: "+strings.Join(volume.ResetStates, ", "))
		cmd.Flags().BoolVar(&o.Force, "force", false, "set it even when the hosts contradict it")
	})
}

func newVolumeCreateCmd(a *App) *cobra.Command {
	var o volume.CreateOptions
	cmd := &cobra.Command{
		Use:   "create NAME --size SIZE [--backend B | --backend-type lvm|nfs] [--thin | --preallocate] [--from-snapshot S | --from-volume V | --from-image PATH [--image-format raw|qcow2] | --from-backup B [--repo R]]",
		Short: "Create a volume (an LVM logical volume, or a file on an NFS export)",
		Long: `Create a volume: on an lvm backend, an LV named volume-<uuid> in the
backend's volume group, tagged blk and blk-vol-<uuid>; the size recorded is
the one LVM really made (rounded up to whole extents). With --thin the LV is
thin-provisioned in the backend's thin_pool.

On an nfs backend, a sparse raw file volume-<uuid> in the export's path on
its host; --preallocate allocates it in full instead.

Sizes take a unit: 512MiB, 20GiB, 1TiB, or LVM's 20G (GiB).

Which backend: --backend names one; else defaults.backend, when it names
one. With --backend-type, defaults.backend: auto, or several backends and no
default, blk places the volume as cinder-scheduler's capacity filter and
weigher do: of the backends (of that type) where it fits, the one with the
most free space. A thick volume must fit in the volume group's free space
(or the export's); a thin one (--thin, or an nfs file that is not
preallocated) must keep what the thin pool or export promises within
max_over_subscription_ratio × its size (default 20), with the pool's data
and metadata (or the export) used under max_pool_usage_percent (default 90),
and is weighed by that virtual free space. A backend whose host does not
answer is skipped and named. --dry-run (or -v) shows every backend weighed
and why it fits or not.

With --from-snapshot or --from-volume the volume starts as a copy of a
snapshot or of another volume, and records it as its source
(snapshot:<uuid> or volume:<uuid>). --size may then be left out (the
source's size) or be larger, never smaller; --backend defaults to the
source's, and a copy of a thin LVM volume is thin on the same backend.
A thin volume from a thin source in the same pool is a writable thin
snapshot of it: instant, nothing is copied, and it shares the pool's blocks
until either side rewrites them. Any other copy (thick, across backends,
NFS) makes a new volume and streams the data into it in 4 MiB blocks, with a
progress bar; on a thin or NFS target, all-zero blocks are not written and
take no space. An in-use LVM volume is copied through a temporary snapshot
(its guest's filesystems frozen for the moment it is taken, as snapshot
create's --quiesce auto), removed afterwards; an in-use NFS volume is
refused (exit 3): snapshot it while available and copy the snapshot. A
failed copy removes what it made; run the command again.

--from-image PATH fills the new volume with a disk image that is on the
backend's storage host (an absolute path to a regular file there): blk reads
it with qemu-img info --output=json (the format is probed unless
--image-format says it), takes only raw and qcow2 images that name no backing
file and no external data file, makes the volume (--size defaults to the
image's virtual size, and may not be smaller), then writes it with qemu-img
convert -n -O raw (on a thin volume it just made, with --target-is-zero, so the
image's zeros are not written), with a progress bar. If the copy fails the
volume is removed. The volume's source is recorded as image:PATH.

--from-backup B restores a backup (name or uuid) from its repository (--repo,
default defaults.backup_repo) into the new volume, as 'blk backup restore B
--new NAME': --size defaults to the backup's, every chunk's hash is checked
as it is written, and on a new thin LV or sparse file the backup's zeros are
not written. The repository alone is read: the state file need not know the
backup. If the restore fails the volume is removed. Its source is recorded as
backup:<uuid>.

If a create is killed part-way, running the same command again finishes it,
on the backend it began on.`,
		Example: `  blk volume create db1 --size 20GiB
  blk volume create scratch --size 100G --thin --backend lvm-1
  blk volume create files1 --size 20GiB --backend nfs-1
  blk volume create db2 --size 1TiB --dry-run
  blk volume create logs --size 50GiB --thin --backend-type lvm --dry-run
  blk volume create db1-test --from-snapshot db1-before-upgrade
  blk volume create db1-copy --from-volume db1 --backend nfs-1 --size 40GiB
  blk volume create root1 --from-image /srv/images/debian-12.qcow2 --thin
  blk volume create db1-restored --from-backup db1-nightly --thin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			if o.Size == "" && o.FromSnapshot == "" && o.FromVolume == "" && o.FromImage == "" && o.FromBackup == "" {
				return flagError(cmd, fmt.Errorf("--size is required (unless --from-snapshot, --from-volume, --from-image or --from-backup)"))
			}
			if _, err := o.Validate(); err != nil {
				return err
			}
			// An unknown backend is refused before the state file is made.
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if _, err := volume.Placing(cfg, o); err != nil {
				return err
			}
			o.Placed = a.showPlacement
			return a.withService(cmd, func(ctx context.Context, svc *volume.Service) error {
				v, err := svc.Create(ctx, o)
				if err != nil {
					return err
				}
				if v.Warning != "" {
					a.warn("%s", v.Warning)
				}
				if a.DryRun {
					return a.dryRunDone()
				}
				return a.print(volumeView(v))
			})
		},
	}
	cmd.Flags().StringVar(&o.Size, "size", "", "size with a unit: 512MiB, 20GiB, 1TiB, 20G")
	cmd.Flags().StringVar(&o.Backend, "backend", "", "backend to create it on (default: defaults.backend, else placed by free space)")
	cmd.Flags().StringVar(&o.BackendType, "backend-type", "", "place it on the lvm or nfs backend with the most free space that fits")
	cmd.Flags().BoolVar(&o.Thin, "thin", false, "thin-provision it in the backend's thin pool")
	cmd.Flags().BoolVar(&o.Preallocate, "preallocate", false, "nfs backends: allocate the file in full (default: sparse)")
	cmd.Flags().StringVar(&o.FromSnapshot, "from-snapshot", "", "start as a copy of this snapshot")
	cmd.Flags().StringVar(&o.FromVolume, "from-volume", "", "start as a copy of this volume")
	cmd.Flags().StringVar(&o.FromImage, "from-image", "", "absolute path, on the storage host, of a raw or qcow2 image to fill it with")
	cmd.Flags().StringVar(&o.ImageFormat, "image-format", "", "format of --from-image: raw or qcow2 (default: read by qemu-img info)")
	cmd.Flags().StringVar(&o.FromBackup, "from-backup", "", "restore this backup (name or uuid) into it")
	cmd.Flags().StringVar(&o.BackupRepo, "repo", "", "the repository of --from-backup (default defaults.backup_repo)")
	return cmd
}

func newVolumeListCmd(a *App) *cobra.Command {
	var o volume.ListOptions
	return withFlags(&cobra.Command{
		Use:     "list [--status S] [--backend B] [--instance I]",
		Aliases: []string{"ls"},
		Short:   "List volumes from the state file",
		Example: `  blk volume list
  blk volume list --status available -o json
  blk volume list -o wide`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// A fresh machine lists no volumes, as scripts expect; a person
			// still hears that no state file is there (a mistyped --state).
			return a.withReader(cmd, state.ReadOnlyOrEmpty, func(ctx context.Context, svc *volume.Service) error {
				if svc.State.Missing() {
					a.warn("no state %s %s yet (check --state, BLK_STATE or the config's state:): no volumes", state.Where(svc.State.Path()), svc.State.Path())
				}
				if a.Output == "json" {
					return a.printJSONStream(func(w io.Writer) error { return svc.WriteListJSON(ctx, o, w) })
				}
				vols, err := svc.List(ctx, o)
				if err != nil {
					return err
				}
				return a.print(volumesView(vols))
			})
		},
	}, func(cmd *cobra.Command) {
		cmd.Flags().StringVar(&o.Status, "status", "", "only volumes in this status")
		cmd.Flags().StringVar(&o.Backend, "backend", "", "only volumes on this backend")
		cmd.Flags().StringVar(&o.Instance, "instance", "", "only volumes attached to this instance")
	})
}

func newVolumeShowCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:     "show NAME|UUID",
		Short:   "Show one volume",
		Example: "  blk volume show db1\n  blk volume show db1 -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := volume.CheckRef(args[0]); err != nil {
				return err
			}
			return a.withReader(cmd, state.ReadOnly, func(ctx context.Context, svc *volume.Service) error {
				v, err := svc.Show(ctx, args[0])
				if err != nil {
					return err
				}
				return a.print(volumeView(v))
			})
		},
	}
}

func newVolumeDeleteCmd(a *App) *cobra.Command {
	var o volume.DeleteOptions
	return withFlags(&cobra.Command{
		Use:     "delete NAME|UUID... [--wipe] [--yes]",
		Aliases: []string{"rm", "remove"},
		Short:   "Delete volumes and their LVs or files",
		Long: `Delete volumes: remove each LV (or NFS volume file) and its row. A volume
must be available (not attached, not in the middle of another operation) and
have no snapshots. With --wipe the LV or file is overwritten with zeros first
(thin LVs are discarded back to their pool instead, which zeroes blocks before
reuse).

On a terminal blk asks first; without one, --yes is required.
With several volumes, each is tried; if some fail the exit code is 5.`,
		Example: `  blk volume delete db1
  blk volume delete db1 db2 --yes
  blk volume delete old --wipe --yes`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Refs = args
			for _, r := range args {
				if err := volume.CheckRef(r); err != nil {
					return err
				}
			}
			what := "volume " + args[0]
			if len(args) > 1 {
				what = "volumes " + strings.Join(args, ", ")
			}
			if o.Wipe {
				what += " (wiping its data)"
			}
			if err := a.confirm(a.context(cmd), "delete", "Delete "+what+"?"); err != nil {
				return err
			}
			return a.withReader(cmd, state.Existing, func(ctx context.Context, svc *volume.Service) error {
				results, err := svc.Delete(ctx, o)
				for _, r := range results {
					if r.Note != "" {
						a.note("blk: note: %s", r.Note)
					}
				}
				if a.DryRun && err == nil {
					return a.dryRunDone()
				}
				if len(results) > 1 || err == nil {
					v := view{obj: results, header: []string{"VOLUME", "RESULT"}}
					for _, r := range results {
						result := r.Status
						if r.Error != "" {
							result += ": " + r.Error
						}
						v.rows = append(v.rows, []string{r.Ref, result})
						if r.Err == nil {
							v.names = append(v.names, r.Ref)
						}
					}
					if perr := a.print(v); perr != nil {
						return perr
					}
				}
				return err
			})
		},
	}, func(cmd *cobra.Command) {
		cmd.Flags().BoolVar(&o.Wipe, "wipe", false, "zero the volume's data before removing it")
	})
}

func withFlags(cmd *cobra.Command, add func(*cobra.Command)) *cobra.Command {
	add(cmd)
	return cmd
}

var volumeHeader = []string{"NAME", "SIZE", "STATUS", "BACKEND", "ATTACHED TO"}
var volumeWideHeader = []string{"NAME", "UUID", "SIZE", "STATUS", "BACKEND", "THIN", "SNAPSHOTS", "ATTACHED TO", "DEVICE", "PATH", "CREATED"}

func volumeRow(v volume.Volume) (row, wide []string) {
	attached, device := "-", "-"
	if at := v.Attachment; at != nil {
		attached, device = at.Instance+"@"+at.Host, at.Device
	}
	row = []string{v.Name, volume.FormatSize(v.SizeBytes), v.Status, v.Backend, attached}
	wide = []string{v.Name, v.UUID, volume.FormatSize(v.SizeBytes), v.Status, v.Backend, strconv.FormatBool(v.Thin),
		strconv.Itoa(v.SnapshotCount), attached, device, v.Path, v.CreatedAt.Local().Format(time.DateTime)}
	return row, wide
}

func volumesView(vols []volume.Volume) view {
	v := view{obj: vols, header: volumeHeader, wideHeader: volumeWideHeader}
	for _, vol := range vols {
		r, w := volumeRow(vol)
		v.rows, v.wideRows = append(v.rows, r), append(v.wideRows, w)
		v.names = append(v.names, vol.Name)
	}
	return v
}

// volumeView shows one volume as a list of fields, the way people read one
// object.
func volumeView(vol volume.Volume) view {
	v := view{obj: vol, header: []string{"FIELD", "VALUE"}, names: []string{vol.Name}, object: true}
	_, wide := volumeRow(vol)
	for i, h := range volumeWideHeader {
		v.rows = append(v.rows, []string{strings.ToLower(h), wide[i]})
	}
	v.rows[2][1] = fmt.Sprintf("%s (%d bytes)", wide[2], vol.SizeBytes)
	if vol.AllocatedBytes != nil {
		v.rows = append(v.rows, []string{"allocated", fmt.Sprintf("%s (%d bytes)", volume.FormatSize(*vol.AllocatedBytes), *vol.AllocatedBytes)})
	}
	if vol.Attachment != nil {
		v.rows = append(v.rows, []string{"device path", vol.Attachment.DevicePath})
	}
	if vol.Source != "" {
		v.rows = append(v.rows, []string{"source", vol.Source})
	}
	if vol.LastError != "" {
		v.rows = append(v.rows, []string{"last error", vol.LastError})
	}
	return v
}

// showPlacement tells how create chose its backend: every backend weighed
// in a dry run or with -v, else only the backends skipped because their
// capacity could not be read.
func (a *App) showPlacement(pl volume.Placement) {
	for _, c := range pl.Candidates {
		if c.Skipped && pl.Backend != "" {
			a.warn("backend %s %s", c.Backend, c.Reason)
		}
	}
	if !a.DryRun && !a.Verbose {
		return
	}
	if pl.Backend != "" {
		a.note("placement: %s, the most free space of the backends that fit %s:", pl.Backend, volume.FormatSize(pl.SizeBytes))
	} else {
		a.note("placement: no backend fits %s:", volume.FormatSize(pl.SizeBytes))
	}
	for _, c := range pl.Candidates {
		mark, what := " ", "fits"
		if c.Backend == pl.Backend {
			mark = "*"
		}
		if !c.Fits {
			what = c.Reason
		}
		free := "free"
		if c.Thin {
			free = "virtual free"
		}
		if c.Skipped || (!c.Fits && c.FreeBytes == 0) {
			a.note(" %s %s (%s): %s", mark, c.Backend, c.Type, what)
			continue
		}
		a.note(" %s %s (%s): %s %s; %s", mark, c.Backend, c.Type, volume.FormatSize(c.FreeBytes), free, what)
	}
}
