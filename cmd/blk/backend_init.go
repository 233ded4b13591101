package main

import (
	"context"
	"fmt"

	"github.com/blk-project/blk/volume"
	"github.com/spf13/cobra"
)

func newBackendInitCmd(a *App) *cobra.Command {
	var o volume.BackendInitOptions
	cmd := &cobra.Command{
		Use:   "init BACKEND (--device DEV... | --loop-file PATH --size SIZE) [--thin-pool-size 95%] [--force] [--lvm-filter]",
		Short: "Make a backend's volume group and thin pool on blank disks or a loop file",
		Long: `Make the LVM volume group the backend names (vg:) on its host, tagged blk:
pvcreate on each device, vgcreate, and when the backend has a thin_pool,
lvcreate --type thin-pool sized --thin-pool-size of the group (95% by
default, or a size such as 500GiB), with the metadata size LVM itself would
choose for that pool and a metadata spare.

A device that holds anything (a partition table, a filesystem, an LVM or RAID
signature, partitions, a mount) is refused and what was found is named;
--force wipes it instead. A PV of another volume group is always refused.
Running init again on a finished backend changes nothing and says so. If a
step fails, what this run made is removed again (no half-made group).

--loop-file PATH --size SIZE backs the group with a sparse file and a loop
device instead, for trying blk on a machine without a spare disk (as devstack
does). It is for trying, not production. A loop device does not come back by
itself after a reboot: on a host running systemd, init installs and enables
blk-loop-BACKEND.service, which re-attaches the file at boot (LVM then
activates the group); without systemd it prints the losetup command to run.

--lvm-filter prints the global_filter line for the host's lvm.conf that
accepts only the backend's PVs and the host's own, so LVM never scans or
activates volume groups that guests make inside their volumes. blk does not
edit lvm.conf itself.

--dry-run prints every command that would change something, per host.`,
		Example: `  blk backend init lvm-1 --device /dev/disk/by-id/wwn-0x5000c500a1b2c3d4
  blk backend init lvm-1 --device /dev/sdb --device /dev/sdc --thin-pool-size 90%
  blk backend init lvm-1 --loop-file /var/lib/blk/lvm-1.img --size 20GiB
  blk backend init lvm-1 --device /dev/sdb --lvm-filter
  blk --dry-run backend init lvm-1 --device /dev/sdb`,
		Args: oneBackend("set up"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Backend = args[0]
			if err := o.Validate(); err != nil {
				return err
			}
			return a.withService(cmd, func(ctx context.Context, svc *volume.Service) error {
				res, err := svc.BackendInit(ctx, o)
				if err != nil {
					return err
				}
				return a.printSetup(res)
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.Devices, "device", nil, "a blank block device on the backend's host (repeat for more)")
	f.StringVar(&o.LoopFile, "loop-file", "", "back the group with this sparse file on the backend's host, through a loop device")
	f.StringVar(&o.LoopSize, "size", "", "size of the --loop-file to make: 20GiB")
	f.StringVar(&o.ThinPoolSize, "thin-pool-size", "95%", "thin pool size: a share of the group (95%) or a size (500GiB)")
	f.BoolVar(&o.Force, "force", false, "wipe devices that hold a filesystem, partition table or RAID/LVM signature")
	f.BoolVar(&o.LVMFilter, "lvm-filter", false, "print the lvm.conf global_filter line that keeps LVM off guests' volume groups")
	return cmd
}

func newBackendExtendCmd(a *App) *cobra.Command {
	var o volume.BackendExtendOptions
	cmd := &cobra.Command{
		Use:   "extend BACKEND --device DEV... [--grow-pool] [--force]",
		Short: "Add disks to a backend's volume group, and grow its thin pool",
		Long: `Add blank devices to the backend's volume group: pvcreate and vgextend.
With --grow-pool the thin pool grows by the space they add (its metadata and
spare too, when the larger pool needs more). Devices are checked as for
'blk backend init': one holding anything is refused unless --force. A device
already in the group is skipped, so rerunning changes nothing. If a step
fails, the devices are taken out of the group again.`,
		Example: `  blk backend extend lvm-1 --device /dev/sdd
  blk backend extend lvm-1 --device /dev/sdd --device /dev/sde --grow-pool`,
		Args: oneBackend("extend"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Backend = args[0]
			if err := o.Validate(); err != nil {
				return err
			}
			return a.withService(cmd, func(ctx context.Context, svc *volume.Service) error {
				res, err := svc.BackendExtend(ctx, o)
				if err != nil {
					return err
				}
				return a.printSetup(res)
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.Devices, "device", nil, "a blank block device on the backend's host (repeat for more)")
	f.BoolVar(&o.GrowPool, "grow-pool", false, "grow the thin pool by the space added")
	f.BoolVar(&o.Force, "force", false, "wipe devices that hold a filesystem, partition table or RAID/LVM signature")
	return cmd
}

// printSetup prints what init or extend made; notes go to stderr for
// people, the filter line to stdout, where a script can take it. A dry
// run's stdout is its plan alone.
func (a *App) printSetup(res volume.BackendSetup) error {
	for _, n := range res.Notes {
		a.note("blk: note: %s", n)
	}
	if a.DryRun {
		if res.LVMFilter != "" {
			a.note("blk: note: the lvm.conf line to add: %s", res.LVMFilter)
		}
		return a.dryRunDone()
	}
	switch a.Output {
	case "json", "yaml":
		return a.print(view{obj: res})
	}
	for _, m := range res.Made {
		fmt.Fprintf(a.Out, "%s: %s\n", res.Host, m)
	}
	if res.LVMFilter != "" {
		fmt.Fprintf(a.Out, "%s\n", res.LVMFilter)
	}
	if res.Changed {
		fmt.Fprintf(a.Out, "backend %s ready: volume group %s on %s\n", res.Backend, res.VG, res.Host)
	}
	return nil
}

// oneBackend takes exactly the name of the backend to act on.
func oneBackend(verb string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return flagError(cmd, fmt.Errorf("name the backend to %s (see 'blk backend list')", verb))
		}
		return nil
	}
}
