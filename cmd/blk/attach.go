package main

import (
	"context"
	"fmt"

	"github.com/blk-project/blk/state"
	"github.com/blk-project/blk/volume"
	"github.com/spf13/cobra"
)

func newVolumeAttachCmd(a *App) *cobra.Command {
	var o volume.AttachOptions
	cmd := &cobra.Command{
		Use:   "attach NAME|UUID --instance DOMAIN [--host H] [--device vdX] [--bus virtio|scsi] [--read-only] [--boot]",
		Short: "Export a volume and plug it into a libvirt domain (hot-plugged when it runs)",
		Long: `Attach a volume to a libvirt domain, as Nova and Cinder do:
  1. find the domain on the compute hosts (or --host) and reserve the volume
     (available -> attaching) with a device: the first free vdX/sdX, or --device;
  2. on the storage host, a tgt target <iqn_prefix>:<volume-uuid> with LUN 1
     backed by the LV, bound to the compute host's initiator IQN only, with a
     random per-volume CHAP account when the backend sets chap: true;
  3. on the compute host, iscsiadm node + login, waiting for
     /dev/disk/by-path/ip-<portal>-iscsi-<iqn>-lun-1;
  4. libvirt attach, live and persistent, <disk type='block'> with cache='none'
     and the volume UUID as serial (20 bytes; /dev/disk/by-id/virtio-<serial>).
A shut-off domain gets the disk in its persistent definition only; the
session (or NFS mount) is still made, so the domain starts with the disk.

--boot (shut-off domains only) makes the volume the domain's first boot
device: the disk gets <boot order='1'/>. libvirt refuses per-device boot
orders beside <os><boot dev=...>, so blk first redefines the domain: each
<os><boot dev=...> becomes a per-device order on the device it meant (hd: the
first disk, cdrom: the first CD-ROM, network: the first interface), and every
order there was moves one down, after the volume. Detaching the volume later
leaves those orders as they are.

Any failure undoes, in reverse, what this run made (the domain's definition
included), and the volume is available again. Attaching a volume already
attached to the same instance succeeds and says so; to another instance it
exits 3. An attach that was killed (the volume stays attaching) is run again
the same way: what it made is rolled back first, as 'detach --force' would,
then the volume is attached afresh.`,
		Example: `  blk volume attach db1 --instance web1
  blk volume attach db1 --instance web1 --bus scsi --read-only
  blk volume attach db1 --instance web1 --dry-run
  blk volume attach root1 --instance web2 --boot    # web2 shut off`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Volume = args[0]
			if err := volume.CheckRef(o.Volume); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return a.withReader(cmd, state.Existing, func(ctx context.Context, svc *volume.Service) error {
				stop := a.spin(fmt.Sprintf("attaching %s to %s", o.Volume, o.Instance))
				v, already, err := svc.Attach(ctx, o)
				stop()
				if err != nil {
					return err
				}
				if a.DryRun {
					return a.dryRunDone()
				}
				if already {
					a.note("volume %s is already attached to %s", v.Name, o.Instance)
				}
				return a.print(volumeView(v))
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Instance, "instance", "", "libvirt domain to attach to (required)")
	f.StringVar(&o.Host, "host", "", "compute host running the domain (default: search the compute hosts)")
	f.StringVar(&o.Device, "device", "", "target device in the guest, vdb..vdz or sdb..sdz (default: first free)")
	f.StringVar(&o.Bus, "bus", "virtio", "disk bus: virtio or scsi")
	f.BoolVar(&o.ReadOnly, "read-only", false, "attach read-only")
	f.BoolVar(&o.Boot, "boot", false, "make it the domain's first boot device (the domain must be shut off)")
	return cmd
}

func newVolumeDetachCmd(a *App) *cobra.Command {
	var o volume.DetachOptions
	cmd := &cobra.Command{
		Use:   "detach NAME|UUID [--instance DOMAIN] [--force]",
		Short: "Unplug a volume from its domain and remove its iSCSI export",
		Long: `Detach a volume: libvirt detach (persistent, then live, waiting until the
disk has left the live domain; a shut-off domain only has the persistent
definition to change), flush and delete the SCSI device on the
compute host, log out and delete the node of this target only, then remove
the ACL, CHAP account, LUN and target on the storage host.

A failed step leaves the volume detaching with the step recorded: running
detach again continues from there. --force tries every step whatever fails
(the domain or the session may be gone already), reports what failed, and
leaves the volume available; it also cleans up after a killed attach.
Detaching a volume that is not attached succeeds and says so.`,
		Example: `  blk volume detach db1
  blk volume detach db1 --instance web1
  blk volume detach db1 --force`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Volume = args[0]
			if err := volume.CheckRef(o.Volume); err != nil {
				return err
			}
			return a.withReader(cmd, state.Existing, func(ctx context.Context, svc *volume.Service) error {
				stop := a.spin("detaching " + o.Volume)
				res, err := svc.Detach(ctx, o)
				stop()
				if err != nil {
					return err
				}
				if a.DryRun {
					return a.dryRunDone()
				}
				for _, w := range res.Warnings {
					a.warn("%s", w)
				}
				if !res.WasPresent {
					a.note("volume %s was not attached", res.Volume.Name)
				}
				return a.print(volumeView(res.Volume))
			})
		},
	}
	cmd.Flags().StringVar(&o.Instance, "instance", "", "only detach if attached to this domain")
	cmd.Flags().BoolVar(&o.Force, "force", false, "tear down whatever remains, passing over failed steps")
	return cmd
}
