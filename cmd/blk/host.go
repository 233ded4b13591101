package main

import (
	"context"
	"strconv"
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
		Short: "Check that each host has what its roles need",
		Long: `Reach each configured host (or the ones named), locally or over SSH, and
check what its roles need. A backend's host (storage role): lvm2, the volume
group and its free space, the thin pool and its use, the device-mapper
targets (thin-pool, snapshot), and tgtd running. A compute host: iscsiadm,
iscsid running (or socket-activated), a valid initiator name in
/etc/iscsi/initiatorname.iscsi, and the libvirt socket answering. NFS
backends add exportfs (storage) and mount.nfs (compute).

Each failed check says what to install, start or create, and the command
exits 1; an unreachable host too. Nothing is changed on any host. Hosts are
checked in parallel, at most ` + strconv.Itoa(volume.DefaultParallel) + ` at once, and reported
in name order (or in the order named).

It also warns, without failing, when a host's LVM would scan blk's volumes
and could activate the volume groups guests make inside them: scan_lvs = 1
on a storage host, or no lvm.conf filter that rejects devices on a compute
host ('blk backend init --lvm-filter' prints one).`,
		Example: "  blk host check\n  blk host check stor1 -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withReader(cmd, state.ReadOnlyOrEmpty, func(ctx context.Context, svc *volume.Service) error {
				reports, err := svc.CheckHosts(ctx, args)
				if reports != nil {
					if perr := a.print(hostsView(reports, true)); perr != nil {
						return perr
					}
				}
				for _, r := range reports {
					for _, w := range r.Warnings {
						a.warn("%s", w)
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
	for _, r := range reports {
		v.names = append(v.names, r.Host)
	}
	if !checked {
		v.header = []string{"HOST", "ADDRESS", "ROLES"}
		for _, r := range reports {
			v.rows = append(v.rows, []string{r.Host, r.Address, strings.Join(r.Roles, ",")})
		}
		return v
	}
	// -q: the hosts that need something.
	v.names = nil
	v.header = []string{"HOST", "CHECK", "STATUS", "DETAIL"}
	v.wideHeader = []string{"HOST", "ADDRESS", "ROLE", "CHECK", "STATUS", "DETAIL", "FIX"}
	for _, r := range reports {
		if !r.Reachable {
			v.rows = append(v.rows, []string{r.Host, "reachable", "FAIL", r.Error})
			v.wideRows = append(v.wideRows, []string{r.Host, r.Address, "-", "reachable", "FAIL", r.Error, "-"})
			v.names = append(v.names, r.Host)
			continue
		}
		if len(r.Checks) == 0 {
			v.rows = append(v.rows, []string{r.Host, "reachable", "ok", "no role: not a backend's host nor a compute host"})
			v.wideRows = append(v.wideRows, []string{r.Host, r.Address, "-", "reachable", "ok", "no role", "-"})
		}
		failed := false
		for _, c := range r.Checks {
			status, detail, fix := "ok", c.Detail, c.Fix
			if !c.OK {
				status, failed = "FAIL", true
				detail = strings.TrimPrefix(c.Detail+": "+c.Fix, ": ")
			}
			if fix == "" {
				fix = "-"
			}
			v.rows = append(v.rows, []string{r.Host, c.Check, status, detail})
			v.wideRows = append(v.wideRows, []string{r.Host, r.Address, c.Role, c.Check, status, c.Detail, fix})
		}
		if failed {
			v.names = append(v.names, r.Host)
		}
	}
	return v
}
