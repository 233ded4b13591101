package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManCmd writes the man pages ('make man'); hidden, as it is for
// packaging, not for operators.
func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "__man DIR",
		Short:  "Write one man page per command into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return writeMan(cmd.Root(), args[0])
		},
	}
}

func writeMan(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var cmds []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c != root || c.Name() == "help" {
			return
		}
		cmds = append(cmds, c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, c := range cmds {
		page, err := manPage(c)
		if err != nil {
			return err
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
		if err := os.WriteFile(filepath.Join(dir, name), page, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// manPage renders c's help as a man page: the description kept as written
// (it is laid out for a terminal), and the exit codes as their own section.
func manPage(c *cobra.Command) ([]byte, error) {
	long := c.Long
	defer func() { c.Long = long }()
	desc := strings.TrimSuffix(strings.TrimRight(long, "\n"), exitStatus)
	c.Long = "    " + strings.ReplaceAll(strings.TrimRight(desc, "\n"), "\n", "\n    ")
	var buf bytes.Buffer
	header := &doc.GenManHeader{Section: "1", Source: "blk " + buildInfo().Version, Manual: "blk manual"}
	if err := doc.GenMan(c, header, &buf); err != nil {
		return nil, fmt.Errorf("man page of %s: %w", c.CommandPath(), err)
	}
	var exit strings.Builder
	exit.WriteString(".SH EXIT STATUS\n")
	for _, e := range exitCodes {
		fmt.Fprintf(&exit, ".TP\n\\fB%d\\fP\n%s\n", e.code, e.meaning)
	}
	page := buf.String()
	for _, next := range []string{".SH EXAMPLE", ".SH SEE ALSO", ".SH HISTORY"} {
		if i := strings.Index(page, next); i >= 0 {
			return []byte(page[:i] + exit.String() + page[i:]), nil
		}
	}
	return []byte(page + exit.String()), nil
}
