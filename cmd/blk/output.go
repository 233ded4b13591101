package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
	"go.yaml.in/yaml/v3"
)

// view is what a command prints: the object for json and yaml, and its
// rows for people. Wide adds columns.
type view struct {
	obj    any
	header []string
	rows   [][]string
	// wide, when set, replaces header and rows for -o wide.
	wideHeader []string
	wideRows   [][]string
}

func (a *App) checkOutput() error {
	switch a.Output {
	case "", "table", "wide", "json", "yaml":
		return nil
	}
	return fmt.Errorf("unknown output format %q (want table, wide, json or yaml)", a.Output)
}

func (a *App) print(v view) error {
	format := a.Output
	if format == "" {
		format = "plain"
		if isTerminal(a.Out) {
			format = "table"
		}
	}
	header, rows := v.header, v.rows
	if format == "wide" && v.wideHeader != nil {
		header, rows = v.wideHeader, v.wideRows
	}
	switch format {
	case "json":
		enc := json.NewEncoder(a.Out)
		// Indenting triples the cost of a long list; scripts do not need it.
		if isTerminal(a.Out) {
			enc.SetIndent("", "  ")
		}
		return enc.Encode(v.obj)
	case "yaml":
		enc := yaml.NewEncoder(a.Out)
		enc.SetIndent(2)
		defer enc.Close()
		return enc.Encode(v.obj)
	case "plain":
		// For scripts reading a pipe: no header, one tab-separated row each.
		for _, r := range rows {
			fmt.Fprintln(a.Out, strings.Join(r, "\t"))
		}
		return nil
	default:
		return renderTable(a.Out, header, rows)
	}
}

// printJSONStream prints JSON that write produces already encoded, indented
// on a terminal as print does.
func (a *App) printJSONStream(write func(io.Writer) error) error {
	if !isTerminal(a.Out) {
		return write(a.Out)
	}
	var raw, out bytes.Buffer
	if err := write(&raw); err != nil {
		return err
	}
	if err := json.Indent(&out, raw.Bytes(), "", "  "); err != nil {
		return err
	}
	_, err := out.WriteTo(a.Out)
	return err
}

func renderTable(w io.Writer, header []string, rows [][]string) error {
	t := tablewriter.NewTable(w,
		tablewriter.WithRenderer(renderer.NewBlueprint(tw.Rendition{
			Borders: tw.BorderNone,
			Settings: tw.Settings{
				Separators: tw.Separators{BetweenColumns: tw.Off, BetweenRows: tw.Off},
				Lines:      tw.Lines{ShowHeaderLine: tw.Off},
			},
			Symbols: tw.NewSymbols(tw.StyleNone),
		})),
		tablewriter.WithHeaderAlignment(tw.AlignLeft),
		tablewriter.WithRowAlignment(tw.AlignLeft),
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithPadding(tw.Padding{Left: "", Right: "  ", Overwrite: true}),
		tablewriter.WithRowAutoWrap(tw.WrapNone),
	)
	t.Header(header)
	if err := t.Bulk(rows); err != nil {
		return err
	}
	return t.Render()
}
