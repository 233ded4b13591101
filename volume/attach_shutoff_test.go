package volume

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/state"
	"libvirt.org/go/libvirtxml"
)

// A shut-off domain gets the disk in its persistent definition only, and
// the session is made so it can start with it; detach is config-only too,
// with no guest to wait for.
func TestAttachAndDetachAShutOffDomain(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	hv := newFakeHV("web1")
	hv.shutOff["web1"] = true
	s, _, _ := attachService(t, w, hv)
	v, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"})
	if err != nil || v.Status != state.InUse {
		t.Fatalf("attach = %+v, %v", v, err)
	}
	if !slices.Equal(hv.calls, []string{"attach web1 --config"}) {
		t.Errorf("libvirt calls = %q, want a config-only attach", hv.calls)
	}
	if len(w.sessions) != 1 || len(w.targets) != 1 {
		t.Errorf("no session for the domain to start with: %s", w.empty())
	}
	hv.calls = nil
	res, err := s.Detach(ctx, DetachOptions{Volume: "db1"})
	if err != nil || res.Volume.Status != state.Available {
		t.Fatalf("detach = %+v, %v", res, err)
	}
	if !slices.Equal(hv.calls, []string{"detach web1 --config"}) {
		t.Errorf("libvirt calls = %q, want a config-only detach", hv.calls)
	}
	if x, _ := hv.DomainXML(ctx, "web1", true); strings.Contains(x, "<serial>") {
		t.Error("disk still in the definition")
	}
	if left := w.empty(); left != "" {
		t.Errorf("detach left %s", left)
	}
}

func bootOrders(t *testing.T, hv *fakeHV) (map[string]uint, int) {
	t.Helper()
	x, _ := hv.DomainXML(context.Background(), "web1", true)
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	orders := map[string]uint{}
	for _, disk := range d.Devices.Disks {
		if disk.Boot != nil {
			orders[disk.Target.Dev] = disk.Boot.Order
		}
	}
	osBoots := 0
	if d.OS != nil {
		osBoots = len(d.OS.BootDevices)
	}
	return orders, osBoots
}

// --boot: the volume gets boot order 1; libvirt refuses per-device orders
// beside <os><boot dev=...>, so those become per-device orders after it.
func TestAttachBootMakesTheVolumeTheFirstBootDevice(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	hv := newFakeHV("web1")
	hv.shutOff["web1"] = true
	hv.domains["web1"].OS = &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Type: "hvm"},
		BootDevices: []libvirtxml.DomainBootDevice{{Dev: "network"}, {Dev: "hd"}}}
	hv.domains["web1"].Devices.Interfaces = []libvirtxml.DomainInterface{{Source: &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: "default"}}}}
	s, _, _ := attachService(t, w, hv)
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Boot: true}); err != nil {
		t.Fatal(err)
	}
	// One definition with the disk in it: a define and an attach after it
	// would meet libvirt's default <boot dev='hd'/> on a domain left with
	// no boot element (lab-boot, a domain with no disk, did).
	if !slices.Equal(hv.calls, []string{"define web1"}) {
		t.Errorf("libvirt calls = %q", hv.calls)
	}
	orders, osBoots := bootOrders(t, hv)
	if osBoots != 0 || orders["vdb"] != 1 || orders["vda"] != 3 {
		t.Errorf("disk boot orders %v, %d os/boot elements; want vdb 1, vda 3 (after the network's 2), none", orders, osBoots)
	}
	if b := hv.domains["web1"].Devices.Interfaces[0].Boot; b == nil || b.Order != 2 {
		t.Errorf("interface boot = %+v, want order 2", b)
	}
	rec, _ := s.State.Attachment(ctx, volUUID)
	if !rec.Conn.Boot {
		t.Error("the attachment does not record that the volume is the boot disk")
	}
}

// A refused --boot definition leaves the domain's definition as it was
// and rolls back the export and the session.
func TestFailedBootAttachRestoresTheDefinition(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	hv := newFakeHV("web1")
	hv.shutOff["web1"] = true
	hv.domains["web1"].OS = &libvirtxml.DomainOS{BootDevices: []libvirtxml.DomainBootDevice{{Dev: "hd"}}}
	hv.failOn = "define"
	s, _, _ := attachService(t, w, hv)
	_, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Boot: true})
	checkRolledBack(t, "attach --boot", s, w, hv, err)
	if orders, osBoots := bootOrders(t, hv); osBoots != 1 || len(orders) != 0 {
		t.Errorf("definition not restored: disk orders %v, %d os/boot elements", orders, osBoots)
	}
}

func TestAttachBootRefusesARunningDomain(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	hv := newFakeHV("web1")
	s, _, _ := attachService(t, w, hv)
	_, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Boot: true})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "shut it down first") {
		t.Fatalf("err = %v", err)
	}
	if v, _ := s.State.Volume(ctx, "db1"); v.Status != state.Available || w.count != 0 || len(hv.calls) != 0 {
		t.Errorf("volume %s, %d commands, libvirt %q: a refused attach did something", v.Status, w.count, hv.calls)
	}
}

// startedAfter is a hypervisor whose domains start after n Active calls:
// the operator started the instance while the attach ran.
type startedAfter struct {
	*fakeHV
	n *int
}

func (h startedAfter) Active(ctx context.Context, name string) (bool, error) {
	if *h.n--; *h.n < 0 {
		h.shutOff[name] = false
	}
	return h.fakeHV.Active(ctx, name)
}

// Started between --boot's check and the define, the domain would run
// without the disk while blk records it attached: refused and rolled back.
func TestAttachBootRefusesADomainStartedMeanwhile(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	hv := newFakeHV("web1")
	hv.shutOff["web1"] = true
	s, _, _ := attachService(t, w, hv)
	n := 1
	s.Hosts.NewHypervisor = func(context.Context, string, exec.Runner) (hypervisor.Hypervisor, error) {
		return startedAfter{hv, &n}, nil
	}
	_, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Boot: true})
	if !errors.Is(err, ErrConflict) {
		t.Errorf("attach --boot to a domain started meanwhile: %v", err)
	}
	if slices.Contains(hv.calls, "define web1") {
		t.Errorf("libvirt calls = %q: the running domain was redefined", hv.calls)
	}
	if v, _ := s.State.Volume(ctx, "db1"); v.Status != state.Available {
		t.Errorf("volume %s after the refusal", v.Status)
	}
}
