package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/blk-project/blk/internal/fault"
	"github.com/blk-project/blk/state"
	"github.com/blk-project/blk/volume"
	"github.com/spf13/cobra"
)

func newReconcileCmd(a *App) *cobra.Command {
	var o volume.ReconcileOptions
	return withFlags(&cobra.Command{
		Use:   "reconcile [--host H] [--fix [--adopt]]",
		Short: "Compare the state file with every host, report drift, repair what is safe",
		Long: `Compare the state file with what every configured host (or --host H) really
holds, and list the drift per host. Hosts are looked at concurrently, 16 at
a time. What is looked for (KIND):

  orphan-lv, orphan-file    an LV tagged blk-vol-<uuid> (or an NFS file
                            volume-<uuid> under a backend's path) with no row
  missing-lv, missing-file  a row whose LV or file is gone
  orphan-target             a tgt target <iqn_prefix>:<uuid> with no attachment
  orphan-account            a CHAP account blk-<uuid prefix> no attachment uses
  orphan-acl                an initiator bound to a target besides the attachment's
  missing-target            an in-use volume not exported (tgtd restarted or the
                            storage host rebooted: tgt keeps targets in memory)
  incomplete-target         its target lacks the LUN, the initiator or the account
  orphan-session            an iSCSI session to a blk target with no attachment
  orphan-node               an iSCSI node record of a blk target with no attachment
  missing-session           an in-use volume whose compute host is not logged in
  orphan-mount              an NFS mount under /var/lib/blk/mnt no attachment uses
  missing-mount             an in-use NFS volume whose export is not mounted
  missing-disk              an attachment whose disk (by serial) is not in its domain
  orphan-disk               a disk with a volume's serial in a domain it is not
                            attached to
  orphan-backup-snapshot    a backup snapshot LV that is no volume's backup base
  held-metadata-snapshot    a thin pool metadata snapshot held with no backup running
  stale-operation           a journaled operation whose process is provably gone
  stuck-status              a volume creating, attaching, detaching, deleting,
                            extending, backing-up, restoring, snapshotting or
                            reverting, or a snapshot creating, deleting or
                            restoring, with no live operation

A volume a live blk process is working on is left out: that is work in
progress, not drift. A stale operation is reported on the machine its
process ran on (its hostname), which may be no configured host.

With --fix blk repairs what is safe, and each item says whether it was:
a stuck create, delete, detach, extend, snapshot create, snapshot delete or
revert is finished and a stuck attach rolled back, each by the workflow's own
rerun; a volume a killed backup or clone held has its guest thawed and is put
back, one a killed restore held is marked error_restoring (rerun the
restore); orphan backup snapshots are removed and a held pool metadata
snapshot released; orphan sessions (unless a domain has a disk
on one), node records, mounts (the same), ACLs, targets (once no initiator is
logged in) and accounts (the same) are removed; the target of an in-use volume is made
again from its attachment (same IQN, LUN, CHAP account and initiator, as
Cinder's ensure_export), so the compute host's session logs in again by
itself; a missing session or mount is made again. A volume's data is never
removed: an orphan LV or file is reported with the command that would remove
it, or, with --adopt, recorded as an available volume named by its LV's
blk-name-<name> tag, else recovered-<first 8 of its uuid>. With --adopt and
no state file (it was lost), blk makes one and only adopts: every export
would look orphaned, and removing them would cut guests off. missing-lv,
missing-disk and orphan-disk are reported only: what to do is the
operator's call.

Exit 0 when there is no drift (or --fix repaired all of it), 6 when drift
is left, 1 when a host could not be looked at (the others are still
reported).`,
		Example: `  blk reconcile
  blk reconcile --host stor1 -o json
  blk reconcile --fix
  blk reconcile --fix --adopt
  # cron: alert on drift
  blk reconcile -q || mail -s "blk drift" root`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Adopt && !o.Fix {
				return flagError(cmd, fmt.Errorf("--adopt goes with --fix"))
			}
			// Repairs need the real state file: a mistyped --state must not
			// make every export look orphaned and be removed. Adopting may
			// rebuild a lost one, and then does nothing else.
			mode := state.ReadOnlyOrEmpty
			switch {
			case o.Adopt:
				cfg, err := a.loadConfig()
				if err != nil {
					return err
				}
				if missingState(a.context(cmd), cfg.State) {
					o.AdoptOnly = true
					a.warn("no state %s %s: making it, and only adopting what is found (run --fix again for the rest)",
						state.Where(cfg.State), state.Redact(cfg.State))
				}
				mode = state.ReadWrite
			case o.Fix:
				mode = state.Existing
			}
			return a.withReader(cmd, mode, func(ctx context.Context, svc *volume.Service) error {
				if svc.State.Missing() {
					a.warn("no state %s %s (check --state, BLK_STATE or the config's state:): everything blk finds is drift", state.Where(svc.State.Path()), svc.State.Path())
				}
				reports, err := svc.Reconcile(ctx, o)
				if reports == nil {
					return err
				}
				if perr := a.print(driftView(reports, o.Fix)); perr != nil {
					return perr
				}
				if err != nil {
					return err
				}
				left := volume.Unfixed(reports)
				if left == 0 {
					if !a.DryRun && a.Output != "json" && a.Output != "yaml" {
						a.note("no drift: the state file and %d host(s) agree%s", len(reports), map[bool]string{true: " (after --fix)"}[o.Fix])
					}
					return nil
				}
				return driftError(reports, left, o.Fix)
			})
		},
	}, func(cmd *cobra.Command) {
		cmd.Flags().StringVar(&o.Host, "host", "", "look at this host only")
		cmd.Flags().BoolVar(&o.Fix, "fix", false, "repair what is safe (never a volume's data)")
		cmd.Flags().BoolVar(&o.Adopt, "adopt", false, "with --fix: record orphan LVs and files as volumes")
	})
}

