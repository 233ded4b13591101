package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/blk-project/blk/internal/config"
	"github.com/spf13/cobra"
)

// Set at build time by the Makefile:
// -ldflags "-X main.version=v1.2.3 -X main.commit=abc123 -X main.date=2026-11-21T10:00:00Z".
var version, commit, date string

func newRootCmd(a *App) *cobra.Command {
	root := &cobra.Command{
		Use:   "blk",
		Short: "Block volumes for KVM/libvirt hosts: LVM, iSCSI and NFS, without daemons",
		Long: `blk gives operators of KVM/libvirt hosts persistent block volumes the way
OpenStack Cinder does (LVM volumes exported with tgt, logged in with iscsiadm,
hot-plugged with libvirt), as one binary driven from a shell, a script or cron.
It runs each command locally or over SSH on the hosts named in its config, and
keeps its state in one SQLite file that many processes may use at once, or in
PostgreSQL for several admin machines (state: postgres://…).

` + envHelp,
		Example: `  blk host check
  blk backend list
  blk volume create db1 --size 20GiB
  blk volume list -o json`,
		Version:           buildInfo().Version,
		SilenceUsage:      true,
		SilenceErrors:     true,
		DisableAutoGenTag: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := a.settle(cmd); err != nil {
				return flagError(cmd, err)
			}
			return nil
		},
	}
	root.SetVersionTemplate(`{{with .Root}}{{.Name}}{{end}} ` + buildInfo().String() + "\n")
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return flagError(cmd, err) })
	a.bindFlags(root)
	root.SetHelpCommand(newHelpCmd())
	root.AddCommand(newVersionCmd(a), newHostCmd(a), newBackendCmd(a), newVolumeCmd(a), newSnapshotCmd(a), newBackupCmd(a), newReconcileCmd(a), newConfigCmd(a), newStateCmd(a),
		newCompletionCmd(), newManCmd())
	registerCompletions(a, root)
	withExitStatus(root)
	return root
}

// withExitStatus ends every command's help with the exit codes, makes
// argument errors usage errors (exit 2), and makes a command that only
// groups others refuse what is not one of them.
func withExitStatus(c *cobra.Command) {
	if c.Long == "" {
		c.Long = c.Short + "."
	}
	c.Long += "\n" + exitStatus
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return unknownCommand(cmd, args[0])
		}
	}
	if c.Args != nil {
		check := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				if cmd.RunE != nil && cmd.HasSubCommands() {
					return err // unknownCommand's, already a usage error
				}
				return &usageError{path: cmd.CommandPath(), usage: cmd.UseLine(), err: err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		withExitStatus(sub)
	}
}

func unknownCommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", truncate(name, 40), cmd.CommandPath())
	var names, words []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
			words = append(append(words, c.Name()), c.Aliases...)
		}
	}
	if s := config.Nearest(name, words); s != "" {
		msg += fmt.Sprintf(": did you mean %q?", s)
	} else {
		msg += " (commands: " + strings.Join(names, ", ") + ")"
	}
	return flagError(cmd, fmt.Errorf("%s", msg))
}

func newHelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [COMMAND...]",
		Short: "Help about any command",
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			cmd, _, err := c.Root().Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []string
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					names = append(names, sub.Name())
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil {
				return flagError(c, err)
			}
			if len(rest) > 0 {
				return unknownCommand(cmd, rest[0])
			}
			return cmd.Help()
		},
	}
}

func newCompletionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print the shell completion script",
		Long: `Print the completion script for bash, zsh or fish. Completion is dynamic: it
offers the volumes in the state file (read only: completing never creates or
changes anything), the configured hosts and backends, and the instances on
the compute hosts (asked with a short timeout, skipped on error).

  bash:  source <(blk completion bash)          or install completions/blk.bash
         as /usr/share/bash-completion/completions/blk
  zsh:   blk completion zsh > "${fpath[1]}/_blk"
  fish:  blk completion fish > ~/.config/fish/completions/blk.fish

'make install' installs all three.`,
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, root := cmd.OutOrStdout(), cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			default:
				return root.GenFishCompletion(out, true)
			}
		},
	}
}

// BuildInfo is what 'blk version' reports.
type BuildInfo struct {
	Version   string `json:"version" yaml:"version"`
	Commit    string `json:"commit" yaml:"commit"`
	Date      string `json:"date" yaml:"date"`
	GoVersion string `json:"go_version" yaml:"go_version"`
}

func (b BuildInfo) String() string {
	return fmt.Sprintf("%s (commit %s, built %s, %s)", b.Version, b.Commit, b.Date, b.GoVersion)
}

// buildInfo takes what the Makefile's ldflags set, else what the Go
// toolchain recorded (a 'go install' or 'go build' with VCS stamping).
func buildInfo() BuildInfo {
	b := BuildInfo{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && b.Commit == "":
				b.Commit = s.Value
			case s.Key == "vcs.time" && b.Date == "":
				b.Date = s.Value
			case s.Key == "vcs.modified" && s.Value == "true" && commit == "":
				b.Commit += "-dirty"
			}
		}
	}
	for _, s := range []*string{&b.Version, &b.Commit, &b.Date} {
		if *s == "" {
			*s = "unknown"
		}
	}
	if b.Version == "unknown" {
		b.Version = "devel"
	}
	return b
}

func newVersionCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print blk's version, commit, build date and Go version",
		Example: "  blk version\n  blk version -o json\n  blk --version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b := buildInfo()
			if a.Output == "json" || a.Output == "yaml" {
				return a.print(view{obj: b})
			}
			_, err := fmt.Fprintln(a.Out, "blk", b)
			return err
		},
	}
}
