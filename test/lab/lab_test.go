//go:build lab

// Package lab tests blk against the real tools in the lab VM (make lab-test).
// The same binary runs on this machine, where blk drives the guest over SSH,
// and inside the guest, where blk runs its commands locally. Each test checks
// what an operator would: the LV exists with the size and tags, the bytes.
//
// Environment: BLK_BIN (the blk binary), BLK_CONFIG (its configuration), and
// BLK_LAB_SSH=ADDR,IDENTITY,KNOWN_HOSTS when the guest is remote.
package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	osexec "os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/pgtest"
)

var guest exec.Runner

func TestMain(m *testing.M) {
	if os.Getenv("BLK_BIN") == "" || os.Getenv("BLK_CONFIG") == "" {
		fmt.Fprintln(os.Stderr, "lab tests need BLK_BIN and BLK_CONFIG: run them with make lab-test")
		os.Exit(2)
	}
	guest = &exec.Local{Name: "lab"}
	if s := os.Getenv("BLK_LAB_SSH"); s != "" {
		p := strings.Split(s, ",")
		guest = exec.NewSSH(exec.SSHConfig{Name: "lab", Address: p[0], User: "root", Identity: p[1], KnownHosts: p[2]})
	}
	code := m.Run()
	guest.Close()
	pgtest.Stop()
	os.Exit(code)
}

type result struct {
	code        int
	out, errOut string
}

func blk(t *testing.T, args ...string) result {
	t.Helper()
	return blkAs(t, nil, args...)
}

// blkAs runs blk as another admin machine would: its environment changed
// by env (NAME=VALUE, or NAME= to drop it), and, with a hostname among
// them (HOSTNAME=…), in a UTS namespace of its own under that name, so the
// operations it journals are owned by another host.
func blkAs(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	argv := append([]string{os.Getenv("BLK_BIN")}, args...)
	environ := os.Environ()
	for _, e := range env {
		name, value, _ := strings.Cut(e, "=")
		if name == "HOSTNAME" {
			argv = append([]string{"unshare", "--uts", "sh", "-c", `hostname "$0" && exec "$@"`, value}, argv...)
			continue
		}
		environ = slices.DeleteFunc(environ, func(kv string) bool { return strings.HasPrefix(kv, name+"=") })
		if value != "" {
			environ = append(environ, e)
		}
	}
	cmd := osexec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = environ
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*osexec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("blk %v: %v", args, err)
	}
	return result{code, out.String(), errOut.String()}
}

// ok runs blk and fails the test, with blk's stderr (host, argv, stderr of
// the failed tool), unless it exits 0.
func ok(t *testing.T, args ...string) string {
	t.Helper()
	r := blk(t, args...)
	if r.code != 0 {
		t.Fatalf("blk %s: exit %d\n%s", strings.Join(args, " "), r.code, r.errOut)
	}
	return r.out
}

// sh runs a command in the guest, to look at reality behind blk's back.
func sh(t *testing.T, args ...string) string {
	t.Helper()
	res, err := guest.Run(context.Background(), exec.Cmd{Args: args})
	if err != nil {
		t.Fatalf("guest: %v", err)
	}
	return string(res.Stdout)
}

type volume struct {
	UUID       string `json:"uuid"`
	Name       string `json:"name"`
	SizeBytes  int64  `json:"size_bytes"`
	Status     string `json:"status"`
	Thin       bool   `json:"thin"`
	Path       string `json:"path"`
	Attachment any    `json:"attachment"`
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

func uniq(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), time.Now().UnixNano()%1e6)
}

type lv struct {
	Name, Size, Tags, Pool string
}

// lvOf reads the LV behind a volume straight from LVM; ok=false if none.
func lvOf(t *testing.T, uuid string) (lv, bool) {
	t.Helper()
	res, err := guest.Run(context.Background(), exec.Cmd{Args: []string{"lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
		"-o", "lv_name,lv_size,lv_tags,pool_lv", "blk/volume-" + uuid}})
	if err != nil {
		if strings.Contains(err.Error(), "Failed to find logical volume") {
			return lv{}, false
		}
		t.Fatal(err)
	}
	var r struct {
		Report []struct {
			LV []struct {
				Name string `json:"lv_name"`
				Size string `json:"lv_size"`
				Tags string `json:"lv_tags"`
				Pool string `json:"pool_lv"`
			} `json:"lv"`
		} `json:"report"`
	}
	if err := json.Unmarshal(res.Stdout, &r); err != nil || len(r.Report[0].LV) != 1 {
		t.Fatalf("lvs: %s %v", res.Stdout, err)
	}
	l := r.Report[0].LV[0]
	return lv{l.Name, l.Size, l.Tags, l.Pool}, true
}

type hostReport struct {
	Host      string `json:"host"`
	Reachable bool   `json:"reachable"`
	Checks    []struct {
		Check  string `json:"check"`
		OK     bool   `json:"ok"`
		Detail string `json:"detail"`
		Fix    string `json:"fix"`
	} `json:"checks"`
}

