package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/blk-project/blk/state"
	"github.com/blk-project/blk/volume"
	"github.com/spf13/cobra"
)

func newSnapshotCmd(a *App) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "snapshot",
		Aliases: []string{"snap"},
		Short:   "Create, list, show, delete and revert to snapshots of volumes",
	}
	cmd.AddCommand(newSnapshotCreateCmd(a), newSnapshotListCmd(a), newSnapshotShowCmd(a), newSnapshotDeleteCmd(a),
		newSnapshotRevertCmd(a))
	return cmd
}

func newSnapshotCreateCmd(a *App) *cobra.Command {
	var o volume.SnapshotOptions
	return withFlags(&cobra.Command{
		Use:   "create VOLUME [--name S] [--quiesce auto|require|off]",
		Short: "Take a snapshot of a volume",
		Long: `Take a snapshot of a volume, available or in use.

On an lvm backend it is an LVM snapshot, LV _snapshot-<uuid> tagged blk,
blk-snap-<uuid> and blk-vol-<volume uuid>. Of a thin volume it is a thin
snapshot: instant, and it takes pool space only as the two differ. Of a
thick volume it is a copy-on-write snapshot given room for every block of
the volume (the volume's size, plus LVM's table of changed blocks), so it can
never overflow, however much the volume is rewritten: the volume group needs
that much free space.

Of an in-use volume, --quiesce auto (the default) freezes the guest's
filesystems through the QEMU guest agent for the moment the snapshot is
taken, and thaws them at once; the thaw always runs, on failure and on
Ctrl-C too. The snapshot's consistency is then "filesystem". When the guest
has no agent that answers, auto takes the snapshot anyway, records "crash"
(as a power cut would leave the disk) and says so on stderr; --quiesce
require takes none and fails (exit 1); --quiesce off never freezes ("crash").
A snapshot of an available volume, which nothing writes, is "clean".

On an nfs backend a snapshot is a sparse copy of the volume's file, made on
the storage host as snapshot-<uuid> next to it, and only of an available
volume: a guest writing during the copy would tear it (exit 3 when in use).

The default name is <volume>-snap-<first 8 characters of its uuid>. A
snapshot create that was killed is finished by running the same command
again with the same --name: it takes over the snapshot the dead run began.`,
		Example: `  blk snapshot create db1
  blk snapshot create db1 --name db1-before-upgrade --quiesce require
  blk snapshot create files1 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Volume = args[0]
			if err := o.Validate(); err != nil {
				return err
			}
			return a.withReader(cmd, state.Existing, func(ctx context.Context, svc *volume.Service) error {
				sn, err := svc.CreateSnapshot(ctx, o)
				if err != nil {
					return err
				}
				if sn.Warning != "" {
					a.warn("%s", sn.Warning)
				}
				if a.DryRun {
					return a.dryRunDone()
				}
				return a.print(snapshotView(sn))
			})
		},
	}, func(cmd *cobra.Command) {
		cmd.Flags().StringVar(&o.Name, "name", "", "name of the snapshot (default: <volume>-snap-<uuid prefix>)")
		cmd.Flags().StringVar(&o.Quiesce, "quiesce", volume.QuiesceAuto, "freeze the guest's filesystems while an in-use volume is snapshotted: auto, require or off")
	})
}

func newSnapshotListCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:     "list [VOLUME]",
		Aliases: []string{"ls"},
		Short:   "List snapshots, of one volume or of all",
		Example: "  blk snapshot list\n  blk snapshot list db1 -o json",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := ""
			if len(args) == 1 {
				ref = args[0]
				if err := volume.CheckRef(ref); err != nil {
					return err
				}
			}
			return a.withReader(cmd, state.ReadOnlyOrEmpty, func(ctx context.Context, svc *volume.Service) error {
				sns, err := svc.ListSnapshots(ctx, ref)
				if err != nil {
					return err
				}
				return a.print(snapshotsView(sns))
			})
		},
	}
}

func newSnapshotShowCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:     "show SNAPSHOT",
		Short:   "Show one snapshot",
		Example: "  blk snapshot show db1-before-upgrade -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := volume.CheckRef(args[0]); err != nil {
				return err
			}
			return a.withReader(cmd, state.ReadOnly, func(ctx context.Context, svc *volume.Service) error {
				sn, err := svc.ShowSnapshot(ctx, args[0])
				if err != nil {
					return err
				}
				return a.print(snapshotView(sn))
			})
		},
	}
}

func newSnapshotDeleteCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:     "delete SNAPSHOT... [--yes]",
		Aliases: []string{"rm", "remove"},
		Short:   "Delete snapshots",
		Long: `Delete snapshots: remove each snapshot's LV (or NFS file) and its row. The
volume is not touched.

On a terminal blk asks first; without one, --yes is required.
With several snapshots, each is tried; if some fail the exit code is 5.`,
		Example: "  blk snapshot delete db1-before-upgrade\n  blk snapshot delete s1 s2 --yes",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, r := range args {
				if err := volume.CheckRef(r); err != nil {
					return err
				}
			}
			if err := a.confirm(a.context(cmd), "delete", "Delete snapshot "+strings.Join(args, ", ")+"?"); err != nil {
				return err
			}
			return a.withReader(cmd, state.Existing, func(ctx context.Context, svc *volume.Service) error {
				results, err := svc.DeleteSnapshots(ctx, args)
				if a.DryRun && err == nil {
					return a.dryRunDone()
				}
				if len(results) > 1 || err == nil {
					v := view{obj: results, header: []string{"SNAPSHOT", "RESULT"}}
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
	}
}

func newSnapshotRevertCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "revert SNAPSHOT [--yes]",
		Short: "Roll a volume back to one of its snapshots",
		Long: `Roll a volume back to a snapshot: afterwards the volume reads as the snapshot
did, and what was written to it since is gone. The volume must be available
(detach it first: its data would change under the guest; exit 3 otherwise).

On an lvm backend the snapshot is merged into the volume (lvconvert --merge):
the snapshot is consumed by the merge and is gone afterwards, its row too;
take a new snapshot first if you want to keep that point. A thick merge
copies the changed blocks back, and takes time in proportion to them.
On an nfs backend the snapshot's file is copied back over the volume's
(sparse), and the snapshot is kept.

If an nfs revert fails part-way, or LVM defers the merge (something holds
the volume's LV open: the error says how to finish it), the volume is left
in error: rerun the revert. On a terminal blk asks first; without one, --yes is required.`,
		Example: "  blk snapshot revert db1-before-upgrade --yes",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := volume.CheckRef(args[0]); err != nil {
				return err
			}
			if err := a.confirm(a.context(cmd), "revert", "Revert the volume of snapshot "+args[0]+" to it, losing what was written since?"); err != nil {
				return err
			}
			return a.withReader(cmd, state.Existing, func(ctx context.Context, svc *volume.Service) error {
				res, err := svc.RevertSnapshot(ctx, args[0])
				if err != nil {
					return err
				}
				if a.DryRun {
					return a.dryRunDone()
				}
				if res.Consumed {
					a.note("blk: note: snapshot %s was merged into %s and is gone", res.Snapshot.Name, res.Volume.Name)
				}
				v := volumeView(res.Volume)
				v.obj = res
				return a.print(v)
			})
		},
	}
}

var snapshotHeader = []string{"NAME", "VOLUME", "SIZE", "STATUS", "CONSISTENCY", "CREATED"}

func snapshotRow(sn volume.Snapshot) []string {
	return []string{sn.Name, sn.Volume, volume.FormatSize(sn.SizeBytes), sn.Status, sn.Consistency,
		sn.CreatedAt.Local().Format(time.DateTime)}
}

func snapshotsView(sns []volume.Snapshot) view {
	v := view{obj: sns, header: snapshotHeader}
	for _, sn := range sns {
		v.rows = append(v.rows, snapshotRow(sn))
		v.names = append(v.names, sn.Name)
	}
	return v
}

func snapshotView(sn volume.Snapshot) view {
	v := view{obj: sn, header: []string{"FIELD", "VALUE"}, names: []string{sn.Name}, object: true}
	v.rows = [][]string{
		{"name", sn.Name}, {"uuid", sn.UUID}, {"volume", sn.Volume + " (" + sn.VolumeUUID + ")"}, {"backend", sn.Backend},
		{"size", fmt.Sprintf("%s (%d bytes)", volume.FormatSize(sn.SizeBytes), sn.SizeBytes)},
		{"status", sn.Status}, {"consistency", sn.Consistency}, {"path", sn.Path},
		{"created", sn.CreatedAt.Local().Format(time.DateTime)},
	}
	if sn.LastError != "" {
		v.rows = append(v.rows, []string{"last error", sn.LastError})
	}
	return v
}
