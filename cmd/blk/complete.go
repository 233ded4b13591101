package main

import (
	"context"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/blk-project/blk/state"
	"github.com/blk-project/blk/volume"
	"github.com/spf13/cobra"
)

// completeTimeout bounds what completion asks of the hosts: a shell waiting
// on Tab must not hang on an unreachable compute host.
var completeTimeout = 2 * time.Second

type completer func(toComplete string) []string

// registerCompletions gives commands and flags their live values. Completion
// only reads: it never creates the state file or changes anything.
func registerCompletions(a *App, root *cobra.Command) {
	fixed := func(vals ...string) completer { return func(string) []string { return vals } }
	flag := func(path, name string, c completer) {
		cmd, _, err := root.Find(strings.Fields(path))
		if err != nil || cmd.Flags().Lookup(name) == nil && cmd.PersistentFlags().Lookup(name) == nil {
			panic("completion for unknown flag " + path + " --" + name)
		}
		_ = cmd.RegisterFlagCompletionFunc(name, complete(c, true))
	}
	args := func(path string, c completer, many bool) {
		cmd, _, err := root.Find(strings.Fields(path))
		if err != nil || cmd == root {
			panic("completion for unknown command " + path)
		}
		cmd.ValidArgsFunction = complete(c, many)
	}

	flag("", "output", fixed(outputs...))
	_ = root.RegisterFlagCompletionFunc("config", yamlFiles)
	args("volume show", a.volumeNames, false)
	args("volume delete", a.volumeNames, true)
	args("volume attach", a.volumeNames, false)
	args("volume detach", a.volumeNames, false)
	args("volume extend", a.volumeNames, false)
	args("host check", a.hostNames, true)
	args("volume reset-state", a.volumeNames, false)
	flag("volume reset-state", "to", fixed(volume.ResetStates...))
	flag("reconcile", "host", a.hostNames)
	args("snapshot create", a.volumeNames, false)
	args("snapshot list", a.volumeNames, false)
	args("snapshot show", a.snapshotNames, false)
	args("snapshot delete", a.snapshotNames, true)
	args("snapshot revert", a.snapshotNames, false)
	flag("snapshot create", "quiesce", fixed("auto", "require", "off"))
	flag("volume create", "from-snapshot", a.snapshotNames)
	flag("volume create", "from-volume", a.volumeNames)
	flag("volume create", "backend", a.backendNames)
	flag("volume create", "backend-type", fixed("lvm", "nfs"))
	flag("volume create", "image-format", fixed("raw", "qcow2"))
	flag("volume list", "backend", a.backendNames)
	flag("volume list", "status", fixed(state.Creating, state.Available, state.Attaching, state.InUse,
		state.Detaching, state.Deleting, state.Extending, state.Error, state.ErrorDeleting, state.Snapshotting, state.Reverting, state.BackingUp, state.Restoring, state.ErrorRestoring))
	flag("volume list", "instance", a.instances)
	flag("volume attach", "instance", a.instances)
	flag("volume detach", "instance", a.instances)
	flag("volume attach", "host", a.computeHosts)
	flag("volume attach", "bus", fixed("virtio", "scsi"))
	flag("backup", "repo", a.repoNames)
}

// complete offers c's values that start with what was typed; many says
// whether values already on the line may be offered again (flags) or not
// (positional volume names), and whether more than one is taken.
func complete(c completer, many bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if !many && len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, v := range c(toComplete) {
			if strings.HasPrefix(v, toComplete) && !slices.Contains(args, v) {
				out = append(out, v)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func yamlFiles(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return []string{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
}

// volumeNames reads the state file, if there is one, read-only.
func (a *App) volumeNames(string) []string {
	var names []string
	a.readState(func(ctx context.Context, st *state.Store) {
		vols, err := st.ListVolumes(ctx, state.VolumeFilter{})
		if err == nil {
			for _, v := range vols {
				names = append(names, v.Name)
			}
		}
	})
	return names
}

// snapshotNames reads the state file, if there is one, read-only.
func (a *App) snapshotNames(string) []string {
	var names []string
	a.readState(func(ctx context.Context, st *state.Store) {
		sns, err := st.ListSnapshots(ctx, "")
		if err == nil {
			for _, sn := range sns {
				names = append(names, sn.Name)
			}
		}
	})
	return names
}

// readState runs fn on the state file opened for a look that leaves no
// trace, if there is one, within completeTimeout.
func (a *App) readState(fn func(ctx context.Context, st *state.Store)) {
	cfg, err := a.loadConfig()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
	defer cancel()
	var st *state.Store
	if state.IsURL(cfg.State) {
		st, err = state.Open(ctx, cfg.State, state.ReadOnly)
	} else if _, serr := os.Stat(cfg.State); serr == nil {
		st, err = state.OpenSnapshot(ctx, cfg.State)
	} else {
		return
	}
	if err != nil {
		return
	}
	defer st.Close()
	fn(ctx, st)
}

func (a *App) hostNames(string) []string {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil
	}
	return slices.Sorted(maps.Keys(cfg.Hosts))
}

func (a *App) computeHosts(string) []string {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil
	}
	return cfg.Compute
}

func (a *App) backendNames(string) []string {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil
	}
	return slices.Sorted(maps.Keys(cfg.Backends))
}

func (a *App) repoNames(string) []string {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil
	}
	return slices.Sorted(maps.Keys(cfg.BackupRepos))
}

// instances asks the compute hosts' libvirt, bounded by completeTimeout.
func (a *App) instances(string) []string {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil
	}
	hosts := volume.NewHosts(cfg, nil, nil)
	if a.hostsHook != nil {
		a.hostsHook(hosts)
	}
	defer hosts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
	defer cancel()
	return hosts.Instances(ctx)
}
