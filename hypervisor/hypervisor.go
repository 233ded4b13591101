// Package hypervisor talks to libvirtd on a compute host with go-libvirt,
// over its unix socket: directly, or tunnelled through blk's SSH connection
// to that host. Disk XML is built and read with libvirtxml.
package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/blk-project/blk/internal/retry"
	libvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// Socket is libvirtd's read-write socket.
const Socket = "/var/run/libvirt/libvirt-sock"

// ErrNoDomain is a domain the host does not know.
var ErrNoDomain = errors.New("no such domain")

// Hypervisor is what blk needs of libvirt on one host.
type Hypervisor interface {
	// DomainXML returns the live (or, with persistent, the inactive) XML.
	DomainXML(ctx context.Context, domain string, persistent bool) (string, error)
	AttachDevice(ctx context.Context, domain, xml string, flags Flags) error
	DetachDevice(ctx context.Context, domain, xml string, flags Flags) error
	// FSFreeze freezes the guest's mounted filesystems through the QEMU
	// guest agent, and says how many; ErrNoAgent when the domain has no
	// agent that answers, ErrNotRunning when it is not running.
	FSFreeze(ctx context.Context, domain string) (int, error)
	// FSThaw thaws what FSFreeze froze (all of the guest's filesystems).
	FSThaw(ctx context.Context, domain string) (int, error)
	// Active reports whether the domain runs: a shut-off domain has only
	// its persistent definition to change.
	Active(ctx context.Context, domain string) (bool, error)
	// DefineXML replaces the domain's persistent definition.
	DefineXML(ctx context.Context, xml string) error
	// Paused reports whether the domain is paused.
	Paused(ctx context.Context, domain string) (bool, error)
	// Suspend pauses a running domain; QEMU completes the I/O in flight
	// before it returns. Resume lets it run again.
	Suspend(ctx context.Context, domain string) error
	Resume(ctx context.Context, domain string) error
	// BlockResize tells the running domain that its disk (by target, vdb)
	// now has size bytes, so the guest sees it.
	BlockResize(ctx context.Context, domain, disk string, size int64) error
	Close() error
}

// The guest-agent failures a caller acts on.
var (
	// ErrNoAgent: libvirt error 74 (VIR_ERR_ARGUMENT_UNSUPPORTED, "QEMU
	// guest agent is not configured") or 86 (VIR_ERR_AGENT_UNRESPONSIVE,
	// "QEMU guest agent is not connected").
	ErrNoAgent = errors.New("no QEMU guest agent answers in the domain")
	// ErrNotRunning: libvirt error 55 (VIR_ERR_OPERATION_INVALID), "domain
	// is not running": nothing in it writes.
	ErrNotRunning = errors.New("domain is not running")
)

// Flags choose which definitions a device change touches.
type Flags struct{ Live, Persistent bool }

func (f Flags) libvirt() uint32 {
	var v libvirt.DomainDeviceModifyFlags
	if f.Live {
		v |= libvirt.DomainDeviceModifyLive
	}
	if f.Persistent {
		v |= libvirt.DomainDeviceModifyConfig
	}
	return uint32(v)
}

func (f Flags) String() string {
	var s []string
	if f.Live {
		s = append(s, "--live")
	}
	if f.Persistent {
		s = append(s, "--config")
	}
	return strings.Join(s, " ")
}

// Libvirt is a connection to one libvirtd.
type Libvirt struct {
	host string
	l    *libvirt.Libvirt

	mu   sync.Mutex
	conn net.Conn // what the dialer made, to close under a call that hangs
	dead bool
}

type dialer func() (net.Conn, error)

func (d dialer) Dial() (net.Conn, error) { return d() }