// driftError says how much drift is left and where: exit 6.
func driftError(reports []volume.HostDrift, left int, fixed bool) error {
	var hosts []string
	fixable := 0
	for _, r := range reports {
		n := 0
		for _, d := range r.Drift {
			if !d.Fixed {
				n++
				if d.Fixable && d.FixError == "" {
					fixable++
				}
			}
		}
		if n > 0 {
			hosts = append(hosts, fmt.Sprintf("%s (%d)", r.Host, n))
		}
	}
	msg := fmt.Sprintf("%d drift item(s) left on %s", left, strings.Join(hosts, ", "))
	switch {
	case !fixed && fixable > 0:
		msg += fmt.Sprintf(": 'blk reconcile --fix' repairs %d; the others need you (see ACTION)", fixable)
	case !fixed:
		msg += ": see ACTION"
	default:
		msg += ": --fix could not repair them (see RESULT and ACTION)"
	}
	return fault.New(volume.ErrDrift, "%s", msg)
}

func driftView(reports []volume.HostDrift, fixed bool) view {
	v := view{obj: reports, header: []string{"HOST", "KIND", "OBJECT", "VOLUME", "DETAIL", "ACTION"}}
	if fixed {
		v.header = append(v.header, "RESULT")
	}
	v.wideHeader = append(slices.Clone(v.header), "FIXABLE")
	for _, r := range reports {
		if r.Error != "" {
			row := []string{r.Host, "unreachable", "-", "-", r.Error, "check the host (blk host check " + r.Host + ")"}
			if fixed {
				row = append(row, "-")
			}
			v.rows = append(v.rows, row)
			v.wideRows = append(v.wideRows, append(slices.Clone(row), "-"))
		}
		for _, d := range r.Drift {
			vol := d.Volume
			if vol == "" {
				vol = "-"
			}
			row := []string{r.Host, d.Kind, d.Object, vol, d.Detail, d.Action}
			if fixed {
				result := "left"
				switch {
				case d.Fixed:
					result = "fixed"
				case d.FixError != "":
					result = "failed: " + d.FixError
				}
				row = append(row, result)
			}
			v.rows = append(v.rows, row)
			v.wideRows = append(v.wideRows, append(slices.Clone(row), fmt.Sprint(d.Fixable)))
			if !d.Fixed {
				v.names = append(v.names, r.Host+" "+d.Kind+" "+d.Object)
			}
		}
	}
	return v
}

// missingState reports whether the state does not exist yet: no file, or
// a database blk never used.
func missingState(ctx context.Context, st string) bool {
	if !state.IsURL(st) {
		_, err := os.Stat(st)
		return errors.Is(err, fs.ErrNotExist)
	}
	s, err := state.Open(ctx, st, state.ReadOnly)
	if err == nil {
		s.Close()
	}
	return errors.Is(err, state.ErrNotFound)
}
