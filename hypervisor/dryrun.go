package hypervisor

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"

	"libvirt.org/go/libvirtxml"
)

// DryRun passes reads through and prints, instead of making, every device
// change, one line per call. Reads of a domain then leave out the disks it
// "detached", so a workflow that waits for a disk to go sees it gone.
type DryRun struct {
	Hypervisor
	host string
	out  io.Writer
	mu   *sync.Mutex
	gone map[string][]string // "domain live|persistent" -> disk serials
}

func NewDryRun(h Hypervisor, host string, out io.Writer, mu *sync.Mutex) *DryRun {
	return &DryRun{Hypervisor: h, host: host, out: out, mu: mu, gone: map[string][]string{}}
}

func (d *DryRun) print(op, domain, xml string, f Flags) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "%s: libvirt %s %s %s %s\n", d.host, op, domain, f, strings.Join(strings.Fields(xml), " "))
}

func (d *DryRun) AttachDevice(_ context.Context, domain, xml string, f Flags) error {
	d.print("attach-device", domain, xml, f)
	return nil
}

func (d *DryRun) DetachDevice(_ context.Context, domain, xml string, f Flags) error {
	d.print("detach-device", domain, xml, f)
	var disk libvirtxml.DomainDisk
	if err := disk.Unmarshal(xml); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, persistent := range []bool{false, true} {
		if persistent && f.Persistent || !persistent && f.Live {
			k := key(domain, persistent)
			d.gone[k] = append(d.gone[k], disk.Serial)
		}
	}
	return nil
}

func (d *DryRun) DomainXML(ctx context.Context, domain string, persistent bool) (string, error) {
	x, err := d.Hypervisor.DomainXML(ctx, domain, persistent)
	d.mu.Lock()
	gone := d.gone[key(domain, persistent)]
	d.mu.Unlock()
	if err != nil || len(gone) == 0 {
		return x, err
	}
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(x); err != nil {
		return "", fmt.Errorf("parse domain xml: %w", err)
	}
	if dom.Devices != nil {
		var kept []libvirtxml.DomainDisk
		for _, disk := range dom.Devices.Disks {
			if !slices.Contains(gone, disk.Serial) {
				kept = append(kept, disk)
			}
		}
		dom.Devices.Disks = kept
	}
	return dom.Marshal()
}

// passwdAttr is a console password in a domain's XML, never printed.
var passwdAttr = regexp.MustCompile(`(\bpasswd=)(?:"[^"]*"|'[^']*')`)

func (d *DryRun) DefineXML(_ context.Context, xml string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "%s: libvirt define %s\n", d.host, passwdAttr.ReplaceAllString(strings.Join(strings.Fields(xml), " "), `${1}"********"`))
	return nil
}

func (d *DryRun) Suspend(_ context.Context, domain string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "%s: libvirt suspend %s\n", d.host, domain)
	return nil
}

func (d *DryRun) Resume(_ context.Context, domain string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "%s: libvirt resume %s\n", d.host, domain)
	return nil
}

func (d *DryRun) BlockResize(_ context.Context, domain, disk string, size int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "%s: libvirt blockresize %s %s %db\n", d.host, domain, disk, size)
	return nil
}

func key(domain string, persistent bool) string { return fmt.Sprint(domain, " ", persistent) }

// Domains passes the listing through, when the wrapped connection lists.
func (d *DryRun) Domains(ctx context.Context) ([]string, error) {
	l, ok := d.Hypervisor.(interface {
		Domains(context.Context) ([]string, error)
	})
	if !ok {
		return nil, fmt.Errorf("%s: libvirt: cannot list domains", d.host)
	}
	return l.Domains(ctx)
}

// FSFreeze freezes nothing in a dry run: it says it would, and whether the
// domain is there to ask.
func (d *DryRun) FSFreeze(ctx context.Context, domain string) (int, error) {
	if _, err := d.Hypervisor.DomainXML(ctx, domain, false); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "%s: libvirt domfsfreeze %s\n", d.host, domain)
	return 0, nil
}

func (d *DryRun) FSThaw(_ context.Context, domain string) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "%s: libvirt domfsthaw %s\n", d.host, domain)
	return 0, nil
}
