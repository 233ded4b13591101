package volume

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/internal/pgtest"
	"github.com/blk-project/blk/state"
)

const gib = int64(1) << 30

func TestWeighFiltersAndWeighsAsCinder(t *testing.T) {
	lvmThin := BackendInfo{Name: "lvm-1", Type: "lvm", FreeBytes: 2 * gib, PoolSizeBytes: 10 * gib,
		UsedPercent: 40, MetadataPercent: 5, ProvisionedBytes: 150 * gib, VirtualFreeBytes: 50 * gib}
	nfsInfo := BackendInfo{Name: "nfs-1", Type: "nfs", SizeBytes: 100 * gib, FreeBytes: 30 * gib, UsedPercent: 70,
		ProvisionedBytes: 500 * gib, VirtualFreeBytes: 1500 * gib}
	with := func(i BackendInfo, f func(*BackendInfo)) BackendInfo { f(&i); return i }
	for _, c := range []struct {
		name string
		info BackendInfo
		b    config.Backend
		size int64
		thin bool
		fits bool
		free int64
		why  string
	}{
		{"thick fits in the group's free space", lvmThin, config.Backend{}, 2 * gib, false, true, 2 * gib, ""},
		{"thick one byte over", lvmThin, config.Backend{}, 2*gib + 1, false, false, 2 * gib, "volume group has 2GiB free, 2.00GiB needed"},
		{"thin weighs virtual free", lvmThin, config.Backend{}, 50 * gib, true, true, 50 * gib, ""},
		{"thin past the ratio", lvmThin, config.Backend{}, 50*gib + 1, true, false, 50 * gib, "150GiB provisioned plus 50.00GiB would pass 20 × 10GiB (max_over_subscription_ratio)"},
		{"thin pool data at the limit", with(lvmThin, func(i *BackendInfo) { i.UsedPercent = 90 }), config.Backend{}, gib, true, false, 50 * gib,
			"thin pool 90.0% used, at or over max_pool_usage_percent 90"},
		{"thin pool data under a raised limit", with(lvmThin, func(i *BackendInfo) { i.UsedPercent = 90 }), config.Backend{MaxPoolUsagePercent: 95}, gib, true, true, 50 * gib, ""},
		{"thin pool metadata full", with(lvmThin, func(i *BackendInfo) { i.MetadataPercent = 99.5 }), config.Backend{}, gib, true, false, 50 * gib,
			"thin pool metadata 99.5% used"},
		{"thin pool of no size", with(lvmThin, func(i *BackendInfo) { i.PoolSizeBytes = 0 }), config.Backend{}, gib, true, false, 0, "thin pool reports no size"},
		{"sparse file within the ratio", nfsInfo, config.Backend{}, 1500 * gib, true, true, 1500 * gib, ""},
		{"sparse file past it", nfsInfo, config.Backend{}, 1501 * gib, true, false, 1500 * gib, "500GiB provisioned plus 1.47TiB would pass 20 × 100GiB"},
		{"export nearly full", with(nfsInfo, func(i *BackendInfo) { i.UsedPercent = 92 }), config.Backend{}, gib, true, false, 1500 * gib, "export 92.0% used"},
		{"preallocated file needs real free space", nfsInfo, config.Backend{}, 31 * gib, false, false, 30 * gib, "export has 30GiB free, 31GiB needed"},
		{"host down", with(nfsInfo, func(i *BackendInfo) { i.Error = "ssh stor2: connection refused" }), config.Backend{}, gib, true, false, 0,
			"skipped: ssh stor2: connection refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := weigh(c.info, c.b, c.size, c.thin)
			if got.Fits != c.fits || got.FreeBytes != c.free || !strings.Contains(got.Reason, c.why) || (c.fits && got.Reason != "") {
				t.Errorf("got fits %v free %d reason %q; want %v %d %q", got.Fits, got.FreeBytes, got.Reason, c.fits, c.free, c.why)
			}
		})
	}
}

