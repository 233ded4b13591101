package main

import (
	"context"
	"strings"

	"github.com/blk-project/blk/state"
	"github.com/blk-project/blk/volume"
	"github.com/spf13/cobra"
)

func newHostCmd(a *App) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host",
		Short: "List and check the hosts blk runs commands on",
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "list",
		Short:   "List configured hosts and their roles (contacts none)",
		Args:    cobra.NoArgs,
		Example: "  blk host list -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			return a.print(hostsView((&volume.Service{Config: cfg}).HostList(), false))
		},
	}, &cobra.Command{
		Use:   "check [HOST...]",
		Short: "Reach hosts (locally or over SSH) and report which storage tools they have",
		Long: `Reach each configured host (or the ones named) and report which of lvm2,
tgtadm, iscsiadm, virsh, the libvirt socket and the NFS tools are present,
with versions. An unreachable host makes the command exit 1 with the reason.`,
		Example: "  blk host check\n  blk host check stor1 -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withReader(cmd, state.ReadOnlyOrEmpty, func(ctx context.Context, svc *volume.Service) error {
				reports, err := svc.CheckHosts(ctx, args)
				if reports != nil {
					if perr := a.print(hostsView(reports, true)); perr != nil {
						return perr
					}
				}
				return err
			})
		},
	})
	return cmd
}

func hostsView(reports []volume.HostReport, checked bool) view {
	v := view{obj: reports}
	if !checked {
		v.header = []string{"HOST", "ADDRESS", "ROLES"}
		for _, r := range reports {
			v.rows = append(v.rows, []string{r.Host, r.Address, strings.Join(r.Roles, ",")})
		}
		return v
	}
	v.header = []string{"HOST", "TOOL", "PRESENT", "VERSION"}
	v.wideHeader = []string{"HOST", "ADDRESS", "TOOL", "PRESENT", "VERSION", "DETAIL"}
	for _, r := range reports {
		if !r.Reachable {
			v.rows = append(v.rows, []string{r.Host, "-", "unreachable", r.Error})
			v.wideRows = append(v.wideRows, []string{r.Host, r.Address, "-", "unreachable", "", r.Error})
			continue
		}
		for _, t := range r.Tools {
			present, ver := "yes", t.Version
			if !t.Present {
				present, ver = "no", t.Detail
			}
			v.rows = append(v.rows, []string{r.Host, t.Tool, present, ver})
			v.wideRows = append(v.wideRows, []string{r.Host, r.Address, t.Tool, present, t.Version, t.Detail})
		}
	}
	return v
}
