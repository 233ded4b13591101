//go:build lab

package lab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

type driftItem struct {
	Host     string `json:"host"`
	Kind     string `json:"kind"`
	Object   string `json:"object"`
	Volume   string `json:"volume"`
	Detail   string `json:"detail"`
	Fixed    bool   `json:"fixed"`
	FixError string `json:"fix_error"`
}

type hostDrift struct {
	Host  string      `json:"host"`
	Error string      `json:"error"`
	Drift []driftItem `json:"drift"`
}

// reconcile runs blk reconcile -o json with args and returns its exit code
// and every drift item.
func reconcile(t *testing.T, args ...string) (int, []driftItem) {
	t.Helper()
	r := blk(t, append([]string{"reconcile", "-o", "json"}, args...)...)
	if r.code != 0 && r.code != 6 {
		t.Fatalf("reconcile %v: exit %d: %s", args, r.code, r.errOut)
	}
	var all []driftItem
	for _, h := range decode[[]hostDrift](t, r.out) {
		if h.Error != "" {
			t.Errorf("reconcile could not look at %s: %s", h.Host, h.Error)
		}
		all = append(all, h.Drift...)
	}
	return r.code, all
}

// reconciled says what drift reconcile finds: nothing, once a workflow has
// ended or been recovered.
func reconciled(t *testing.T) []string {
	t.Helper()
	code, all := reconcile(t)
	var p []string
	for _, d := range all {
		p = append(p, fmt.Sprintf("reconcile: %s %s on %s: %s", d.Kind, d.Object, d.Host, d.Detail))
	}
	if code != 0 && len(p) == 0 {
		p = append(p, fmt.Sprintf("reconcile exits %d with no drift listed", code))
	}
	return p
}

// sessionState is open-iscsi's state of the session to iqn ("LOGGED_IN",
// "FAILED", ...), or "" when there is none.
func sessionState(t *testing.T, iqn string) string {
	out := sh(t, "sh", "-c", "iscsiadm -m session -P 1 2>/dev/null; true")
	in := false
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "Target: ") {
			in = strings.Fields(l)[1] == iqn
		}
		if s, found := strings.CutPrefix(l, "iSCSI Session State: "); found && in {
			return s
		}
	}
	return ""
}

