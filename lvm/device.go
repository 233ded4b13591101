package lvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/fault"
)

// ErrNotBlockDevice means a path given as a device is not one; such errors
// are of kind fault.ErrInvalid too.
var ErrNotBlockDevice = errors.New("not a block device")

// Device is what a block device holds, as lsblk and wipefs see it.
type Device struct {
	// Name is the kernel's name (lsblk resolves /dev/disk/by-id links), the
	// one pvs reports.
	Name       string
	Type       string // disk, part, loop, lvm, ...
	SizeBytes  int64
	Mountpoint string
	Children   []string // partitions, device-mapper devices on top of it
	Signatures []Signature
}

// Signature is one thing wipefs found on a device: a partition table, a
// filesystem, an LVM or RAID label.
type Signature struct {
	Type   string `json:"type"`
	Offset string `json:"offset"`
}

type lsblkDev struct {
	Name       string     `json:"name"`
	Type       string     `json:"type"`
	Size       int64      `json:"size"`
	Mountpoint *string    `json:"mountpoint"`
	Children   []lsblkDev `json:"children"`
}

// ProbeDevice reads what dev holds, changing nothing.
func ProbeDevice(ctx context.Context, r exec.Runner, dev string) (Device, error) {
	res, err := r.Run(ctx, exec.Cmd{Args: []string{"lsblk", "--json", "--bytes", "--paths",
		"--output", "NAME,TYPE,SIZE,MOUNTPOINT", dev}})
	if err != nil {
		var e *exec.Error
		if errors.As(err, &e) && (strings.Contains(e.Stderr, "not a block device") ||
			strings.Contains(e.Stderr, "No such file or directory")) {
			return Device{}, fault.Wrap(fault.ErrInvalid, fmt.Errorf("%w: %w", ErrNotBlockDevice, err))
		}
		return Device{}, err
	}
	var l struct {
		Devices []lsblkDev `json:"blockdevices"`
	}
	if err = json.Unmarshal(res.Stdout, &l); err != nil {
		return Device{}, fmt.Errorf("parse lsblk %s: %w", dev, err)
	}
	if len(l.Devices) != 1 {
		return Device{}, fault.New(fault.ErrInvalid, "lsblk %s: %w", dev, ErrNotBlockDevice)
	}
	b := l.Devices[0]
	d := Device{Name: b.Name, Type: b.Type, SizeBytes: b.Size}
	if b.Mountpoint != nil {
		d.Mountpoint = *b.Mountpoint
	}
	for _, c := range b.Children {
		d.Children = append(d.Children, c.Name)
	}
	res, err = r.Run(ctx, exec.Cmd{Args: []string{"wipefs", "--no-act", "--json", d.Name}})
	if err != nil {
		return Device{}, err
	}
	// wipefs prints nothing at all for a blank device in some versions.
	if s := strings.TrimSpace(string(res.Stdout)); s != "" {
		var w struct {
			Signatures []Signature `json:"signatures"`
		}
		if err := json.Unmarshal(res.Stdout, &w); err != nil {
			return Device{}, fmt.Errorf("parse wipefs %s: %w", d.Name, err)
		}
		d.Signatures = w.Signatures
	}
	return d, nil
}

// Holds says in words what is on the device, nothing if it is blank.
func (d Device) Holds() []string {
	var out []string
	if d.Mountpoint != "" {
		out = append(out, "a filesystem mounted at "+d.Mountpoint)
	}
	if len(d.Children) > 0 {
		out = append(out, "partitions or devices on top of it ("+strings.Join(d.Children, ", ")+")")
	}
	for _, s := range d.Signatures {
		var what string
		switch s.Type {
		case "":
			continue
		case "LVM2_member":
			what = "an LVM physical volume label"
		case "linux_raid_member", "isw_raid_member", "ddf_raid_member":
			what = "a RAID member signature (" + s.Type + ")"
		case "gpt", "dos", "PMBR", "atari", "bsd", "sun", "sgi", "mac":
			what = "a " + s.Type + " partition table"
		default:
			what = "a " + s.Type + " signature"
			if strings.ContainsRune("aeiouAEIOU", rune(s.Type[0])) {
				what = "an " + s.Type + " signature"
			}
		}
		out = append(out, what+" at offset "+s.Offset)
	}
	return out
}

// LoopOf returns the loop device file is attached to, or "".
func LoopOf(ctx context.Context, r exec.Runner, file string) (string, error) {
	res, err := r.Run(ctx, exec.Cmd{Args: []string{"losetup", "--list", "--json", "--output", "NAME", "--associated", file}})
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(string(res.Stdout)) == "" {
		return "", nil
	}
	var l struct {
		Loops []struct {
			Name string `json:"name"`
		} `json:"loopdevices"`
	}
	if err := json.Unmarshal(res.Stdout, &l); err != nil {
		return "", fmt.Errorf("parse losetup --list: %w", err)
	}
	if len(l.Loops) == 0 {
		return "", nil
	}
	return l.Loops[0].Name, nil
}

// AttachLoop attaches file to the first free loop device and returns its
// name (empty in a dry run).
func AttachLoop(ctx context.Context, r exec.Runner, file string) (string, error) {
	res, err := r.Run(ctx, exec.Cmd{Args: []string{"losetup", "--find", "--show", file}, Mutates: true})
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(res.Stdout)), nil
}

// DetachLoop frees a loop device.
func DetachLoop(ctx context.Context, r exec.Runner, dev string) error {
	_, err := r.Run(ctx, exec.Cmd{Args: []string{"losetup", "--detach", dev}, Mutates: true})
	return err
}