func TestThinCapacityUsesTheRatio(t *testing.T) {
	var i BackendInfo
	thinCapacity(&i, 1.5, 10*gib, 12*gib)
	if i.VirtualFreeBytes != 3*gib || i.ProvisionedBytes != 12*gib || i.MaxOverSubscriptionRatio != 1.5 {
		t.Errorf("%+v", i)
	}
}

func TestPlacingOnlyWhenNothingNamesABackend(t *testing.T) {
	two := map[string]config.Backend{"lvm-1": {Type: "lvm"}, "nfs-1": {Type: "nfs"}}
	for _, c := range []struct {
		name     string
		backends map[string]config.Backend
		def      string
		o        CreateOptions
		placing  bool
		err      string
	}{
		{"--backend wins over auto", two, "auto", CreateOptions{Backend: "nfs-1"}, false, ""},
		{"a named default is used", two, "lvm-1", CreateOptions{}, false, ""},
		{"auto places", two, "auto", CreateOptions{}, true, ""},
		{"several and no default place", two, "", CreateOptions{}, true, ""},
		{"--backend-type places over a named default", two, "lvm-1", CreateOptions{BackendType: "nfs"}, true, ""},
		{"one backend is simply used", map[string]config.Backend{"lvm-1": {Type: "lvm"}}, "", CreateOptions{}, false, ""},
		{"--backend and a type it is not", two, "", CreateOptions{Backend: "nfs-1", BackendType: "lvm"}, false, `backend "nfs-1" is nfs, not lvm`},
		{"unknown type", two, "", CreateOptions{BackendType: "ceph"}, false, `--backend-type "ceph": want lvm or nfs`},
		{"unknown backend", two, "", CreateOptions{Backend: "x"}, false, `backend "x" is not configured`},
		{"no backend of the type", map[string]config.Backend{"lvm-1": {Type: "lvm"}}, "", CreateOptions{BackendType: "nfs"}, false, "no nfs backend is configured"},
	} {
		cfg := &config.Config{Backends: c.backends, Defaults: config.Defaults{Backend: c.def}}
		placing, err := Placing(cfg, c.o)
		if placing != c.placing || (err == nil) != (c.err == "") || (err != nil && (!strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrInvalid))) {
			t.Errorf("%s: placing %v, err %v", c.name, placing, err)
		}
	}
}

// downRunner is a host that does not answer.
type downRunner struct{ name string }

func (d downRunner) Host() string { return d.name }
func (d downRunner) Run(context.Context, exec.Cmd) (exec.Result, error) {
	return exec.Result{}, fmt.Errorf("ssh %s (192.0.2.99:22): dial tcp 192.0.2.99:22: connect: connection refused", d.name)
}
func (d downRunner) DialUnix(context.Context, string) (net.Conn, error) {
	return nil, errors.New("down")
}
func (d downRunner) Close() error { return nil }

func thinPoolReport(size, data, meta string, thin ...string) string {
	lvs := `{"lv_name":"pool","lv_size":"` + size + `","pool_lv":"","lv_attr":"twi-aotz--","data_percent":"` + data + `","metadata_percent":"` + meta + `"}`
	for _, s := range thin {
		lvs += `,{"lv_name":"volume-x` + s + `","lv_size":"` + s + `","pool_lv":"pool","lv_attr":"Vwi-a-tz--","data_percent":"1.00","metadata_percent":""}`
	}
	return `{"report":[{"lv":[` + lvs + `]}]}`
}

var thinPoolArgs = []string{"lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o",
	"lv_name,lv_size,pool_lv,lv_attr,data_percent,metadata_percent", "--select", `lv_name="pool" || pool_lv="pool"`, "blk"}