// A storage host reboot, as tgtd sees one: tgtd dies and starts again with
// no targets (tgt keeps them in memory). The compute host's session of an
// in-use volume retries; reconcile reports the missing export, --fix makes
// it again from the attachment, the session logs in again by itself and
// the data written before is read back.
func TestStorageHostRebootIsRepairedByReconcile(t *testing.T) {
	waitForKernel(t, "lab-vm2")
	if code, d := reconcile(t); code != 0 {
		t.Fatalf("drift before the test: %+v", d)
	}
	name := uniq("reboot")
	v := decode[volume](t, ok(t, "volume", "create", name, "--size", "32MiB", "-o", "json"))
	defer blk(t, "volume", "delete", name, "--yes")
	a := decode[attached](t, ok(t, "volume", "attach", name, "--instance", "lab-vm2", "--bus", "virtio", "-o", "json"))
	defer blk(t, "volume", "detach", name, "--force")
	iqn := "iqn.2026-11.org.example.blk:" + v.UUID
	dev := a.Attachment.DevicePath
	sum := sh(t, "sh", "-c", "head -c 16777216 /dev/urandom > /tmp/"+name+" && dd if=/tmp/"+name+" of="+dev+
		" bs=1M oflag=direct status=none && sha256sum < /tmp/"+name+" && rm /tmp/"+name)

	sh(t, "sh", "-c", "kill -9 $(pidof tgtd)")
	for i := 0; strings.TrimSpace(sh(t, "sh", "-c", "pidof tgtd; true")) != ""; i++ {
		if i > 100 {
			t.Fatal("tgtd did not die")
		}
		time.Sleep(100 * time.Millisecond)
	}
	sh(t, "sh", "-c", "tgtd --iscsi portal=127.0.0.1:3260 </dev/null >/dev/null 2>&1")
	for i := 0; ; i++ {
		if _, err := guestRun("tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "target"); err == nil {
			break
		}
		if i > 100 {
			t.Fatal("tgtd did not come back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(sh(t, "tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "target"), iqn) {
		t.Fatal("the restarted tgtd still has the target: the test shows nothing")
	}

	code, found := reconcile(t)
	if code != 6 || len(found) != 1 || found[0].Kind != "missing-target" || found[0].Object != iqn || found[0].Volume != name {
		t.Fatalf("reconcile after the reboot: exit %d, %+v; want exit 6 and missing-target %s", code, found, iqn)
	}
	code, found = reconcile(t, "--fix")
	if code != 0 || len(found) != 1 || !found[0].Fixed {
		t.Fatalf("reconcile --fix: exit %d, %+v", code, found)
	}
	show := sh(t, "tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "target")
	for _, want := range []string{iqn, "Backing store path: " + v.Path, "blk-" + v.UUID[:8], "iqn.2026-11.org.example.lab:compute"} {
		if !strings.Contains(show, want) {
			t.Errorf("re-export lacks %q:\n%s", want, show)
		}
	}
	// open-iscsi retries the login on its own, every few seconds.
	deadline := time.Now().Add(90 * time.Second)
	for st := sessionState(t, iqn); st != "LOGGED_IN"; st = sessionState(t, iqn) {
		if time.Now().After(deadline) {
			t.Fatalf("the session did not log in again: state %q", st)
		}
		time.Sleep(time.Second)
	}
	if back := sh(t, "sh", "-c", "dd if="+dev+" bs=1M count=16 iflag=direct status=none | sha256sum"); back != sum {
		t.Errorf("after the reboot the device reads %q, wrote %q", back, sum)
	}
	// And I/O goes on: a write through the session reaches the LV.
	sum2 := sh(t, "sh", "-c", "head -c 1048576 /dev/urandom > /tmp/"+name+" && dd if=/tmp/"+name+" of="+dev+
		" bs=1M seek=16 oflag=direct status=none && sha256sum < /tmp/"+name+" && rm /tmp/"+name)
	if back := sh(t, "sh", "-c", "dd if="+v.Path+" bs=1M skip=16 count=1 iflag=direct status=none | sha256sum"); back != sum2 {
		t.Errorf("a write after the reboot: LV holds %q, wrote %q", back, sum2)
	}
	if p := reconciled(t); len(p) > 0 {
		t.Errorf("after --fix: %s", strings.Join(p, "; "))
	}
	ok(t, "volume", "detach", name)
	if p := reconciled(t); len(p) > 0 {
		t.Errorf("after detach: %s", strings.Join(p, "; "))
	}
}

// guestRun runs a command in the guest and returns its error, for polls
// that expect failures.
func guestRun(args ...string) (string, error) {
	res, err := guest.Run(context.Background(), exec.Cmd{Args: args})
	return string(res.Stdout), err
}

// 50 blk processes at once on one state file, creating, attaching,
// detaching and deleting volumes of a few shared names: each exits 0 (it
// did it, or it was done already), 3 (another held the volume) or 4 (it
// was gone); none sees "database is locked"; afterwards the state and the
// guest agree.
func TestFiftyConcurrentProcessesLeaveNoDrift(t *testing.T) {
	storm(t, func(i int, args ...string) result { return blk(t, args...) })
}

// The same 50 processes with the state in PostgreSQL (a private server
// on this machine), from two admin machines: half with the lab's config
// and BLK_STATE, half with a config file of their own naming the database,
// in a UTS namespace under another hostname, so each half's operations
// belong to a host the other cannot look into.
func TestFiftyConcurrentProcessesOnPostgresFromTwoAdminMachines(t *testing.T) {
	if os.Getenv("BLK_LAB_SSH") == "" {
		t.Skip("over SSH only: the admin machines are this one, and the state's server runs here")
	}
	url := pgtest.URL(t)
	cfg, err := os.ReadFile(os.Getenv("BLK_CONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	other := regexp.MustCompile(`(?m)^state:.*$`).ReplaceAllString(string(cfg), "state: "+strconv.Quote(url))
	if other == string(cfg) {
		t.Fatalf("no state: line in %s", os.Getenv("BLK_CONFIG"))
	}
	otherFile := filepath.Join(t.TempDir(), "admin-b.yaml")
	if err = os.WriteFile(otherFile, []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BLK_STATE", url) // admin A, and every check below
	adminB := []string{"BLK_STATE=", "BLK_CONFIG=" + otherFile, "HOSTNAME=blk-admin-b"}
	storm(t, func(i int, args ...string) result {
		if i%2 == 1 {
			return blkAs(t, adminB, args...)
		}
		return blk(t, args...)
	})
	// Each admin machine sees the other's volumes; the journal holds both
	// hosts' operations.
	if r := blkAs(t, adminB, "volume", "list", "-o", "json"); r.code != 0 || r.out != blk(t, "volume", "list", "-o", "json").out {
		t.Errorf("the two admin machines list differently: %d %s", r.code, r.errOut)
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	hosts := map[string]bool{}
	rows, _ := c.Query(ctx, `SELECT DISTINCT split_part(owner, ':', 1) FROM operations`)
	for rows.Next() {
		var h string
		rows.Scan(&h)
		hosts[h] = true
	}
	if rows.Err() != nil || len(hosts) != 2 || !hosts["blk-admin-b"] {
		t.Errorf("operations were journaled by hosts %v (%v), want this one and blk-admin-b", hosts, rows.Err())
	}
}

// storm runs 50 blk processes at once through run (i is the process's
// number) and checks what TestFiftyConcurrentProcessesLeaveNoDrift says.
func storm(t *testing.T, run func(i int, args ...string) result) {
	if code, d := reconcile(t); code != 0 {
		t.Fatalf("drift before the test: %+v", d)
	}
	prefix := uniq("storm")
	names := make([]string, 5)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	defer func() {
		for _, n := range names {
			if r := blk(t, "snapshot", "list", n, "-o", "json"); r.code == 0 {
				for _, sn := range decode[[]snapshot](t, r.out) {
					blk(t, "snapshot", "delete", sn.Name, "--yes")
				}
			}
			blk(t, "volume", "detach", n, "--force")
			blk(t, "volume", "delete", n, "--yes")
		}
	}()
	// A volume with a snapshot cannot be deleted (exit 3): the snapshots
	// are fewer, so that deletes still happen.
	ops := [][]string{
		{"volume", "create", "", "--size", "8MiB"},
		{"volume", "attach", "", "--instance", "lab-vm1", "--bus", "scsi"},
		{"volume", "detach", ""},
		{"volume", "delete", "", "--yes"},
		{"volume", "create", "", "--size", "8MiB"},
		{"volume", "attach", "", "--instance", "lab-vm1", "--bus", "scsi"},
		{"volume", "detach", ""},
		{"volume", "delete", "", "--yes"},
		{"snapshot", "create", "", "--quiesce", "off"},
	}
	const n = 50
	results := make([]result, n)
	cmds := make([][]string, n)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 50))
	for i := range cmds {
		c := append([]string(nil), ops[i%len(ops)]...)
		c[2] = names[rng.IntN(len(names))]
		cmds[i] = c
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = run(i, cmds[i]...)
		}()
	}
	wg.Wait()
	counts := map[int]int{}
	for i, r := range results {
		counts[r.code]++
		if r.code != 0 && r.code != 3 && r.code != 4 {
			t.Errorf("blk %s: exit %d: %s", strings.Join(cmds[i], " "), r.code, r.errOut)
		}
		if strings.Contains(r.errOut, "database is locked") || strings.Contains(r.errOut, "lock timeout") {
			t.Errorf("blk %s saw: %s", strings.Join(cmds[i], " "), r.errOut)
		}
	}
	t.Logf("exit codes of %d processes: %v", n, counts)
	if p := reconciled(t); len(p) > 0 {
		t.Errorf("after the storm: %s", strings.Join(p, "; "))
	}
	for _, name := range names {
		if r := blk(t, "volume", "show", name, "-o", "json"); r.code == 0 {
			if v := decode[attached](t, r.out); v.Status != "available" && v.Status != "in-use" {
				t.Errorf("%s left %s", name, v.Status)
			}
		}
	}
}

// A snapshot create and a snapshot delete killed after their first step
// (the crash matrix recovers by rerunning; here reconcile --fix does):
// reconcile reports them stuck, --fix finishes both, and reconcile is then
// clean.
func TestReconcileFinishesKilledSnapshotWorkflows(t *testing.T) {
	if os.Getenv("BLK_FAULT_BIN") == "" {
		t.Fatal("needs BLK_FAULT_BIN, blk built with -tags faultinject: run it with make lab-test")
	}
	name := uniq("rsnap")
	ok(t, "volume", "create", name, "--size", "8MiB", "--thin")
	defer blk(t, "volume", "delete", name, "--yes")
	ok(t, "snapshot", "create", name, "--name", name+"-d")
	defer blk(t, "snapshot", "delete", name+"-c", name+"-d", "--yes")
	if _, killed, _, last := faultRun(t, 1, "snapshot", "create", name, "--name", name+"-c"); !killed {
		t.Fatalf("snapshot create was not killed (last step %s)", last)
	}
	if _, killed, _, last := faultRun(t, 1, "snapshot", "delete", name+"-d", "--yes"); !killed {
		t.Fatalf("snapshot delete was not killed (last step %s)", last)
	}
	code, drift := reconcile(t)
	var stuck []string
	for _, d := range drift {
		if d.Kind == "stuck-status" {
			stuck = append(stuck, d.Object)
		}
	}
	if code != 6 || len(stuck) != 2 {
		t.Fatalf("reconcile after the kills: exit %d, stuck %q, drift %+v", code, stuck, drift)
	}
	if code, drift = reconcile(t, "--fix"); code != 0 {
		t.Fatalf("reconcile --fix: exit %d: %+v", code, drift)
	}
	if p := reconciled(t); len(p) > 0 {
		t.Errorf("after --fix: %s", strings.Join(p, "; "))
	}
	if sn := decode[snapshot](t, ok(t, "snapshot", "show", name+"-c", "-o", "json")); sn.Status != "available" {
		t.Errorf("the killed create was left %s", sn.Status)
	}
	if r := blk(t, "snapshot", "show", name+"-d"); r.code != 4 {
		t.Errorf("the killed delete left its snapshot: exit %d %s", r.code, r.out)
	}
	if st := decode[volume](t, ok(t, "volume", "show", name, "-o", "json")).Status; st != "available" {
		t.Errorf("volume left %s", st)
	}
}
