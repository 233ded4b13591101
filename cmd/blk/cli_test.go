package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/volume"
)

type result struct {
	code        int
	out, errOut string
}

// blk runs the CLI against a config in dir whose hosts all answer from f.
func blk(t *testing.T, dir string, f *exectest.Fake, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	app := &App{In: strings.NewReader(""), Out: &out, Err: &errOut}
	if f != nil {
		app.hostsHook = func(h *volume.Hosts) { h.New = func(string, config.Host) exec.Runner { return f } }
	}
	code := run(context.Background(), app, append([]string{"--config", filepath.Join(dir, "blk.yaml")}, args...))
	return result{code, out.String(), errOut.String()}
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	body = strings.ReplaceAll(body, "STATE", filepath.Join(dir, "state.db"))
	if err := os.WriteFile(filepath.Join(dir, "blk.yaml"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

const goodConfig = `
state: STATE
hosts:
  stor1: {address: 192.0.2.10}
backends:
  lvm-1: {type: lvm, host: stor1, vg: blk, thin_pool: pool, portal: "192.0.2.10:3260", iqn_prefix: iqn.2026-11.org.example.blk}
defaults: {backend: lvm-1}
`

func TestBadConfigIsOneLineNamingFileAndKey(t *testing.T) {
	cases := map[string]string{
		"backends.lvm-1.type: unknown backend type \"zfs\"":              strings.Replace(goodConfig, "type: lvm", "type: zfs", 1),
		"backends.lvm-1.host: host \"stor9\" is not defined under hosts": strings.Replace(goodConfig, "host: stor1", "host: stor9", 1),
		"backends.lvm-1.vg: missing":                                     strings.Replace(goodConfig, "vg: blk, ", "", 1),
		"backends.lvm-1.portal: \"192.0.2.10\" is not ADDRESS:PORT":      strings.Replace(goodConfig, "192.0.2.10:3260", "192.0.2.10", 1),
		`line 8: bogus: unknown key "bogus"`:                             goodConfig + "bogus: 1\n",
	}
	for want, body := range cases {
		dir := writeConfig(t, body)
		r := blk(t, dir, nil, "volume", "list")
		if r.code != ExitUsage || !strings.Contains(r.errOut, want) || !strings.Contains(r.errOut, filepath.Join(dir, "blk.yaml")) {
			t.Errorf("want %q: code %d, stderr %q", want, r.code, r.errOut)
		}
		if _, err := os.Stat(filepath.Join(dir, "state.db")); err == nil {
			t.Errorf("%s: a bad config still created the state file", want)
		}
	}
}

func TestBadInputExitsTwoAndTouchesNothing(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	for _, args := range [][]string{
		{"volume", "create", "db1", "--size", "20"},
		{"volume", "create", "db1"},
		{"volume", "create", "Bad Name", "--size", "1GiB"},
		{"volume", "create", "db1", "--size", "1GiB", "--nope"},
		{"volume", "list", "-o", "xml"},
		{"volume", "delete", "db1"}, // no terminal and no --yes
	} {
		r := blk(t, dir, exectest.New(t, "stor1"), args...)
		if r.code != ExitUsage {
			t.Errorf("%v: code %d, stderr %q", args, r.code, r.errOut)
		}
		if lines := strings.Count(strings.TrimSpace(r.errOut), "\n"); lines > 1 || !strings.HasPrefix(r.errOut, "blk: error: ") {
			t.Errorf("%v: stderr not one error line: %q", args, r.errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db")); err == nil {
		t.Error("bad input created the state file")
	}
}

func TestCreateListShowDeleteJSON(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	f := exectest.New(t, "stor1")
	// The UUID is random: a tiny LVM stands in for the real one.
	f.Handle(fakeLVM())
	r := blk(t, dir, f, "volume", "create", "db1", "--size", "1GiB", "-o", "json")
	if r.code != 0 {
		t.Fatalf("create: %d %s", r.code, r.errOut)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(r.out), &v); err != nil {
		t.Fatalf("create output %q: %v", r.out, err)
	}
	for _, k := range []string{"uuid", "name", "backend", "size_bytes", "status", "thin", "created_at", "updated_at", "snapshot_count", "attachment"} {
		if _, ok := v[k]; !ok {
			t.Errorf("volume JSON lacks %q: %s", k, r.out)
		}
	}
	if v["status"] != "available" || v["attachment"] != nil || v["size_bytes"].(float64) != 1<<30 {
		t.Errorf("volume = %v", v)
	}
	r = blk(t, dir, f, "volume", "create", "db1", "--size", "1GiB")
	if r.code != ExitConflict || !strings.Contains(r.errOut, `volume "db1" already exists`) {
		t.Errorf("duplicate: %d %q", r.code, r.errOut)
	}
	r = blk(t, dir, f, "volume", "list", "-o", "json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(r.out), &list); err != nil || len(list) != 1 || list[0]["name"] != "db1" {
		t.Fatalf("list: %q %v", r.out, err)
	}
	r = blk(t, dir, f, "volume", "list")
	if fields := strings.Split(strings.TrimSpace(r.out), "\t"); fields[0] != "db1" || fields[2] != "available" {
		t.Errorf("piped list is not plain rows: %q", r.out)
	}
	if r = blk(t, dir, f, "volume", "show", "nope"); r.code != ExitNotFound {
		t.Errorf("show missing: %d %q", r.code, r.errOut)
	}
	if r = blk(t, dir, f, "volume", "delete", "db1", "--yes"); r.code != 0 {
		t.Errorf("delete: %d %q", r.code, r.errOut)
	}
	if r = blk(t, dir, f, "volume", "list", "-o", "json"); strings.TrimSpace(r.out) != "[]" {
		t.Errorf("after delete: %q", r.out)
	}
}

func TestHelpEndsWithExitStatus(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"volume", "--help"}, {"volume", "create", "--help"}, {"host", "check", "--help"}, {"backend", "list", "--help"}} {
		r := blk(t, t.TempDir(), nil, args...)
		if r.code != 0 || !strings.Contains(r.out, "EXIT STATUS") || !strings.Contains(r.out, "130  interrupted") {
			t.Errorf("%v: %d %q", args, r.code, r.out)
		}
	}
}

// fakeLVM answers lvcreate, lvs VG/LV, lvextend and lvremove like LVM would, keeping
// the LVs it made.
func fakeLVM() func(args []string) (string, string, int, bool) {
	lvs := map[string]string{} // VG/LV -> size
	return func(args []string) (string, string, int, bool) {
		last := args[len(args)-1]
		switch args[0] {
		case "lvcreate":
			var name, size string
			for i, a := range args {
				switch a {
				case "--name":
					name = args[i+1]
				case "--size", "--virtualsize":
					size = strings.TrimSuffix(args[i+1], "b")
				}
			}
			if slices.Contains(args, "--snapshot") { // of the LV last, as big
				vg, _, _ := strings.Cut(last, "/")
				lvs[vg+"/"+name] = lvs[last]
				return "", "", 0, true
			}
			lvs[last+"/"+name] = size
			return "", "", 0, true
		case "lvchange":
			return "", "", 0, true
		case "lvs":
			size, ok := lvs[last]
			if !ok {
				return "", `  Failed to find logical volume "` + last + `"`, 5, true
			}
			vg, lv, _ := strings.Cut(last, "/")
			return `{"report":[{"lv":[{"lv_name":"` + lv + `","vg_name":"` + vg + `","lv_size":"` + size + `","lv_tags":"blk","pool_lv":"","lv_attr":"-wi-a-----","data_percent":""}]}]}`, "", 0, true
		case "lvremove":
			delete(lvs, last)
			return "", "", 0, true
		case "lvextend":
			lvs[last] = strings.TrimSuffix(args[2], "b")
			return "", "", 0, true
		case "vgs":
			return `{"report":[{"vg":[{"vg_name":"` + last + `","vg_size":"8589934592","vg_free":"8589934592","lv_count":"0"}]}]}`, "", 0, true
		}
		return "", "", 0, false
	}
}
