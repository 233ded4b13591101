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
		Short: "List backends with size, free, allocated and volume count",
		Long: `List every configured backend. For LVM: the volume group's size and free
space (from vgs), the thin pool's size and use, and what blk has allocated
there (the sum of its volumes' sizes, from the state file).`,
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
		header:     []string{"NAME", "TYPE", "HOST", "SIZE", "FREE", "ALLOCATED", "VOLUMES"},
		wideHeader: []string{"NAME", "TYPE", "HOST", "VG", "THIN POOL", "SIZE", "FREE", "ALLOCATED", "POOL SIZE", "POOL USED", "VOLUMES", "ERROR"},
	}
	size := func(b int64) string {
		if b == 0 {
			return "-"
		}
		return volume.FormatSize(b)
	}
	for _, b := range infos {
		count := strconv.Itoa(b.VolumeCount)
		v.rows = append(v.rows, []string{b.Name, b.Type, b.Host, size(b.SizeBytes), size(b.FreeBytes), volume.FormatSize(b.AllocatedBytes), count})
		v.wideRows = append(v.wideRows, []string{b.Name, b.Type, b.Host, b.VG, b.ThinPool, size(b.SizeBytes), size(b.FreeBytes),
			volume.FormatSize(b.AllocatedBytes), size(b.PoolSizeBytes), size(b.PoolUsedBytes), count, b.Error})
	}
	return v
}