// Dial connects to qemu:///system through dial.
func Dial(ctx context.Context, host string, dial func(ctx context.Context, path string) (net.Conn, error)) (*Libvirt, error) {
	v := &Libvirt{host: host}
	v.l = libvirt.NewWithDialer(dialer(func() (net.Conn, error) {
		c, err := dial(ctx, Socket)
		if err == nil {
			v.mu.Lock()
			v.conn = c
			v.mu.Unlock()
		}
		return c, err
	}))
	if err := v.call(ctx, func() error { return v.l.ConnectToURI(libvirt.QEMUSystem) }); err != nil {
		v.abandon()
		return nil, fmt.Errorf("%s: libvirt: %w", host, err)
	}
	return v, nil
}

// ErrConnClosed is a call on a connection given up on: dial again.
var ErrConnClosed = errors.New("libvirt connection closed after an earlier call was given up")

// call runs one libvirt RPC. go-libvirt's calls take no context, and a
// libvirtd that stops answering would hold blk past --timeout and Ctrl-C:
// when ctx ends first, the connection is closed under the call, which ends
// it, and this connection is dead.
func (v *Libvirt) call(ctx context.Context, fn func() error) error {
	if v.Dead() {
		return ErrConnClosed
	}
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		v.abandon()
		return ctx.Err()
	}
}

func (v *Libvirt) abandon() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.dead = true
	if v.conn != nil {
		v.conn.Close()
	}
}

// Dead reports whether the connection was given up on.
func (v *Libvirt) Dead() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.dead
}

// closeWait bounds the goodbye to a libvirtd that may not answer it.
const closeWait = 5 * time.Second

func (v *Libvirt) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeWait)
	defer cancel()
	err := v.call(ctx, v.l.Disconnect)
	if errors.Is(err, ErrConnClosed) {
		return nil
	}
	return err
}

func (v *Libvirt) wrap(op, domain string, err error) error {
	if err == nil {
		return nil
	}
	if libvirt.IsNotFound(err) {
		return fmt.Errorf("%s: libvirt %s %s: %w", v.host, op, domain, ErrNoDomain)
	}
	return fmt.Errorf("%s: libvirt %s %s: %w", v.host, op, domain, err)
}

func (v *Libvirt) DomainXML(ctx context.Context, domain string, persistent bool) (x string, err error) {
	flags := xmlFlags(persistent)
	err = v.onDomain(ctx, "dumpxml", domain, func(d libvirt.Domain) (err error) {
		x, err = v.l.DomainGetXMLDesc(d, flags)
		return err
	})
	return x, err
}

// xmlFlags are the flags of a domain's XML. The persistent definition is
// what an attach --boot defines back: without its secrets (a console's
// passwd) the define would drop them, and leave the console open.
func xmlFlags(persistent bool) libvirt.DomainXMLFlags {
	if persistent {
		return libvirt.DomainXMLInactive | libvirt.DomainXMLSecure
	}
	return 0
}

func (v *Libvirt) AttachDevice(ctx context.Context, domain, xml string, f Flags) error {
	return v.onDomain(ctx, "attach-device", domain, func(d libvirt.Domain) error {
		return v.l.DomainAttachDeviceFlags(d, xml, f.libvirt())
	})
}

func (v *Libvirt) DetachDevice(ctx context.Context, domain, xml string, f Flags) error {
	return v.onDomain(ctx, "detach-device", domain, func(d libvirt.Domain) error {
		return v.l.DomainDetachDeviceFlags(d, xml, f.libvirt())
	})
}

func (v *Libvirt) FSFreeze(ctx context.Context, domain string) (n int, err error) {
	err = v.onDomain(ctx, "domfsfreeze", domain, func(d libvirt.Domain) error {
		r, ferr := v.l.DomainFsfreeze(d, nil, 0)
		n = int(r)
		return agentError(ferr)
	})
	return n, err
}

func (v *Libvirt) FSThaw(ctx context.Context, domain string) (n int, err error) {
	err = v.onDomain(ctx, "domfsthaw", domain, func(d libvirt.Domain) error {
		r, terr := v.l.DomainFsthaw(d, nil, 0)
		n = int(r)
		return agentError(terr)
	})
	return n, err
}

