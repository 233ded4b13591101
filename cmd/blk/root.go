package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is set at build time: -ldflags "-X github.com/blk-project/blk/main.Version=v1.2.3".
var Version = ""

func newRootCmd(a *App) *cobra.Command {
	root := &cobra.Command{
		Use:   "blk",
		Short: "Block volumes for KVM/libvirt hosts: LVM, iSCSI and NFS, without daemons",
		Long: `blk gives operators of KVM/libvirt hosts persistent block volumes the way
OpenStack Cinder does (LVM volumes exported with tgt, logged in with iscsiadm,
hot-plugged with libvirt), as one binary driven from a shell, a script or cron.
It runs each command locally or over SSH on the hosts named in its config, and
keeps its state in one SQLite file that many processes may use at once.
` + exitStatus,
		Example: `  blk host check
  blk backend list
  blk volume create db1 --size 20GiB
  blk volume list -o json`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		DisableAutoGenTag: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := a.checkOutput(); err != nil {
				return flagError(cmd, err)
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return flagError(cmd, err) })
	a.bindFlags(root)
	root.AddCommand(newVersionCmd(a), newHostCmd(a), newBackendCmd(a), newVolumeCmd(a))
	for _, c := range root.Commands() {
		withExitStatus(c)
	}
	return root
}

// withExitStatus ends every command's help with the exit codes, and makes
// argument errors usage errors (exit 2).
func withExitStatus(c *cobra.Command) {
	if c.Long == "" {
		c.Long = c.Short + "."
	}
	c.Long += "\n" + exitStatus
	if c.Args != nil {
		check := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return flagError(cmd, err)
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		withExitStatus(sub)
	}
}

func newVersionCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print blk's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := Version
			if v == "" {
				v = "devel"
				if info, ok := debug.ReadBuildInfo(); ok {
					for _, s := range info.Settings {
						if s.Key == "vcs.revision" && len(s.Value) >= 12 {
							v += "+" + s.Value[:12]
						}
					}
				}
			}
			_, err := fmt.Fprintln(a.Out, "blk", v)
			return err
		},
	}
}
