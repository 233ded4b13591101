package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/volume"
)

// completions runs 'blk __complete ARGS' and returns the values offered.
func completions(t *testing.T, dir string, hook func(*volume.Hosts), args ...string) []string {
	t.Helper()
	r := blkWith(t, context.Background(), ttys{}, strings.NewReader(""), dir, hook, append([]string{"__complete"}, args...)...)
	if r.code != 0 {
		t.Fatalf("__complete %v: %d %q", args, r.code, r.errOut)
	}
	var vals []string
	for line := range strings.Lines(r.out) {
		line = strings.TrimSuffix(line, "\n")
		if strings.HasPrefix(line, ":") {
			break // the directive
		}
		vals = append(vals, strings.Split(line, "\t")[0])
	}
	return vals
}

func TestCompletionListsVolumeNamesAndNeverCreatesState(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	if got := completions(t, dir, nil, "volume", "show", ""); len(got) != 0 {
		t.Errorf("no state file: %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db")); err == nil {
		t.Fatal("completion created the state file")
	}
	f := exectest.New(t, "stor1")
	f.Handle(fakeLVM())
	for _, n := range []string{"db1", "db2", "web"} {
		if r := blk(t, dir, f, "volume", "create", n, "--size", "1GiB"); r.code != 0 {
			t.Fatalf("create: %d %q", r.code, r.errOut)
		}
	}
	before, _ := os.ReadDir(dir)
	if got := completions(t, dir, nil, "volume", "show", ""); !slices.Equal(got, []string{"db1", "db2", "web"}) {
		t.Errorf("volume show '': %v", got)
	}
	if got := completions(t, dir, nil, "volume", "delete", "db1", "d"); !slices.Equal(got, []string{"db2"}) {
		t.Errorf("volume delete db1 d: %v", got)
	}
	if got := completions(t, dir, nil, "volume", "show", "db1", ""); len(got) != 0 {
		t.Errorf("show takes one volume: %v", got)
	}
	after, _ := os.ReadDir(dir)
	if len(before) != len(after) {
		t.Errorf("completion changed the state directory: %v -> %v", before, after)
	}
}

func TestCompletionOfFlagValues(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"volume", "create", "x", "--backend", ""}, []string{"lvm-1"}},
		{[]string{"volume", "list", "-o", ""}, []string{"table", "wide", "json", "yaml"}},
		{[]string{"volume", "attach", "x", "--bus", ""}, []string{"virtio", "scsi"}},
		{[]string{"volume", "list", "--status", "in"}, []string{"in-use"}},
		{[]string{"host", "check", ""}, []string{"stor1"}},
		{[]string{"completion", ""}, []string{"bash", "zsh", "fish"}},
	} {
		if got := completions(t, dir, nil, c.args...); !slices.Equal(got, c.want) {
			t.Errorf("%v: %v, want %v", c.args, got, c.want)
		}
	}
}

type domains struct {
	hypervisor.Hypervisor
	names []string
}

func (d domains) Domains(context.Context) ([]string, error) { return d.names, nil }
func (d domains) Close() error                              { return nil }

func TestCompletionOfInstancesAsksTheComputeHosts(t *testing.T) {
	dir := writeConfig(t, goodConfig+"compute: [stor1]\n")
	hook := func(h *volume.Hosts) {
		h.New = func(string, config.Host) exec.Runner { return exectest.New(t, "stor1") }
		h.NewHypervisor = func(ctx context.Context, name string, r exec.Runner) (hypervisor.Hypervisor, error) {
			return domains{names: []string{"web1", "web2", "db"}}, nil
		}
	}
	if got := completions(t, dir, hook, "volume", "attach", "db1", "--instance", "web"); !slices.Equal(got, []string{"web1", "web2"}) {
		t.Errorf("instances: %v", got)
	}
}
