package hypervisor

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// oneDomain is libvirt with a domain "web1" whose XML never changes.
type oneDomain struct{ xml string }

func (d oneDomain) DomainXML(context.Context, string, bool) (string, error) { return d.xml, nil }
func (oneDomain) AttachDevice(context.Context, string, string, Flags) error {
	return errors.New("real attach in a test")
}
func (oneDomain) DetachDevice(context.Context, string, string, Flags) error {
	return errors.New("real detach in a test")
}
func (oneDomain) Close() error { return nil }

func domainWith(t *testing.T, d Disk) string {
	t.Helper()
	x, err := d.XML()
	if err != nil {
		t.Fatal(err)
	}
	return "<domain type='kvm'><name>web1</name><devices>" + x + "</devices></domain>"
}

func TestWaitGoneReportsAGuestThatKeepsTheDisk(t *testing.T) {
	h := oneDomain{domainWith(t, Disk{Source: "/dev/sdb", Target: "vdb", Bus: "virtio", Serial: "s1"})}
	err := WaitGone(context.Background(), h, "web1", "s1", 300*time.Millisecond)
	if !errors.Is(err, ErrNotReleased) || !strings.Contains(err.Error(), "disk vdb is still in web1 after 300ms") {
		t.Errorf("err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WaitGone(ctx, h, "web1", "s1", time.Hour); !errors.Is(err, context.Canceled) || errors.Is(err, ErrNotReleased) {
		t.Errorf("cancelled: %v", err)
	}
	if err := WaitGone(context.Background(), h, "web1", "other", time.Hour); err != nil {
		t.Errorf("absent disk: %v", err)
	}
}

func TestDryRunPrintsChangesAndReadsSeeTheDetach(t *testing.T) {
	ctx := context.Background()
	disk := Disk{Source: "/dev/sdb", Target: "vdb", Bus: "virtio", Serial: "s1"}
	var out strings.Builder
	d := NewDryRun(oneDomain{domainWith(t, disk)}, "comp1", &out, &sync.Mutex{})
	x, _ := disk.XML()
	if err := d.AttachDevice(ctx, "web1", x, Flags{Live: true, Persistent: true}); err != nil {
		t.Fatal(err)
	}
	if err := d.DetachDevice(ctx, "web1", x, Flags{Persistent: true}); err != nil {
		t.Fatal(err)
	}
	one := strings.Join(strings.Fields(x), " ")
	if want := "comp1: libvirt attach-device web1 --live --config " + one + "\ncomp1: libvirt detach-device web1 --config " + one + "\n"; out.String() != want {
		t.Errorf("plan %q\nwant %q", out.String(), want)
	}
	for _, c := range []struct {
		persistent bool
		want       string
	}{{true, ""}, {false, "vdb"}} {
		x, err := d.DomainXML(ctx, "web1", c.persistent)
		if err != nil {
			t.Fatal(err)
		}
		if dev, _ := DiskBySerial(x, "s1"); dev != c.want {
			t.Errorf("persistent=%v: disk %q, want %q", c.persistent, dev, c.want)
		}
	}
}