// agentError types libvirt's answers for a domain whose agent cannot act,
// keeping libvirt's own message.
func agentError(err error) error {
	var e libvirt.Error
	if !errors.As(err, &e) {
		return err
	}
	switch libvirt.ErrorNumber(e.Code) {
	case libvirt.ErrArgumentUnsupported, libvirt.ErrAgentUnresponsive:
		return fmt.Errorf("%w: %w", ErrNoAgent, err)
	case libvirt.ErrOperationInvalid:
		return fmt.Errorf("%w: %w", ErrNotRunning, err)
	}
	return err
}

func (v *Libvirt) Active(ctx context.Context, domain string) (active bool, err error) {
	err = v.onDomain(ctx, "domstate", domain, func(d libvirt.Domain) error {
		n, aerr := v.l.DomainIsActive(d)
		active = n == 1
		return aerr
	})
	return active, err
}

func (v *Libvirt) Paused(ctx context.Context, domain string) (paused bool, err error) {
	err = v.onDomain(ctx, "domstate", domain, func(d libvirt.Domain) error {
		st, _, serr := v.l.DomainGetState(d, 0)
		paused = libvirt.DomainState(st) == libvirt.DomainPaused
		return serr
	})
	return paused, err
}

func (v *Libvirt) Suspend(ctx context.Context, domain string) error {
	return v.onDomain(ctx, "suspend", domain, v.l.DomainSuspend)
}

func (v *Libvirt) Resume(ctx context.Context, domain string) error {
	return v.onDomain(ctx, "resume", domain, v.l.DomainResume)
}

func (v *Libvirt) DefineXML(ctx context.Context, xml string) error {
	err := v.call(ctx, func() error {
		_, err := v.l.DomainDefineXMLFlags(xml, 0)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: libvirt define: %w", v.host, err)
	}
	return nil
}

func (v *Libvirt) BlockResize(ctx context.Context, domain, disk string, size int64) error {
	return v.onDomain(ctx, "blockresize "+disk, domain, func(d libvirt.Domain) error {
		return v.l.DomainBlockResize(d, disk, uint64(size), libvirt.DomainBlockResizeBytes)
	})
}

// onDomain looks the domain up and runs op on it, both bounded by ctx.
func (v *Libvirt) onDomain(ctx context.Context, op, domain string, fn func(libvirt.Domain) error) error {
	var d libvirt.Domain
	err := v.call(ctx, func() (err error) {
		d, err = v.l.DomainLookupByName(domain)
		return err
	})
	if err != nil {
		return v.wrap("lookup", domain, err)
	}
	return v.wrap(op, domain, v.call(ctx, func() error { return fn(d) }))
}

// Disk describes a disk to plug in.
type Disk struct {
	Source   string // block device or file
	File     bool   // a file (NFS volume) rather than a block device
	Target   string // vdb, sdc
	Bus      string // virtio or scsi
	Serial   string
	ReadOnly bool
	// BootOrder, when set, is the disk's <boot order='N'/>.
	BootOrder uint
}

// SerialOf fits a volume UUID in a disk serial: virtio keeps 20 bytes.
func SerialOf(uuid string) string { return uuid[:min(20, len(uuid))] }

// XML renders the disk as libvirt wants it: raw, cache=none (the page cache
// of the compute host must not sit between the guest and shared storage).
func (d Disk) XML() (string, error) {
	disk := libvirtxml.DomainDisk{
		Device: "disk",
		Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw", Cache: "none", IO: "native"},
		Target: &libvirtxml.DomainDiskTarget{Dev: d.Target, Bus: d.Bus},
		Serial: d.Serial,
	}
	if d.File {
		disk.Source = &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: d.Source}}
	} else {
		disk.Source = &libvirtxml.DomainDiskSource{Block: &libvirtxml.DomainDiskSourceBlock{Dev: d.Source}}
	}
	if d.ReadOnly {
		disk.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
	}
	if d.BootOrder > 0 {
		disk.Boot = &libvirtxml.DomainDeviceBoot{Order: d.BootOrder}
	}
	return disk.Marshal()
}

