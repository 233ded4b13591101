package hypervisor

import (
	"context"
	"errors"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
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
func (oneDomain) FSFreeze(context.Context, string) (int, error) {
	return 0, errors.New("real fsfreeze in a test")
}
func (oneDomain) FSThaw(context.Context, string) (int, error) {
	return 0, errors.New("real fsthaw in a test")
}

func (oneDomain) Active(context.Context, string) (bool, error) { return true, nil }
func (oneDomain) DefineXML(context.Context, string) error {
	return errors.New("real define in a test")
}
func (oneDomain) BlockResize(context.Context, string, string, int64) error {
	return errors.New("real blockresize in a test")
}
func (oneDomain) Paused(context.Context, string) (bool, error) { return false, nil }
func (oneDomain) Suspend(context.Context, string) error {
	return errors.New("real suspend in a test")
}
func (oneDomain) Resume(context.Context, string) error {
	return errors.New("real resume in a test")
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

// A libvirtd that accepts and never answers: go-libvirt's calls take no
// context, so blk must give up on the connection itself when ctx ends.
func TestDialGivesUpWithTheContextOnASilentLibvirtd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var silent net.Conn
	start := time.Now()
	_, err := Dial(ctx, "comp1", func(context.Context, string) (net.Conn, error) {
		c, s := net.Pipe() // s is never read: every write on c blocks
		silent = s
		return c, nil
	})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Fatalf("err %v after %v: want the deadline, at once", err, time.Since(start))
	}
	if silent != nil {
		silent.Close()
	}
}

func TestACallOutlivingItsContextKillsTheConnection(t *testing.T) {
	c, s := net.Pipe()
	defer s.Close()
	v := &Libvirt{host: "comp1", conn: c}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	ended := make(chan error, 1)
	err := v.call(ctx, func() error {
		_, rerr := c.Read(make([]byte, 1)) // a reply that never comes
		ended <- rerr
		return rerr
	})
	if !errors.Is(err, context.DeadlineExceeded) || !v.Dead() {
		t.Fatalf("err %v, dead %v", err, v.Dead())
	}
	select {
	case <-ended: // the hung call ended when its connection was closed
	case <-time.After(2 * time.Second):
		t.Fatal("the hung call is still running")
	}
	if err := v.call(context.Background(), func() error { return nil }); !errors.Is(err, ErrConnClosed) {
		t.Errorf("a call on the dead connection: %v, want ErrConnClosed", err)
	}
}

// libvirt's codes for a domain whose agent cannot freeze, as go-libvirt
// numbers them.
func TestAgentErrorsAreTyped(t *testing.T) {
	for code, want := range map[uint32]error{74: ErrNoAgent, 86: ErrNoAgent, 55: ErrNotRunning} {
		err := agentError(libvirt.Error{Code: code, Message: "from libvirt"})
		if !errors.Is(err, want) || !strings.Contains(err.Error(), "from libvirt") {
			t.Errorf("code %d: %v", code, err)
		}
	}
	if err := agentError(libvirt.Error{Code: 1, Message: "internal"}); errors.Is(err, ErrNoAgent) || errors.Is(err, ErrNotRunning) {
		t.Errorf("code 1 typed: %v", err)
	}
}
func TestFreeFirstBoot(t *testing.T) {
	const plain = `<domain type="kvm"><name>d</name><devices><disk type="block" device="disk"><target dev="vda" bus="virtio"></target></disk></devices></domain>`
	if out, changed, err := FreeFirstBoot(plain); err != nil || changed || out != plain {
		t.Errorf("nothing to free: changed=%v err=%v", changed, err)
	}
	// Per-device orders move one down, keeping their order.
	perDevice := `<domain type="kvm"><name>d</name><devices>` +
		`<disk type="block" device="disk"><target dev="vda" bus="virtio"></target><boot order="1"></boot></disk>` +
		`<disk type="file" device="cdrom"><target dev="sda" bus="sata"></target><boot order="2"></boot></disk></devices></domain>`
	out, changed, err := FreeFirstBoot(perDevice)
	out = compact(out)
	if err != nil || !changed || !strings.Contains(out, `<target dev="vda" bus="virtio"></target><boot order="2"></boot>`) ||
		!strings.Contains(out, `<target dev="sda" bus="sata"></target><boot order="3"></boot>`) {
		t.Errorf("per-device: changed=%v err=%v\n%s", changed, err, out)
	}
	// os/boot becomes per-device orders from 2: cdrom first, then hd.
	osBoot := `<domain type="kvm"><name>d</name><os><type>hvm</type><boot dev="cdrom"></boot><boot dev="hd"></boot></os><devices>` +
		`<disk type="block" device="disk"><target dev="vda" bus="virtio"></target></disk>` +
		`<disk type="file" device="cdrom"><target dev="sda" bus="sata"></target></disk></devices></domain>`
	out, changed, err = FreeFirstBoot(osBoot)
	out = compact(out)
	if err != nil || !changed || strings.Contains(out, `<boot dev=`) ||
		!strings.Contains(out, `<target dev="sda" bus="sata"></target><boot order="2"></boot>`) ||
		!strings.Contains(out, `<target dev="vda" bus="virtio"></target><boot order="3"></boot>`) {
		t.Errorf("os/boot: changed=%v err=%v\n%s", changed, err, out)
	}
}

// compact drops the indentation libvirtxml marshals with.
func compact(x string) string { return regexp.MustCompile(`>\s+<`).ReplaceAllString(x, "><") }

// lab-boot's case: no disk, libvirt's default <boot dev='hd'/>. The disk
// comes in with order 1 and the os/boot element goes.
func TestWithBootDiskOnADomainWithNoDisk(t *testing.T) {
	const dom = `<domain type="qemu"><name>lab-boot</name><os><type>hvm</type><boot dev="hd"></boot></os><devices></devices></domain>`
	disk, err := Disk{Source: "/dev/sdb", Target: "vda", Bus: "virtio", Serial: "s1", BootOrder: 1}.XML()
	if err != nil {
		t.Fatal(err)
	}
	out, err := WithBootDisk(dom, disk)
	out = compact(out)
	if err != nil || strings.Contains(out, "<boot dev=") || !strings.Contains(out, `<boot order="1"></boot>`) || !strings.Contains(out, "/dev/sdb") {
		t.Errorf("err %v\n%s", err, out)
	}
}

// An attach --boot defines the persistent XML back: read without its
// secrets, the define would drop the console's password. The dry run that
// prints the define never prints it.
func TestPersistentXMLKeepsSecretsAndTheDryRunMasksThem(t *testing.T) {
	if f := xmlFlags(true); f&libvirt.DomainXMLSecure == 0 || f&libvirt.DomainXMLInactive == 0 {
		t.Errorf("persistent XML flags %d: want inactive and secure", f)
	}
	var out strings.Builder
	d := NewDryRun(oneDomain{"<domain/>"}, "comp1", &out, &sync.Mutex{})
	x := `<domain type="kvm"><name>web1</name><devices><graphics type="vnc" port="-1" passwd="s3cr&#34;et'x"/>` +
		`<graphics type='spice' passwd='0ther'/></devices></domain>`
	if err := d.DefineXML(context.Background(), x); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cr", "et", "x\"", "0ther"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("the dry run printed %q: %s", secret, out.String())
		}
	}
	if !strings.Contains(out.String(), `passwd="********"`) {
		t.Errorf("plan %q does not show the password masked", out.String())
	}
}