// placeService has lvm-1 on stor1, lvm-2 on stor2, lvm-3 on stor3 (down)
// and nfs-1 on stor1; no default backend.
func placeService(t *testing.T) (*Service, map[string]*exectest.Fake) {
	t.Helper()
	cfg := &config.Config{
		State: pgtest.State(t),
		Hosts: map[string]config.Host{"stor1": {Address: "192.0.2.10"}, "stor2": {Address: "192.0.2.11"}, "stor3": {Address: "192.0.2.99"}},
		Backends: map[string]config.Backend{
			"lvm-1": {Type: "lvm", Host: "stor1", VG: "blk", ThinPool: "pool", Portal: "192.0.2.10:3260", IQNPrefix: "iqn.2026-11.org.example.blk"},
			"lvm-2": {Type: "lvm", Host: "stor2", VG: "blk", ThinPool: "pool", Portal: "192.0.2.11:3260", IQNPrefix: "iqn.2026-11.org.example.blk",
				MaxOverSubscriptionRatio: 2},
			"lvm-3": {Type: "lvm", Host: "stor3", VG: "blk", Portal: "192.0.2.99:3260", IQNPrefix: "iqn.2026-11.org.example.blk"},
			"nfs-1": {Type: "nfs", Host: "stor1", Export: "192.0.2.10:/srv/blk", Path: "/srv/blk"},
		},
	}
	st, err := state.Open(context.Background(), cfg.State, state.ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fakes := map[string]*exectest.Fake{"stor1": exectest.New(t, "stor1"), "stor2": exectest.New(t, "stor2")}
	hs := NewHosts(cfg, nil, nil)
	hs.New = func(name string, _ config.Host) exec.Runner {
		if f, ok := fakes[name]; ok {
			return f
		}
		return downRunner{name}
	}
	return NewService(cfg, "test.yaml", st, hs), fakes
}

func vgsFree(size, free string) string {
	return `{"report":[{"vg":[{"vg_name":"blk","vg_size":"` + size + `","vg_free":"` + free + `","lv_count":"3"}]}]}`
}

// Every backend is read, even where the volume cannot go: the dry run
// shows each one's capacity.
func expectCapacity(fakes map[string]*exectest.Fake, nfs bool) {
	fakes["stor1"].Expect(vgsFree("21474836480", "3221225472"), vgsArgs...)                               // 3 GiB free
	fakes["stor1"].Expect(thinPoolReport("10737418240", "95.00", "10.00", "1073741824"), thinPoolArgs...) // pool nearly full
	if nfs {                                                                                              // 100 GiB, 50 GiB free
		fakes["stor1"].Expect("1B-blocks Avail\n107374182400 53687091200\n", "df", "--block-size=1", "--output=size,avail", "/srv/blk")
	}
	fakes["stor2"].Expect(vgsFree("21474836480", "5368709120"), vgsArgs...) // 5 GiB free
	// Ratio 2 over 10 GiB, 12 GiB promised: 8 GiB virtual free.
	fakes["stor2"].Expect(thinPoolReport("10737418240", "20.00", "5.00", "6442450944", "6442450944"), thinPoolArgs...)
}

func TestPlaceThickTakesTheMostFreeAndNamesTheHostDown(t *testing.T) {
	s, fakes := placeService(t)
	expectCapacity(fakes, false) // nfs-1, ruled out by type, is not read
	pl, err := s.Place(context.Background(), CreateOptions{Name: "db1", Size: "2GiB", BackendType: "lvm"})
	if err != nil {
		t.Fatal(err)
	}
	if pl.Backend != "lvm-2" || len(pl.Candidates) != 3 {
		t.Fatalf("placement %+v", pl)
	}
	down := pl.Candidates[2]
	if down.Backend != "lvm-3" || down.Fits || !strings.Contains(down.Reason, "skipped: ") || !strings.Contains(down.Reason, "connection refused") {
		t.Errorf("lvm-3: %+v", down)
	}
	if c := pl.Candidates[0]; !c.Fits || c.FreeBytes != 3*gib || c.Thin {
		t.Errorf("lvm-1: %+v", c)
	}
}

// Thin: lvm-1's pool is over the usage limit, lvm-2 has 8 GiB of virtual
// free, the export 2 TiB (20 × 100 GiB, nothing provisioned): nfs-1 wins.
func TestPlaceThinWeighsVirtualFree(t *testing.T) {
	s, fakes := placeService(t)
	expectCapacity(fakes, true)
	pl, err := s.Place(context.Background(), CreateOptions{Name: "db1", Size: "8GiB", Thin: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		backend string
		fits    bool
		free    int64
		why     string
	}{
		{"lvm-1", false, 200*gib - gib, "thin pool 95.0% used"},
		{"lvm-2", true, 8 * gib, ""},
		{"lvm-3", false, 0, "has no thin_pool"},
		{"nfs-1", true, 2000 * gib, ""},
	}
	for i, w := range want {
		c := pl.Candidates[i]
		if c.Backend != w.backend || c.Fits != w.fits || c.FreeBytes != w.free || !strings.Contains(c.Reason, w.why) {
			t.Errorf("candidate %d = %+v, want %+v", i, c, w)
		}
	}
	if pl.Backend != "nfs-1" {
		t.Errorf("chose %q", pl.Backend)
	}
}

func TestPlaceWhenNothingFits(t *testing.T) {
	ctx := context.Background()
	s, fakes := placeService(t)
	expectCapacity(fakes, false)
	_, err := s.Place(ctx, CreateOptions{Name: "db1", Size: "6GiB", BackendType: "lvm"})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "lvm-2: volume group has 5GiB free") ||
		!strings.Contains(err.Error(), "lvm-3: skipped: ") {
		t.Errorf("no room: err = %v", err)
	}
	// Preallocated files only go to nfs: nothing else is even asked.
	s, _ = placeService(t)
	s.Config.Backends = map[string]config.Backend{"lvm-3": s.Config.Backends["lvm-3"]}
	if _, err := s.Place(ctx, CreateOptions{Name: "db1", Size: "1GiB", Preallocate: true}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad request: err = %v", err)
	}
	// Only a host that does not answer: a failure to retry, not a conflict.
	if _, err := s.Place(ctx, CreateOptions{Name: "db1", Size: "1GiB"}); err == nil || errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalid) {
		t.Errorf("host down: err = %v", err)
	}
}