// Disks lists the disks of a domain's XML: target dev to serial.
func Disks(domainXML string) (map[string]libvirtxml.DomainDisk, error) {
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(domainXML); err != nil {
		return nil, fmt.Errorf("parse domain xml: %w", err)
	}
	disks := map[string]libvirtxml.DomainDisk{}
	if dom.Devices == nil {
		return disks, nil
	}
	for _, d := range dom.Devices.Disks {
		if d.Target != nil {
			disks[d.Target.Dev] = d
		}
	}
	return disks, nil
}

// DiskBySerial finds the target of the disk with serial, or "".
func DiskBySerial(domainXML, serial string) (string, error) {
	disks, err := Disks(domainXML)
	if err != nil {
		return "", err
	}
	for dev, d := range disks {
		if d.Serial == serial {
			return dev, nil
		}
	}
	return "", nil
}

// FreeDevice picks the first target name for bus that is not reserved and
// that no disk of either domain definition uses.
func FreeDevice(bus string, reserved []string, xmls ...string) (string, error) {
	prefix := "vd"
	if bus == "scsi" {
		prefix = "sd"
	}
	taken := slices.Clone(reserved)
	for _, x := range xmls {
		disks, err := Disks(x)
		if err != nil {
			return "", err
		}
		for dev := range disks {
			taken = append(taken, dev)
		}
	}
	// vda/sda is usually the boot disk even when absent from the XML.
	for c := 'b'; c <= 'z'; c++ {
		if dev := prefix + string(c); !slices.Contains(taken, dev) {
			return dev, nil
		}
	}
	return "", fmt.Errorf("no free %s device name", bus)
}

// Taken reports whether dev is used in any of xmls.
func Taken(dev string, xmls ...string) (bool, error) {
	for _, x := range xmls {
		disks, err := Disks(x)
		if err != nil {
			return false, err
		}
		if _, ok := disks[dev]; ok {
			return true, nil
		}
	}
	return false, nil
}

// ErrNotReleased is a disk the guest kept after being asked to let go.
var ErrNotReleased = errors.New("the guest did not release it")

var errStillThere = errors.New("still there")

// WaitGone polls the live XML until no disk has serial, because libvirt's
// detach only asks the guest: a guest that never answers keeps the disk.
func WaitGone(ctx context.Context, h Hypervisor, domain, serial string, timeout time.Duration) error {
	var dev string
	err := retry.Do(ctx, retry.Policy{Within: timeout, Delay: 250 * time.Millisecond, Retry: func(err error) bool { return err == errStillThere }},
		func() error {
			x, err := h.DomainXML(ctx, domain, false)
			if err != nil {
				return err
			}
			if dev, err = DiskBySerial(x, serial); err == nil && dev != "" {
				return errStillThere
			}
			return err
		})
	if errors.Is(err, errStillThere) {
		if ctx.Err() != nil {
			return fmt.Errorf("disk %s is still in %s: %w", dev, domain, ctx.Err())
		}
		return fmt.Errorf("disk %s is still in %s after %v: %w", dev, domain, timeout, ErrNotReleased)
	}
	return err
}

