package volume

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/internal/pgtest"
	"github.com/blk-project/blk/state"
	"go.yaml.in/yaml/v3"
)

func newService(t *testing.T, f *exectest.Fake, dryRun *strings.Builder) *Service {
	t.Helper()
	cfg := &config.Config{
		State: pgtest.State(t),
		Hosts: map[string]config.Host{"stor1": {Address: "192.0.2.10"}},
		Backends: map[string]config.Backend{"lvm-1": {Type: "lvm", Host: "stor1", VG: "blk", ThinPool: "pool",
			Portal: "192.0.2.10:3260", IQNPrefix: "iqn.2026-11.org.example.blk"}},
		Defaults: config.Defaults{Backend: "lvm-1"},
	}
	st, err := state.Open(context.Background(), cfg.State, state.ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var w *strings.Builder
	hs := NewHosts(cfg, nil, nil)
	if dryRun != nil {
		w = dryRun
		hs = NewHosts(cfg, nil, w)
	}
	hs.New = func(string, config.Host) exec.Runner { return f }
	return NewService(cfg, "test.yaml", st, hs)
}

// lvsReport is lvs's JSON for one LV, as LVM prints it with --nosuffix.
func lvsReport(uuid, size string) string {
	return `{"report":[{"lv":[{"lv_name":"volume-` + uuid + `","vg_name":"blk","lv_size":"` + size +
		`","lv_tags":"blk","pool_lv":"","lv_attr":"-wi-a-----","data_percent":""}]}]}`
}

var lvsArgs = []string{"lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "lv_name,vg_name,lv_size,lv_tags,pool_lv,lv_attr,data_percent"}

func lvsOf(uuid string) []string { return append(append([]string{}, lvsArgs...), "blk/volume-"+uuid) }

const notFound = `  Failed to find logical volume "blk/x"`

var vgsArgs = []string{"vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,vg_size,vg_free,lv_count", "blk"}

func vgsReport(free string) string {
	return `{"report":[{"vg":[{"vg_name":"blk","vg_size":"8585740288","vg_free":"` + free + `","lv_count":"3"}]}]}`
}

const poolReport = `{"report":[{"lv":[{"lv_name":"pool","vg_name":"blk","lv_size":"4294967296","lv_tags":"","pool_lv":"","lv_attr":"twi-aotz--","data_percent":"10.00"}]}]}`

func TestCreateRefusesAGarbledReport(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	s.testHookUUID = "11111111-2222-3333-4444-555555555555"
	u := s.testHookUUID
	f.ExpectFail(5, "", notFound, lvsOf(u)...)
	f.Expect(vgsReport("3208642560"), vgsArgs...)
	f.Expect("", "lvcreate", "--yes", "--name", "volume-"+u, "--size", "1073741824b", "--wipesignatures", "y", "--zero", "y",
		"--addtag", "blk", "--addtag", "blk-name-db1", "--addtag", "blk-vol-"+u, "blk")
	f.Expect(lvsReport(u, "X"), lvsOf(u)...)
	// The half-made LV is removed.
	f.Expect(lvsReport(u, "1073741824"), lvsOf(u)...)
	f.Expect("", "lvremove", "--yes", "blk/volume-"+u)
	_, err := s.Create(ctx, CreateOptions{Name: "db1", Size: "1GiB"})
	// lv_size "X" is not a number: the report is refused, not guessed at.
	if err == nil || !strings.Contains(err.Error(), "lv_size") {
		t.Fatalf("err = %v", err)
	}
}

func TestCreateThinAndReadBack(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	u := "aaaaaaaa-2222-3333-4444-555555555555"
	s.testHookUUID = u
	f.ExpectFail(5, "", notFound, lvsOf(u)...)
	f.Expect(poolReport, append(append([]string{}, lvsArgs...), "blk/pool")...)
	f.Expect("", "lvcreate", "--yes", "--name", "volume-"+u, "--type", "thin", "--virtualsize", "2147483648b", "--thinpool", "pool",
		"--addtag", "blk", "--addtag", "blk-name-scratch", "--addtag", "blk-vol-"+u, "blk")
	f.Expect(lvsReport(u, "2151677952"), lvsOf(u)...)
	v, err := s.Create(ctx, CreateOptions{Name: "scratch", Size: "2G", Thin: true})
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != state.Available || v.SizeBytes != 2151677952 || !v.Thin || v.Path != "/dev/blk/volume-"+u {
		t.Errorf("volume = %+v", v)
	}
}

func TestFailedLVCreateLeavesNothing(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	u := "bbbbbbbb-2222-3333-4444-555555555555"
	s.testHookUUID = u
	f.ExpectFail(5, "", notFound, lvsOf(u)...)
	// vgs counts bytes; LVM wants whole extents, which may not fit.
	f.Expect(vgsReport("3208642560"), vgsArgs...)
	f.ExpectFail(5, "", `  Volume group "blk" has insufficient free space (765 extents): 766 required.`,
		"lvcreate", "--yes", "--name", "volume-"+u, "--size", "3208642560b", "--wipesignatures", "y", "--zero", "y",
		"--addtag", "blk", "--addtag", "blk-name-big", "--addtag", "blk-vol-"+u, "blk")
	f.ExpectFail(5, "", notFound, lvsOf(u)...)
	_, err := s.Create(ctx, CreateOptions{Name: "big", Size: "3060MiB"})
	if err == nil || !strings.Contains(err.Error(), `create volume "big"`) || !strings.Contains(err.Error(), "insufficient free space") {
		t.Fatalf("err = %v", err)
	}
	if _, err := s.Show(ctx, "big"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("row left behind: %v", err)
	}
}

// Real and dry runs check room the same way, before lvcreate.
func TestCreateRefusesWhatCannotFitBeforeLVCreate(t *testing.T) {
	ctx := context.Background()
	for _, dry := range []bool{false, true} {
		f := exectest.New(t, "stor1")
		var plan strings.Builder
		s := newService(t, f, nil)
		if dry {
			s = newService(t, f, &plan)
		}
		u := "bbbbbbbb-2222-3333-4444-555555555555"
		s.testHookUUID = u
		f.ExpectFail(5, "", notFound, lvsOf(u)...)
		f.Expect(vgsReport("3208642560"), vgsArgs...)
		_, err := s.Create(ctx, CreateOptions{Name: "big", Size: "100GiB"})
		if !errors.Is(err, ErrConflict) || !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "volume group blk has 2.99GiB free, 100.00GiB needed") {
			t.Errorf("dry=%v: err = %v, want a no-space conflict", dry, err)
		}
		if _, err := s.Show(ctx, "big"); !errors.Is(err, ErrNotFound) {
			t.Errorf("dry=%v: row left behind: %v", dry, err)
		}
		if plan.Len() != 0 {
			t.Errorf("dry run planned %q", plan.String())
		}
	}
}

func TestBadInputRunsNothing(t *testing.T) {
	ctx := context.Background()
	s := newService(t, exectest.New(t, "stor1"), nil)
	for _, o := range []CreateOptions{
		{Name: "db1", Size: "20"}, {Name: "db1", Size: "0GiB"}, {Name: "db1", Size: "-1GiB"}, {Name: "db1", Size: "20XB"},
		{Name: "db1", Size: "99999999999TiB"}, {Name: "DB1", Size: "1GiB"}, {Name: "-x", Size: "1GiB"},
		{Name: strings.Repeat("a", 64), Size: "1GiB"}, {Name: "a b", Size: "1GiB"}, {Name: "db1", Size: "1GiB", Backend: "nope"},
	} {
		_, err := s.Create(ctx, o)
		if err == nil {
			t.Errorf("%+v: accepted", o)
			continue
		}
		if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNotFound) {
			t.Errorf("%+v: err = %v, want invalid or not found", o, err)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: error is not one line: %q", o, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512MiB": 512 << 20, "20GiB": 20 << 30, "1TiB": 1 << 40, "20G": 20 << 30, "1.5GiB": 3 << 29, "100m": 100 << 20} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestDryRunCreatePrintsPlanAndKeepsStateEmpty(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	var plan strings.Builder
	s := newService(t, f, &plan)
	u := "cccccccc-2222-3333-4444-555555555555"
	s.testHookUUID = u
	f.ExpectFail(5, "", notFound, lvsOf(u)...)
	f.Expect(vgsReport("3208642560"), vgsArgs...)
	if _, err := s.Create(ctx, CreateOptions{Name: "db1", Size: "1GiB"}); err != nil {
		t.Fatal(err)
	}
	want := "stor1: lvcreate --yes --name volume-" + u + " --size 1073741824b --wipesignatures y --zero y --addtag blk --addtag blk-name-db1 --addtag blk-vol-" + u + " blk\n"
	if plan.String() != want {
		t.Errorf("plan = %q\nwant %q", plan.String(), want)
	}
	if vols, _ := s.List(ctx, ListOptions{}); len(vols) != 0 {
		t.Errorf("dry run wrote state: %+v", vols)
	}
}

func insert(t *testing.T, s *Service, name, uuid, status string) {
	t.Helper()
	op, err := s.State.InsertVolume(context.Background(), &state.Volume{UUID: uuid, Name: name, Backend: "lvm-1", SizeBytes: 600 << 20, Status: state.Creating})
	if err != nil {
		t.Fatal(err)
	}
	op.End(context.Background(), nil)
	if status != state.Creating {
		if _, err := s.State.MoveVolume(context.Background(), uuid, state.Move{From: []string{state.Creating}, To: status}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDeleteWipesThenRemoves(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	u := "dddddddd-2222-3333-4444-555555555555"
	insert(t, s, "old", u, state.Available)
	f.Expect(lvsReport(u, "629145600"), lvsOf(u)...)
	dev := "of=/dev/blk/volume-" + u
	for _, step := range [][2]string{{"0", "268435456"}, {"268435456", "268435456"}, {"536870912", "92274688"}} {
		f.Expect("", "dd", "if=/dev/zero", dev, "bs=4M", "seek="+step[0], "count="+step[1], "iflag=count_bytes", "oflag=seek_bytes,direct", "conv=notrunc,fsync", "status=none")
	}
	f.Expect("", "lvremove", "--yes", "blk/volume-"+u)
	res, err := s.Delete(ctx, DeleteOptions{Refs: []string{"old"}, Wipe: true})
	if err != nil || len(res) != 1 || res[0].Status != "deleted" {
		t.Fatalf("res = %+v, err = %v", res, err)
	}
	if _, err := s.Show(ctx, "old"); !errors.Is(err, ErrNotFound) {
		t.Errorf("row still there: %v", err)
	}
}

func TestDeleteRefusesInUseAndReportsPartial(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	u1, u2 := "eeeeeeee-2222-3333-4444-555555555555", "ffffffff-2222-3333-4444-555555555555"
	insert(t, s, "busy", u1, state.InUse)
	insert(t, s, "free", u2, state.Available)
	f.ExpectFail(5, "", notFound, lvsOf(u2)...) // already gone: fine
	res, err := s.Delete(ctx, DeleteOptions{Refs: []string{"busy", "free", "ghost"}})
	if !errors.Is(err, ErrPartial) {
		t.Fatalf("err = %v, want partial", err)
	}
	if res[0].Status != "failed" || !strings.Contains(res[0].Error, "in-use") || !strings.Contains(res[0].Error, "detach it first") {
		t.Errorf("busy: %+v", res[0])
	}
	// Scripts read the status from a short list, and the error apart.
	b, _ := json.Marshal(res)
	if want := `{"volume":"busy","uuid":"` + u1 + `","status":"failed","wiped":false,"error":"volume \"busy\" is in-use: only an available volume can be deleted (detach it first)"}`; !strings.Contains(string(b), want) {
		t.Errorf("JSON %s\nlacks %s", b, want)
	}
	if !strings.Contains(string(b), `{"volume":"free","uuid":"`+u2+`","status":"deleted","wiped":false}`) {
		t.Errorf("JSON %s", b)
	}
	if res[1].Status != "deleted" || !errors.Is(res[2].Err, ErrNotFound) {
		t.Errorf("res = %+v", res)
	}
	v, _ := s.Show(ctx, "busy")
	if v.Status != state.InUse {
		t.Errorf("busy volume moved to %s", v.Status)
	}
	_, err = s.Delete(ctx, DeleteOptions{Refs: []string{"busy"}})
	if !errors.Is(err, ErrConflict) {
		t.Errorf("single in-use delete: err = %v, want conflict", err)
	}
}

func TestFailedRemoveLeavesErrorDeleting(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	u := "99999999-2222-3333-4444-555555555555"
	insert(t, s, "stuck", u, state.Available)
	f.Expect(lvsReport(u, "629145600"), lvsOf(u)...)
	f.ExpectFail(5, "", "  Logical volume blk/volume-"+u+" in use.", "lvremove", "--yes", "blk/volume-"+u)
	_, err := s.Delete(ctx, DeleteOptions{Refs: []string{"stuck"}})
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("err = %v", err)
	}
	v, _ := s.Show(ctx, "stuck")
	if v.Status != state.ErrorDeleting || !strings.Contains(v.LastError, "in use") {
		t.Errorf("volume = %+v", v)
	}
}

// The field names are a contract with scripts: this is what 'blk volume
// show -o json' printed when the state rows carried the tags.
func TestVolumeJSONFieldNames(t *testing.T) {
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	v := volumeOf(state.Volume{UUID: "u", Name: "db1", Backend: "lvm-1", SizeBytes: 1, Status: "in-use", PreviousStatus: "attaching",
		Thin: true, Source: "s", Path: "/dev/blk/volume-u", CreatedAt: at, UpdatedAt: at, LastError: "e", SnapshotCount: 2,
		Attachment: &state.Attachment{Instance: "web1", Host: "comp1", Device: "vdb", DevicePath: "/dev/disk/by-path/x", AttachedAt: at}})
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	const ts = `"2026-11-21T10:00:00Z"`
	want := `{"uuid":"u","name":"db1","backend":"lvm-1","size_bytes":1,"status":"in-use","previous_status":"attaching","thin":true,` +
		`"source":"s","path":"/dev/blk/volume-u","created_at":` + ts + `,"updated_at":` + ts + `,"last_error":"e","snapshot_count":2,` +
		`"attachment":{"instance":"web1","host":"comp1","device":"vdb","device_path":"/dev/disk/by-path/x","attached_at":` + ts + `}}`
	if string(b) != want {
		t.Errorf("JSON\n%s\nwant\n%s", b, want)
	}
	y, err := yaml.Marshal(volumeOf(state.Volume{UUID: "u"}))
	if err != nil || !strings.Contains(string(y), "uuid: u\n") || !strings.Contains(string(y), "size_bytes: 0\n") || !strings.Contains(string(y), "last_error: \"\"\n") {
		t.Errorf("YAML %s %v", y, err)
	}
}

// A create whose LV cannot be removed keeps its row, in error: without the
// row, the LV would be nobody's.
func TestCreateThatCannotRemoveItsLVKeepsItsRow(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	u := "cccccccc-2222-3333-4444-555555555555"
	s.testHookUUID = u
	f.ExpectFail(5, "", notFound, lvsOf(u)...)
	f.Expect(vgsReport("10737418240"), vgsArgs...)
	f.ExpectFail(5, "", "  device-mapper: reload ioctl failed: Invalid argument",
		"lvcreate", "--yes", "--name", "volume-"+u, "--size", "1073741824b", "--wipesignatures", "y", "--zero", "y",
		"--addtag", "blk", "--addtag", "blk-name-db9", "--addtag", "blk-vol-"+u, "blk")
	f.Expect(lvsReport(u, "1073741824"), lvsOf(u)...) // lvcreate failed late: the LV is there
	f.ExpectFail(5, "", `  Logical volume blk/volume-`+u+` in use.`, "lvremove", "--yes", "blk/volume-"+u)
	_, err := s.Create(ctx, CreateOptions{Name: "db9", Size: "1GiB"})
	if err == nil || !strings.Contains(err.Error(), "blk volume delete db9") {
		t.Fatalf("err = %v", err)
	}
	v, gerr := s.Show(ctx, "db9")
	if gerr != nil || v.Status != state.Error || !strings.Contains(v.LastError, "could not be removed") {
		t.Fatalf("volume %+v (%v): want it kept in error", v, gerr)
	}
}

// A delete --wipe interrupted part-way is finished wiped, even when the rerun
// forgets --wipe: the operator meant that data destroyed.
func TestInterruptedWipeIsRememberedByTheNextDelete(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	u := "abababab-2222-3333-4444-555555555555"
	insert(t, s, "secret", u, state.Available)
	dd := func(seek, count string) []string {
		return []string{"dd", "if=/dev/zero", "of=/dev/blk/volume-" + u, "bs=4M", "seek=" + seek, "count=" + count,
			"iflag=count_bytes", "oflag=seek_bytes,direct", "conv=notrunc,fsync", "status=none"}
	}
	f.Expect(lvsReport(u, "536870912"), lvsOf(u)...)
	f.Expect("", dd("0", "268435456")...)
	// Ctrl-C during the second step.
	f.Handle(func(args []string) (string, string, int, bool) {
		if args[0] == "dd" && args[4] == "seek=268435456" && ctx.Err() == nil {
			cancel()
			return "", "dd: interrupted", 130, true
		}
		return "", "", 0, false
	})
	if _, err := s.Delete(ctx, DeleteOptions{Refs: []string{"secret"}, Wipe: true}); err == nil {
		t.Fatal("interrupted delete succeeded")
	}
	if v, _ := s.Show(context.Background(), "secret"); v.Status != state.ErrorDeleting {
		t.Fatalf("status %s, want error_deleting", v.Status)
	}
	f.Handle(nil)
	f.Expect(lvsReport(u, "536870912"), lvsOf(u)...)
	f.Expect("", dd("0", "268435456")...)
	f.Expect("", dd("268435456", "268435456")...)
	f.Expect("", "lvremove", "--yes", "blk/volume-"+u)
	res, err := s.Delete(context.Background(), DeleteOptions{Refs: []string{"secret"}}) // no --wipe
	if err != nil || !res[0].Wiped || !strings.Contains(res[0].Note, "wiping it first") {
		t.Fatalf("rerun: %+v, %v", res, err)
	}
}

// Free-form values are kept byte for byte, so they must be text: a path or
// an instance with NUL or non-UTF-8 bytes is bad input, before anything
// is recorded (a rerun must find what the first run wrote).
func TestFreeFormValuesMustBeText(t *testing.T) {
	ctx := context.Background()
	s := newService(t, exectest.New(t, "stor1"), nil)
	if _, err := s.Create(ctx, CreateOptions{Name: "img1", Size: "1GiB", FromImage: "/srv/images/caf\xe9.qcow2"}); !errors.Is(err, ErrInvalid) ||
		!strings.Contains(err.Error(), "--from-image") {
		t.Errorf("create --from-image with Latin-1: %v", err)
	}
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web\x001", Bus: "virtio"}); !errors.Is(err, ErrInvalid) ||
		!strings.Contains(err.Error(), "--instance") {
		t.Errorf("attach --instance with a NUL: %v", err)
	}
	if vols, _ := s.List(ctx, ListOptions{}); len(vols) != 0 {
		t.Errorf("recorded %d volumes", len(vols))
	}
}
