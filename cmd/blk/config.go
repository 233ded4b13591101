package main

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/state"
	"github.com/spf13/cobra"
)

func newConfigCmd(a *App) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show the effective configuration",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration and where each value came from",
		Long: `Print every setting blk would use: the configuration file's keys after the
environment and flags are applied, SSH defaults included, and the global
flags. SOURCE says where each value came from: the file and line, an
environment variable, a flag, or a default. With no file (neither --config,
BLK_CONFIG nor ` + DefaultConfigFile + `) blk uses a built-in layout for
the lab: this machine, volume group "blk".

A configuration file looks like this:

  state: /var/lib/blk/state.db
  hosts:
    stor1: {address: 192.0.2.10, user: root, port: 22}
    comp1: {address: 192.0.2.20}
  backends:
    lvm-1:
      type: lvm
      host: stor1
      vg: blk
      thin_pool: pool
      portal: 192.0.2.10:3260
      iqn_prefix: iqn.2026-11.org.example.blk
      chap: true
  compute: [comp1]
  defaults: {backend: lvm-1}

` + envHelp,
		Example: "  blk config show\n  blk config show -o json\n  BLK_STATE=/tmp/s.db blk config show",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			settings := a.settings(cfg)
			v := view{obj: settings, header: []string{"KEY", "VALUE", "SOURCE"}}
			for _, s := range settings {
				v.rows = append(v.rows, []string{s.Key, s.Value, s.Source})
				v.names = append(v.names, s.Key)
			}
			return a.print(v)
		},
	})
	return cmd
}

// Setting is one effective value and where it came from.
type Setting struct {
	Key    string `json:"key" yaml:"key"`
	Value  string `json:"value" yaml:"value"`
	Source string `json:"source" yaml:"source"`
}

func (a *App) settings(cfg *config.Config) []Setting {
	file, _, fileSource := a.configFile()
	if a.cfgFrom == "" {
		file += " (not found: built-in default)"
	}
	out := []Setting{{"config", file, fileSource}}
	source := func(key string) string {
		if s := a.sources["config:"+key]; s != "" {
			return s
		}
		if n := cfg.Line(key); n > 0 {
			return fmt.Sprintf("file %s:%d", a.cfgFrom, n)
		}
		return "default"
	}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				f := v.Type().Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if name == "" || name == "-" {
					continue
				}
				walk(join(prefix, name), v.Field(i))
			}
		case reflect.Map:
			var keys []string
			for _, k := range v.MapKeys() {
				keys = append(keys, k.String())
			}
			slices.Sort(keys)
			for _, k := range keys {
				walk(join(prefix, k), v.MapIndex(reflect.ValueOf(k)))
			}
		case reflect.Slice:
			if v.Len() > 0 {
				var items []string
				for i := range v.Len() {
					items = append(items, fmt.Sprint(v.Index(i)))
				}
				out = append(out, Setting{prefix, strings.Join(items, ","), source(prefix)})
			}
		default:
			if prefix == "state" {
				out = append(out, Setting{prefix, state.Redact(v.String()), source(prefix)})
			} else if !v.IsZero() {
				out = append(out, Setting{prefix, fmt.Sprint(v), source(prefix)})
			} else if d := sshDefault(cfg, prefix); d != "" {
				out = append(out, Setting{prefix, d, "default"})
			} else if d := placementDefault(prefix); d != "" {
				out = append(out, Setting{prefix, d, "default"})
			}
		}
	}
	walk("", reflect.ValueOf(*cfg))
	for _, g := range globals[1:] {
		if g.flag == "state" {
			continue // a config key, above
		}
		f := a.rootFlags.Lookup(g.flag)
		val := f.Value.String()
		if g.flag == "output" && val == "" {
			val = "table on a terminal, tab-separated rows when piped"
		}
		out = append(out, Setting{"--" + g.flag, val, a.sources[g.flag]})
	}
	return out
}

// sshDefault is what the SSH runner uses for a remote host's unset key.
func sshDefault(cfg *config.Config, key string) string {
	rest, ok := strings.CutPrefix(key, "hosts.")
	if !ok {
		return ""
	}
	i := strings.LastIndex(rest, ".")
	if i < 0 {
		return ""
	}
	if h := cfg.Hosts[rest[:i]]; h.Local {
		return ""
	}
	return map[string]string{
		"user":        "root",
		"port":        "22",
		"identity":    "ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa",
		"known_hosts": "~/.ssh/known_hosts",
	}[rest[i+1:]]
}

// placementDefault is the default of a backend's placement key.
func placementDefault(key string) string {
	if !strings.HasPrefix(key, "backends.") {
		return ""
	}
	switch key[strings.LastIndex(key, ".")+1:] {
	case "max_over_subscription_ratio":
		return strconv.Itoa(config.DefaultOverSubscription)
	case "max_pool_usage_percent":
		return strconv.Itoa(config.DefaultPoolUsagePercent)
	}
	return ""
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}
