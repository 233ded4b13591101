package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse reads a configuration file's YAML. Every key is checked against
// the known ones before decoding, so a typo names its line and the nearest
// valid key, and a value of the wrong kind (port: 22.7) is refused instead
// of being rounded. Names are kept as written: upper case is refused later
// by Validate rather than silently lowered.
func Parse(file string, data []byte) (*Config, error) {
	c := &Config{lines: map[string]int{}}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: file, Key: "(file)", Problem: "empty: see 'blk config show --help' for an example"}
		}
		return nil, &Error{File: file, Key: "(file)", Problem: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if len(doc.Content) == 0 {
		return nil, &Error{File: file, Key: "(file)", Problem: "empty"}
	}
	root := doc.Content[0]
	if err := c.check(file, root, reflect.TypeOf(*c), ""); err != nil {
		return nil, err
	}
	if err := root.Decode(c); err != nil {
		return nil, &Error{File: file, Key: "(file)", Problem: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	return c, nil
}

// Line is where key (as Validate names it, "backends.lvm-1.vg") was
// written in the file; 0 if it was not.
func (c *Config) Line(key string) int { return c.lines[key] }

// check walks node against the Go type t, recording each key's line.
func (c *Config) check(file string, n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	bad := func(n *yaml.Node, key, format string, args ...any) error {
		return &Error{File: file, Line: n.Line, Key: key, Problem: fmt.Sprintf(format, args...)}
	}
	if n.Tag == "!!null" {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return bad(n, keyOr(path), "want a mapping of keys (key: value), not %s", describe(n))
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = f.Type
			names = append(names, name)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				msg := fmt.Sprintf("unknown key %q", k.Value)
				if s := Nearest(k.Value, names); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				} else {
					msg += " (valid here: " + strings.Join(names, ", ") + ")"
				}
				return bad(k, key, "%s", msg)
			}
			c.lines[key] = k.Line
			if err := c.check(file, v, ft, key); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return bad(n, keyOr(path), "want a mapping of names, not %s", describe(n))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			c.lines[key] = k.Line
			if err := c.check(file, v, t.Elem(), key); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return bad(n, keyOr(path), "want a list ([a, b]), not %s", describe(n))
		}
		for i, e := range n.Content {
			key := fmt.Sprintf("%s[%d]", path, i)
			c.lines[key] = e.Line
			if err := c.check(file, e, t.Elem(), key); err != nil {
				return err
			}
		}
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			return bad(n, path, "%s is not a whole number", describe(n))
		}
	case reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
			return bad(n, path, "%s is not a number", describe(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			return bad(n, path, "%s is not true or false", describe(n))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return bad(n, path, "want a single value, not %s", describe(n))
		}
	}
	return nil
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", truncate(n.Value, 40))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func keyOr(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Nearest is the valid word (a key, a command) closest to a mistyped one, if one is close
// enough to be what was meant.
func Nearest(typo string, valid []string) string {
	best, bestD := "", -1
	for _, v := range valid {
		if d := distance(strings.ToLower(typo), v); bestD < 0 || d < bestD {
			best, bestD = v, d
		}
	}
	if bestD < 0 || bestD > max(1, len(best)/3) {
		return ""
	}
	return best
}

// distance is the edit distance, a swap of two neighbours counting as one
// edit (optimal string alignment): "prot" is one typo away from "port".
func distance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
