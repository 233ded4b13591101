package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
)

const orphanUUID = "0f0f0f0f-aaaa-bbbb-cccc-ddddeeeeffff"

// storWith answers reconcile's reads of stor1: the tagged LVs given, no
// targets, no accounts.
func storWith(t *testing.T, lvs string) *exectest.Fake {
	f := exectest.New(t, "stor1")
	f.Handle(func(args []string) (string, string, int, bool) {
		switch {
		case args[0] == "lvs" && strings.Contains(strings.Join(args, " "), "--select lv_tags=blk"):
			return `{"report":[{"lv":[` + lvs + `]}]}`, "", 0, true
		case args[0] == "tgtadm" && strings.Contains(strings.Join(args, " "), "--op show --mode target"):
			return "", "", 0, true
		case args[0] == "tgtadm" && strings.Contains(strings.Join(args, " "), "--op show --mode account"):
			return "Account list:\n", "", 0, true
		case args[0] == "dmsetup" && args[1] == "status": // no metadata snapshot held
			return "0 8388608 thin-pool 7 100/1000 200/2000 - rw discard_passdown queue_if_no_space - 1024\n", "", 0, true
		}
		return "", "", 0, false
	})
	return f
}

func TestReconcileExitsSixOnDriftForCron(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	r := blk(t, dir, storWith(t, ""), "reconcile")
	if r.code != ExitOK || !strings.Contains(r.errOut, "no drift: the state file and 1 host(s) agree") || r.out != "" {
		t.Fatalf("clean: %d %q %q", r.code, r.out, r.errOut)
	}
	lv := `{"lv_name":"volume-` + orphanUUID + `","vg_name":"blk","lv_size":"8388608","lv_tags":"blk,blk-name-lost1,blk-vol-` + orphanUUID +
		`","pool_lv":"","lv_attr":"-wi-a-----","data_percent":""}`
	r = blk(t, dir, storWith(t, lv), "reconcile")
	if r.code != ExitDrift || !strings.Contains(r.out, "stor1\torphan-lv\tblk/volume-"+orphanUUID) ||
		!strings.Contains(r.errOut, "blk: error: 1 drift item(s) left on stor1 (1): see ACTION") {
		t.Fatalf("drift: %d %q %q", r.code, r.out, r.errOut)
	}
	r = blk(t, dir, storWith(t, lv), "reconcile", "-o", "json")
	var reports []struct {
		Host  string `json:"host"`
		Drift []struct {
			Kind    string `json:"kind"`
			Object  string `json:"object"`
			Fixable bool   `json:"fixable"`
		} `json:"drift"`
	}
	if err := json.Unmarshal([]byte(r.out), &reports); err != nil || r.code != ExitDrift {
		t.Fatalf("json: %d %q %v", r.code, r.out, err)
	}
	if len(reports) != 1 || len(reports[0].Drift) != 1 || reports[0].Drift[0].Kind != "orphan-lv" || reports[0].Drift[0].Fixable {
		t.Errorf("json = %+v", reports)
	}
	// Adopted, the LV's row is rebuilt with the name its tag holds: exit 0.
	r = blk(t, dir, storWith(t, lv), "reconcile", "--fix", "--adopt")
	if r.code != ExitOK || !strings.Contains(r.out, "fixed") {
		t.Fatalf("--fix --adopt: %d %q %q", r.code, r.out, r.errOut)
	}
	if r := blk(t, dir, nil, "volume", "show", "lost1", "-o", "json"); r.code != 0 || !strings.Contains(r.out, `"uuid":"`+orphanUUID+`"`) {
		t.Errorf("adopted volume: %d %q %q", r.code, r.out, r.errOut)
	}
	if r := blk(t, dir, storWith(t, lv), "reconcile"); r.code != ExitOK {
		t.Errorf("after adopting: %d %q %q", r.code, r.out, r.errOut)
	}
}

func TestReconcileAndResetStateRefuseBadUsage(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"reconcile", "--adopt"}, "--adopt goes with --fix"},
		{[]string{"volume", "reset-state", "db1"}, "--to is required"},
		{[]string{"volume", "reset-state", "db1", "--to", "deleting"}, `--to "deleting": want one of available, in-use, error`},
	} {
		if r := blk(t, dir, nil, c.args...); r.code != ExitUsage || !strings.Contains(r.errOut, c.want) {
			t.Errorf("%v: %d %q, want 2 and %q", c.args, r.code, r.errOut, c.want)
		}
	}
	if r := blk(t, dir, nil, "reconcile", "--fix"); r.code != ExitNotFound || !strings.Contains(r.errOut, "no state file") {
		t.Errorf("--fix without a state file: %d %q", r.code, r.errOut)
	}
	if r := blk(t, dir, nil, "reconcile", "--help"); !strings.Contains(r.out, "6    drift: reconcile found") {
		t.Errorf("help lacks exit 6:\n%s", r.out)
	}
}
