package main

import (
	"context"
	"strconv"

	"github.com/blk-project/blk/state"
	"github.com/blk-project/blk/volume"
	"github.com/spf13/cobra"
)

func newBackendCmd(a *App) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backend",
		Short: "Show the storage backends: capacity, free space and volumes",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List backends with size, free, allocated, provisioned and volume count",
		Long: `List every configured backend. For LVM: the volume group's size and free
space (from vgs), the thin pool's size and use, and what blk has allocated
there (the sum of its volumes' sizes, from the state file). For NFS: the
export's size and free space (df on its host).

Where volumes are thin (a thin pool; an export's sparse files): PROVISIONED
is what they promise (the pool's thin LVs, blk's or not; the export's
volumes), VIRTUAL FREE what placement may still promise there:
max_over_subscription_ratio × the pool's (export's) size − provisioned.
-o wide adds the pool's data and metadata use and the ratio.

Hosts are asked in parallel, at most ` + strconv.Itoa(volume.DefaultParallel) + ` at once.`,
		Example: "  blk backend list\n  blk backend list -o wide",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withReader(cmd, state.ReadOnlyOrEmpty, func(ctx context.Context, svc *volume.Service) error {
				infos, err := svc.Backends(ctx)
				if infos != nil {
					if perr := a.print(backendsView(infos)); perr != nil {
						return perr
					}
				}
				return err
			})
		},
	})
	cmd.AddCommand(newBackendInitCmd(a), newBackendExtendCmd(a))
	return cmd
}

func backendsView(infos []volume.BackendInfo) view {
	v := view{obj: infos,
		header: []string{"NAME", "TYPE", "HOST", "SIZE", "FREE", "ALLOCATED", "VOLUMES", "PROVISIONED", "VIRTUAL FREE"},
		wideHeader: []string{"NAME", "TYPE", "HOST", "VG", "THIN POOL", "SIZE", "FREE", "ALLOCATED", "POOL SIZE", "POOL USED", "VOLUMES",
			"PROVISIONED", "VIRTUAL FREE", "USED%", "META%", "RATIO", "ERROR"},
	}
	size := func(b int64) string {
		if b == 0 {
			return "-"
		}
		return volume.FormatSize(b)
	}
	thin := func(b volume.BackendInfo, s string) string {
		if b.MaxOverSubscriptionRatio == 0 {
			return "-"
		}
		return s
	}
	for _, b := range infos {
		count := strconv.Itoa(b.VolumeCount)
		prov, vfree := thin(b, volume.FormatSize(b.ProvisionedBytes)), thin(b, volume.FormatSize(b.VirtualFreeBytes))
		v.rows = append(v.rows, []string{b.Name, b.Type, b.Host, size(b.SizeBytes), size(b.FreeBytes), volume.FormatSize(b.AllocatedBytes), count, prov, vfree})
		meta := "-"
		if b.ThinPool != "" && b.Error == "" {
			meta = strconv.FormatFloat(b.MetadataPercent, 'f', 1, 64)
		}
		v.wideRows = append(v.wideRows, []string{b.Name, b.Type, b.Host, b.VG, b.ThinPool, size(b.SizeBytes), size(b.FreeBytes),
			volume.FormatSize(b.AllocatedBytes), size(b.PoolSizeBytes), size(b.PoolUsedBytes), count, prov, vfree,
			thin(b, strconv.FormatFloat(b.UsedPercent, 'f', 1, 64)), meta, thin(b, strconv.FormatFloat(b.MaxOverSubscriptionRatio, 'g', -1, 64)), b.Error})
	}
	return v
}
