package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

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
	// names is what -q prints instead of the table: nothing when nil.
	names []string
	// object is one object shown as FIELD VALUE rows: piped, its keys are
	// the JSON field names, so a script reads the same names either way.
	object bool
}

var outputs = []string{"table", "wide", "json", "yaml"}

func (a *App) checkOutput() error {
	switch a.Output {
	case "", "table", "wide", "json", "yaml":
		return nil
	}
	return fmt.Errorf("unknown output format %q (want table, wide, json or yaml)", truncate(a.Output, 40))
}

func (a *App) print(v view) error {
	format := a.Output
	if format == "" {
		format = "plain"
		if a.tty.out {
			format = "table"
		}
	}
	if a.Quiet && format != "json" && format != "yaml" {
		for _, n := range v.names {
			fmt.Fprintln(a.Out, n)
		}
		return nil
	}
	header, rows := v.header, v.rows
	if format == "wide" && v.wideHeader != nil {
		header, rows = v.wideHeader, v.wideRows
	}
	switch format {
	case "json":
		enc := json.NewEncoder(a.Out)
		// Indenting triples the cost of a long list; scripts do not need it.
		if a.tty.out {
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
		if v.object {
			var err error
			if rows, err = fields(v.obj); err != nil {
				return err
			}
		}
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

// fields flattens obj's JSON into key/value rows in field order, nested
// keys joined by dots (attachment.instance); null is an empty value.
func fields(obj any) ([][]string, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var rows [][]string
	var walk func(key string) error
	walk = func(key string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case json.Delim:
			for i := 0; dec.More(); i++ {
				sub := fmt.Sprintf("%s[%d]", key, i)
				if t == '{' {
					k, err := dec.Token()
					if err != nil {
						return err
					}
					sub = k.(string)
					if key != "" {
						sub = key + "." + sub
					}
				}
				if err := walk(sub); err != nil {
					return err
				}
			}
			_, err := dec.Token() // the closing ] or }
			return err
		case nil:
			rows = append(rows, []string{key, ""})
		default:
			rows = append(rows, []string{key, strings.Join(strings.Fields(fmt.Sprint(t)), " ")})
		}
		return nil
	}
	return rows, walk("")
}

func renderTable(w io.Writer, header []string, rows [][]string) error {
	var buf bytes.Buffer
	t := tablewriter.NewTable(&buf,
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
	if err := t.Render(); err != nil {
		return err
	}
	// Columns are padded to their width, the last one too.
	for line := range strings.Lines(buf.String()) {
		if _, err := fmt.Fprintln(w, strings.TrimRight(line, " \n")); err != nil {
			return err
		}
	}
	return nil
}

// planWriter collects a dry run's "host: command" lines, to print them as
// JSON or YAML at the end.
type planWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

type planStep struct {
	Host    string `json:"host" yaml:"host"`
	Command string `json:"command" yaml:"command"`
}

func (p *planWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.Write(b)
}

func (p *planWriter) steps() []planStep {
	p.mu.Lock()
	defer p.mu.Unlock()
	steps := []planStep{}
	for line := range strings.Lines(p.buf.String()) {
		host, cmd, _ := strings.Cut(strings.TrimSuffix(line, "\n"), ": ")
		steps = append(steps, planStep{Host: host, Command: cmd})
	}
	return steps
}
