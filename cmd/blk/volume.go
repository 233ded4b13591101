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
		Short:   "Create, list, show, attach, detach, extend and delete volumes",
	}
	cmd.AddCommand(newVolumeCreateCmd(a), newVolumeListCmd(a), newVolumeShowCmd(a), newVolumeDeleteCmd(a),
		newVolumeAttachCmd(a), newVolumeDetachCmd(a), newVolumeExtendCmd(a))
	return cmd
}

func newVolumeCreateCmd(a *App) *cobra.Command {
	var o volume.CreateOptions
	cmd := &cobra.Command{
		Use:   "create NAME --size SIZE [--backend B] [--thin | --preallocate] [--from-image PATH [--image-format raw|qcow2]]",
		Short: "Create a volume (an LVM logical volume, or a file on an NFS export)",
		Long: `Create a volume: on an lvm backend, an LV named volume-<uuid> in the
backend's volume group, tagged blk and blk-vol-<uuid>; the size recorded is
the one LVM really made (rounded up to whole extents). With --thin the LV is
thin-provisioned in the backend's thin_pool.

On an nfs backend, a sparse raw file volume-<uuid> in the export's path on
its host; --preallocate allocates it in full instead.

Sizes take a unit: 512MiB, 20GiB, 1TiB, or LVM's 20G (GiB).

--from-image PATH fills the new volume with a disk image that is on the
backend's storage host (an absolute path to a regular file there): blk reads
it with qemu-img info --output=json (the format is probed unless
--image-format says it), takes only raw and qcow2 images that name no backing
file and no external data file, makes the volume (--size defaults to the
image's virtual size, and may not be smaller), then writes it with qemu-img
convert -n -O raw (on a thin volume it just made, with --target-is-zero, so the
image's zeros are not written), with a progress bar. If the copy fails the
volume is removed. The volume's source is recorded as image:PATH.

If a create is killed part-way, running the same command again finishes it.`,
		Example: `  blk volume create db1 --size 20GiB
  blk volume create scratch --size 100G --thin --backend lvm-1
  blk volume create files1 --size 20GiB --backend nfs-1
  blk volume create db2 --size 1TiB --dry-run
  blk volume create root1 --from-image /srv/images/debian-12.qcow2 --thin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			if o.Size == "" && o.FromImage == "" {
				return flagError(cmd, fmt.Errorf("--size is required"))
			}
			if _, err := o.Validate(); err != nil {
				return err
			}
			// An unknown backend is refused before the state file is made.
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if _, _, err := volume.Backend(cfg, o.Backend); err != nil {
				return err
			}
			return a.withService(cmd, func(ctx context.Context, svc *volume.Service) error {
				v, err := svc.Create(ctx, o)
				if err != nil {
					return err
				}
				if a.DryRun {
					return a.dryRunDone()
				}
				return a.print(volumeView(v))
			})
		},
	}
	cmd.Flags().StringVar(&o.Size, "size", "", "size with a unit: 512MiB, 20GiB, 1TiB, 20G")
	cmd.Flags().StringVar(&o.Backend, "backend", "", "backend to create it on (default: defaults.backend)")
	cmd.Flags().BoolVar(&o.Thin, "thin", false, "thin-provision it in the backend's thin pool")
	cmd.Flags().BoolVar(&o.Preallocate, "preallocate", false, "nfs backends: allocate the file in full (default: sparse)")
	cmd.Flags().StringVar(&o.FromImage, "from-image", "", "absolute path, on the storage host, of a raw or qcow2 image to fill it with")
	cmd.Flags().StringVar(&o.ImageFormat, "image-format", "", "format of --from-image: raw or qcow2 (default: read by qemu-img info)")
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
					a.warn("no state file at %s yet (check --state, BLK_STATE or the config's state:): no volumes", svc.State.Path())
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