func TestHostCheckFindsWhatEachRoleNeeds(t *testing.T) {
	reports := decode[[]hostReport](t, ok(t, "host", "check", "-o", "json"))
	if len(reports) != 1 || !reports[0].Reachable || len(reports[0].Checks) < 8 {
		t.Fatalf("reports = %+v", reports)
	}
	for _, c := range reports[0].Checks {
		if !c.OK {
			t.Errorf("%s failed in the lab: %s (%s)", c.Check, c.Detail, c.Fix)
		}
		if c.Check == "lvm2" && !strings.HasPrefix(c.Detail, "2.") {
			t.Errorf("lvm2 version %q", c.Detail)
		}
	}
}

func TestBackendListReadsTheVolumeGroup(t *testing.T) {
	infos := decode[[]struct {
		Name          string `json:"name"`
		SizeBytes     int64  `json:"size_bytes"`
		FreeBytes     int64  `json:"free_bytes"`
		PoolSizeBytes int64  `json:"pool_size_bytes"`
	}](t, ok(t, "backend", "list", "-o", "json"))
	vgSize := strings.TrimSpace(sh(t, "vgs", "--noheadings", "--units", "b", "--nosuffix", "-o", "vg_size", "blk"))
	for _, b := range infos {
		if b.Name == "lvm-1" {
			if strconv.FormatInt(b.SizeBytes, 10) != vgSize || b.FreeBytes <= 0 || b.PoolSizeBytes != 4<<30 {
				t.Errorf("lvm-1 = %+v, vg size %s", b, vgSize)
			}
			return
		}
	}
	t.Fatalf("no lvm-1 in %+v", infos)
}

func TestVolumeLifecycle(t *testing.T) {
	for _, thin := range []bool{false, true} {
		t.Run(fmt.Sprintf("thin=%v", thin), func(t *testing.T) {
			name := uniq("life")
			args := []string{"volume", "create", name, "--size", "10MiB", "-o", "json"}
			if thin {
				args = append(args, "--thin")
			}
			v := decode[volume](t, ok(t, args...))
			// LVM rounds 10MiB up to whole 4MiB extents (thick) or pool chunks:
			// blk must record what LVM made, not what was asked.
			l, found := lvOf(t, v.UUID)
			if !found {
				t.Fatalf("no LV for %s", v.UUID)
			}
			if strconv.FormatInt(v.SizeBytes, 10) != l.Size || v.SizeBytes < 10<<20 {
				t.Errorf("recorded %d bytes, LVM made %s", v.SizeBytes, l.Size)
			}
			if l.Tags != "blk,blk-name-"+name+",blk-vol-"+v.UUID {
				t.Errorf("tags = %q", l.Tags)
			}
			if thin != (l.Pool == "pool") || v.Thin != thin || v.Status != "available" {
				t.Errorf("volume %+v, lv %+v", v, l)
			}
			// The device is usable: bytes written come back.
			sh(t, "dd", "if=/dev/urandom", "of=/tmp/"+name, "bs=1M", "count=1", "status=none")
			sh(t, "dd", "if=/tmp/"+name, "of="+v.Path, "bs=1M", "oflag=direct", "status=none")
			back := sh(t, "sh", "-c", "dd if="+v.Path+" bs=1M count=1 iflag=direct status=none | sha256sum; sha256sum < /tmp/"+name+"; rm /tmp/"+name)
			if lines := strings.Split(strings.TrimSpace(back), "\n"); len(lines) != 2 || lines[0] != lines[1] {
				t.Errorf("data read back differs: %q", back)
			}

			list := decode[[]volume](t, ok(t, "volume", "list", "-o", "json"))
			if !containsVolume(list, v.UUID) {
				t.Errorf("list lacks %s", name)
			}
			if got := decode[volume](t, ok(t, "volume", "show", v.UUID, "-o", "json")); got.Name != name {
				t.Errorf("show by uuid: %+v", got)
			}
			ok(t, "volume", "delete", name, "--yes")
			if _, found := lvOf(t, v.UUID); found {
				t.Error("LV still there after delete")
			}
			if r := blk(t, "volume", "show", name); r.code != 4 {
				t.Errorf("show after delete: exit %d", r.code)
			}
		})
	}
}

func containsVolume(list []volume, uuid string) bool {
	for _, v := range list {
		if v.UUID == uuid {
			return true
		}
	}
	return false
}