// A killed create, run again, is finished on the backend it began on, and
// no capacity is asked for.
func TestPlacedCreateResumesWhereItBegan(t *testing.T) {
	ctx := context.Background()
	s, fakes := placeService(t)
	u := "cccccccc-2222-3333-4444-555555555555"
	s.testHookUUID = u
	op, err := s.State.InsertVolume(ctx, &state.Volume{UUID: u, Name: "db1", Backend: "lvm-1", SizeBytes: gib, Status: state.Creating})
	if err != nil {
		t.Fatal(err)
	}
	op.End(ctx, errors.New("killed"))
	fakes["stor1"].Expect(lvsReport(u, "1073741824"), lvsOf(u)...)
	v, err := s.Create(ctx, CreateOptions{Name: "db1", Size: "1GiB"})
	if err != nil || v.Backend != "lvm-1" || v.Status != state.Available {
		t.Fatalf("%+v %v", v, err)
	}
}

func TestBackendListShowsProvisionedAgainstFree(t *testing.T) {
	s, fakes := placeService(t)
	expectCapacity(fakes, true)
	infos, err := s.Backends(context.Background())
	if err == nil || !strings.Contains(err.Error(), `backend "lvm-3"`) || len(infos) != 4 {
		t.Fatalf("%+v %v", infos, err)
	}
	if b := infos[1]; b.ProvisionedBytes != 12*gib || b.VirtualFreeBytes != 8*gib || b.MaxOverSubscriptionRatio != 2 ||
		b.UsedPercent != 20 || b.MetadataPercent != 5 || b.PoolUsedBytes != 2*gib {
		t.Errorf("lvm-2 = %+v", b)
	}
	if b := infos[3]; b.VirtualFreeBytes != 2000*gib || b.UsedPercent != 50 || b.MaxOverSubscriptionRatio != 20 {
		t.Errorf("nfs-1 = %+v", b)
	}
	if b := infos[2]; !strings.Contains(b.Error, "connection refused") {
		t.Errorf("lvm-3 = %+v", b)
	}
}