// Domains lists the names of the host's domains, running or not.
func (v *Libvirt) Domains(ctx context.Context) ([]string, error) {
	var doms []libvirt.Domain
	err := v.call(ctx, func() (err error) {
		doms, _, err = v.l.ConnectListAllDomains(1, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: libvirt list domains: %w", v.host, err)
	}
	names := make([]string, len(doms))
	for i, d := range doms {
		names[i] = d.Name
	}
	return names, nil
}

// FreeFirstBoot rewrites a persistent domain definition so that boot order 1
// is free for a new disk. libvirt refuses per-device <boot order> together
// with <os><boot dev=...>, so those elements are turned into per-device
// orders, in their order (hd: the first disk, cdrom: the first CD-ROM,
// network: the first interface); every device's order then moves one down.
// changed is false when nothing had to move.
func FreeFirstBoot(domainXML string) (out string, changed bool, err error) {
	var dom libvirtxml.Domain
	if err = dom.Unmarshal(domainXML); err != nil {
		return "", false, fmt.Errorf("parse domain xml: %w", err)
	}
	if dom.Devices == nil {
		dom.Devices = &libvirtxml.DomainDeviceList{}
	}
	devs := dom.Devices
	var boots []**libvirtxml.DomainDeviceBoot
	for i := range devs.Disks {
		boots = append(boots, &devs.Disks[i].Boot)
	}
	for i := range devs.Interfaces {
		boots = append(boots, &devs.Interfaces[i].Boot)
	}
	for i := range devs.Hostdevs {
		boots = append(boots, &devs.Hostdevs[i].Boot)
	}
	for i := range devs.RedirDevs {
		boots = append(boots, &devs.RedirDevs[i].Boot)
	}
	for i := range devs.Filesystems {
		boots = append(boots, &devs.Filesystems[i].Boot)
	}
	taken := false
	for _, b := range boots {
		if *b != nil && (*b).Order == 1 {
			taken = true
		}
	}
	if dom.OS != nil && len(dom.OS.BootDevices) > 0 {
		// Per-device orders and os/boot cannot both be there: only the
		// os/boot list is in force.
		for _, b := range boots {
			*b = nil
		}
		order := uint(1)
		for _, bd := range dom.OS.BootDevices {
			if b := firstOfKind(devs, bd.Dev); b != nil && *b == nil {
				*b = &libvirtxml.DomainDeviceBoot{Order: order}
				order++
			}
		}
		dom.OS.BootDevices = nil
		taken = true
	}
	if !taken {
		return domainXML, false, nil
	}
	for _, b := range boots {
		if *b != nil {
			(*b).Order++
		}
	}
	out, err = dom.Marshal()
	return out, true, err
}

// WithBootDisk is the domain definition with boot order 1 freed (see
// FreeFirstBoot) and the disk (which carries <boot order='1'/>) added.
func WithBootDisk(domainXML, diskXML string) (string, error) {
	freed, _, err := FreeFirstBoot(domainXML)
	if err != nil {
		return "", err
	}
	var dom libvirtxml.Domain
	if err = dom.Unmarshal(freed); err != nil {
		return "", fmt.Errorf("parse domain xml: %w", err)
	}
	var disk libvirtxml.DomainDisk
	if err = disk.Unmarshal(diskXML); err != nil {
		return "", fmt.Errorf("parse disk xml: %w", err)
	}
	if dom.Devices == nil {
		dom.Devices = &libvirtxml.DomainDeviceList{}
	}
	if dom.OS != nil {
		dom.OS.BootDevices = nil
	}
	dom.Devices.Disks = append(dom.Devices.Disks, disk)
	return dom.Marshal()
}

// firstOfKind is the boot element of the device an <os><boot dev=...> means.
func firstOfKind(devs *libvirtxml.DomainDeviceList, dev string) **libvirtxml.DomainDeviceBoot {
	switch dev {
	case "hd", "cdrom", "fd":
		want := map[string]string{"hd": "disk", "cdrom": "cdrom", "fd": "floppy"}[dev]
		for i := range devs.Disks {
			d := devs.Disks[i].Device
			if d == "" {
				d = "disk"
			}
			if d == want {
				return &devs.Disks[i].Boot
			}
		}
	case "network":
		if len(devs.Interfaces) > 0 {
			return &devs.Interfaces[0].Boot
		}
	}
	return nil
}