// Wipe must zero the extents the volume used: read them from the PV itself
// after the LV is gone.
func TestDeleteWipeZeroesTheExtents(t *testing.T) {
	for _, wipe := range []bool{false, true} {
		name := uniq("wipe")
		v := decode[volume](t, ok(t, "volume", "create", name, "--size", "8MiB", "-o", "json"))
		sh(t, "sh", "-c", "yes blk-secret | head -c 8388608 | dd of="+v.Path+" bs=1M oflag=direct status=none")
		ranges := strings.TrimSpace(sh(t, "lvs", "--noheadings", "-o", "seg_pe_ranges", "blk/volume-"+v.UUID))
		pv, span, _ := strings.Cut(ranges, ":")
		first, _, _ := strings.Cut(span, "-")
		peStart := strings.TrimSpace(sh(t, "pvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "pe_start", pv))
		extent := strings.TrimSpace(sh(t, "vgs", "--noheadings", "--units", "b", "--nosuffix", "-o", "vg_extent_size", "blk"))
		p, _ := strconv.ParseInt(peStart, 10, 64)
		e, _ := strconv.ParseInt(extent, 10, 64)
		f, _ := strconv.ParseInt(first, 10, 64)
		args := []string{"volume", "delete", name, "--yes"}
		if wipe {
			args = append(args, "--wipe")
		}
		ok(t, args...)
		offset := p + f*e
		data := sh(t, "sh", "-c", fmt.Sprintf("dd if=%s bs=1M count=8 iflag=skip_bytes,direct skip=%d status=none | tr -d '\\000' | head -c 64", pv, offset))
		if wipe && data != "" {
			t.Errorf("after --wipe the extents still hold %q", data)
		}
		if !wipe && !strings.Contains(data, "blk-secret") {
			// Proves the check reads the right place: without --wipe the data stays.
			t.Errorf("without --wipe expected the old data at offset %d, got %q", offset, data)
		}
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	name := uniq("dry")
	r := blk(t, "--dry-run", "volume", "create", name, "--size", "8MiB")
	if r.code != 0 || !strings.Contains(r.out, "lab: lvcreate --yes --name volume-") || !strings.Contains(r.out, " blk\n") {
		t.Fatalf("dry run: %d %q %q", r.code, r.out, r.errOut)
	}
	if show := blk(t, "volume", "show", name); show.code != 4 {
		t.Errorf("dry run left a row: exit %d", show.code)
	}
	planned := strings.Fields(r.out[strings.Index(r.out, "--name ")+len("--name "):])[0]
	if out := sh(t, "lvs", "--noheadings", "-o", "lv_name", "blk"); strings.Contains(out, planned) {
		t.Errorf("dry run made %s", planned)
	}
}

func TestFailedCreateLeavesNothing(t *testing.T) {
	name := uniq("huge")
	// Too large for the group: refused before lvcreate (exit 3), saying why.
	r := blk(t, "volume", "create", name, "--size", "100GiB")
	if r.code != 3 || !strings.Contains(r.errOut, "volume group blk has") || !strings.Contains(r.errOut, "GiB free, 100.00GiB needed") {
		t.Fatalf("exit %d, stderr %q: want exit 3 saying how much is free and needed", r.code, r.errOut)
	}
	if r := blk(t, "volume", "show", name); r.code != 4 {
		t.Errorf("failed create left a row: exit %d %s", r.code, r.out)
	}
	if out := sh(t, "lvs", "--noheadings", "-o", "lv_size", "blk"); strings.Contains(out, "100.00g") {
		t.Error("failed create left an LV")
	}
}

// 20 processes race to create the same volume: exactly one wins, the rest
// exit 3; then 20 race on different names: all win. Nobody sees "database
// is locked" and no row is lost or doubled.
func TestConcurrentCreates(t *testing.T) {
	const n = 20
	race := func(names func(i int) string) []result {
		results := make([]result, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = blk(t, "volume", "create", names(i), "--size", "4MiB", "-o", "json")
			}()
		}
		wg.Wait()
		for _, r := range results {
			if strings.Contains(r.errOut, "locked") {
				t.Errorf("a process saw: %s", r.errOut)
			}
		}
		return results
	}
	same := uniq("race")
	wins := 0
	for _, r := range race(func(int) string { return same }) {
		switch r.code {
		case 0:
			wins++
		case 3:
		default:
			t.Errorf("exit %d: %s", r.code, r.errOut)
		}
	}
	if wins != 1 {
		t.Errorf("%d processes created %s, want exactly 1", wins, same)
	}
	prefix := uniq("many")
	for _, r := range race(func(i int) string { return fmt.Sprintf("%s-%d", prefix, i) }) {
		if r.code != 0 {
			t.Errorf("exit %d: %s", r.code, r.errOut)
		}
	}
	list := decode[[]volume](t, ok(t, "volume", "list", "-o", "json"))
	var names []string
	count := map[string]int{}
	for _, v := range list {
		if v.Name == same || strings.HasPrefix(v.Name, prefix) {
			count[v.Name]++
			names = append(names, v.Name)
			if _, found := lvOf(t, v.UUID); !found {
				t.Errorf("%s has no LV", v.Name)
			}
		}
	}
	if len(names) != n+1 {
		t.Errorf("got %d volumes, want %d", len(names), n+1)
	}
	for name, c := range count {
		if c != 1 {
			t.Errorf("%s listed %d times", name, c)
		}
	}
	ok(t, append([]string{"volume", "delete", "--yes"}, names...)...)
}
