package main

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/blk-project/blk/state"
	"github.com/spf13/cobra"
)

func newStateCmd(a *App) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Move blk's state to PostgreSQL (or back to a file)",
	}
	var to string
	migrate := &cobra.Command{
		Use:   "migrate --to postgres://USER@HOST[:PORT]/DATABASE",
		Short: "Copy the state into a new PostgreSQL database (or file) and retire the old one",
		Long: `Copy everything the configured state holds (volumes, attachments, snapshots,
backups and the operations journal) into the state --to names, then mark the
old one as moved: any blk still pointed at it refuses to run and names the
new one, so a forgotten cron job cannot go on alone.

The target is a PostgreSQL URL (postgres://user@host:port/database?sslmode=…;
the password from ~/.pgpass, PGPASSWORD or the URL) for several admin
machines, or a new file. It must hold no blk state yet: blk creates its
tables. The copy holds the old state's write lock throughout and is one
transaction on the target: it lands whole or not at all. It is refused
while a blk operation runs (one killed is carried over, and a rerun finishes
it as usual).

Then set state: in every admin machine's config (or BLK_STATE) to the
target. --dry-run makes the same checks and counts the rows, creating
nothing.`,
		Example: `  blk state migrate --to postgres://blk@db1.example.com/blk --dry-run
  PGPASSWORD=… blk state migrate --to 'postgres://blk@db1.example.com/blk?sslmode=verify-full'
  blk state migrate --to /var/lib/blk/state.db --state postgres://blk@db1/blk`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return badInput("--to is required: the PostgreSQL URL (or new file) to copy the state into")
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			target := to
			if !state.IsURL(target) {
				if target, err = statePath(target, "flag", ""); err != nil {
					return badInput("--to: %v", err)
				}
			}
			ctx := a.context(cmd)
			src, err := state.Open(ctx, cfg.State, state.Existing)
			if err != nil {
				return err
			}
			defer src.Close()
			mode := state.ReadWrite
			if a.DryRun {
				mode = state.ReadOnlyOrEmpty
			}
			dst, err := state.Open(ctx, target, mode)
			var moved *state.MovedError
			if errors.As(err, &moved) {
				return badInput("--to %s was itself retired by an earlier migrate (to %s): name a new, empty state", state.Redact(target), moved.To)
			}
			if err != nil {
				return err
			}
			defer dst.Close()
			copied, err := src.CopyTo(ctx, dst, a.DryRun)
			before := errors.Is(err, state.ErrCopiedBefore)
			if err != nil && !before {
				return fmt.Errorf("migrate state %s to %s: %w", src.Path(), dst.Path(), err)
			}
			v := view{obj: copied, header: []string{"TABLE", "ROWS"}}
			for _, c := range copied {
				v.rows = append(v.rows, []string{c.Table, strconv.Itoa(c.Rows)})
				v.names = append(v.names, c.Table)
			}
			if err := a.print(v); err != nil {
				return err
			}
			switch {
			case a.DryRun && before:
				a.note("dry run: %s already holds exactly %s (a migrate was killed before it retired it): it would be retired", dst.Path(), src.Path())
				return nil
			case a.DryRun:
				a.note("dry run: nothing was copied; %s would be copied to %s", src.Path(), dst.Path())
				return nil
			case before:
				a.note("%s already held exactly %s (a migrate was killed before it retired it): retired it now", dst.Path(), src.Path())
			}
			a.note("copied %s to %s, which it now points to: set state: %s in every admin machine's config (or BLK_STATE)",
				src.Path(), dst.Path(), dst.Path())
			return nil
		},
	}
	migrate.Flags().StringVar(&to, "to", "", "the PostgreSQL URL or new file to copy the state into")
	cmd.AddCommand(migrate)
	return cmd
}
