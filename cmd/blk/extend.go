package main

import (
	"context"
	"fmt"

	"github.com/blk-project/blk/state"
	"github.com/blk-project/blk/volume"
	"github.com/spf13/cobra"
)

func newVolumeExtendCmd(a *App) *cobra.Command {
	var o volume.ExtendOptions
	cmd := &cobra.Command{
		Use:   "extend NAME|UUID --size SIZE",
		Short: "Grow a volume, available or in use; a running guest sees the new size",
		Long: `Grow a volume to SIZE (larger than it is; the same size or less exits 2).
The volume is extending meanwhile, then back to available or in-use.

  lvm: lvextend -L <bytes>b (thin volumes: their virtual size); the size
       recorded is what LVM made (whole extents). LVM grows a thick
       volume that has snapshots only while it is inactive: an available
       one is deactivated around lvextend (its snapshots keep their
       room: writes past their size need none), an in-use one is refused
       (exit 3: detach it, or delete the snapshots, first).
  nfs: the file is lengthened with truncate (and allocated, if preallocated).

When the volume is attached, the compute host and the guest are told too:
  iSCSI: tgtd reads a LUN's size only when it opens the backing store, so it
         is reopened in place (tgtadm --op update --mode logicalunit
         --params online=0,path=<LV>: the target, the session and the LUN
         stay). A command in flight in tgtd during the reopen could fail,
         so a running guest is paused around it (virsh suspend/resume: QEMU
         finishes its I/O in flight first; the guest waits a moment, no
         I/O fails). Then the initiator rescans this target (iscsiadm -R)
         and blk waits until the compute host's device has the new size;
  then:  libvirt blockresize of the disk in the running domain, so the guest
         kernel sees it (a shut-off domain reads it when it starts).
Growing the filesystem inside the guest is the guest's business.

A volume is never shrunk back: if a step after the growth fails, the volume
keeps its new size (recorded, with the error), the guest may still see the
old one, and running the same command again finishes the steps left. An
extend that was killed is finished the same way (a guest it left paused is
resumed first).`,
		Example: `  blk volume extend db1 --size 40GiB
  blk volume extend db1 --size 40GiB --dry-run`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Volume = args[0]
			if err := volume.CheckRef(o.Volume); err != nil {
				return err
			}
			if o.Size == "" {
				return flagError(cmd, fmt.Errorf("--size is required"))
			}
			if _, err := o.Validate(); err != nil {
				return err
			}
			return a.withReader(cmd, state.Existing, func(ctx context.Context, svc *volume.Service) error {
				stop := a.spin(fmt.Sprintf("extending %s to %s", o.Volume, o.Size))
				v, err := svc.Extend(ctx, o)
				stop()
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
	cmd.Flags().StringVar(&o.Size, "size", "", "new size with a unit, larger than now: 40GiB, 1TiB, 40G")
	return cmd
}
