// Package lvm drives LVM on one host: it reads lvs/vgs JSON reports, passes
// sizes in bytes, and maps LVM's known failures to typed errors.
package lvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/fault"
)

// The kinds of LVM failure callers act on.
var (
	ErrNotFound = fault.ErrNotFound
	ErrExists   = fault.ErrExists
	ErrNoSpace  = fault.ErrNoSpace
	ErrInUse    = fault.ErrInUse
)

// Tag marks every LV blk makes, so reality can be checked against state.
const Tag = "blk"

// VolumeTag ties an LV to its volume's UUID.
func VolumeTag(uuid string) string { return "blk-vol-" + uuid }

// NameTag records the volume's name on its LV, so that a row lost from the
// state file can be rebuilt with its name (blk reconcile --adopt). Names
// use only characters LVM allows in tags.
func NameTag(name string) string { return "blk-name-" + name }

// LVM is one volume group on one host.
type LVM struct {
	Run exec.Runner
	VG  string
}

type LV struct {
	Name        string
	VG          string
	SizeBytes   int64
	Tags        []string
	Pool        string
	Attr        string
	DataPercent float64 // thin LVs and pools: how full
}

// Path is the LV's device node.
func (lv LV) Path() string { return "/dev/" + lv.VG + "/" + lv.Name }

type VG struct {
	Name      string
	SizeBytes int64
	FreeBytes int64
	LVCount   int
}

// classify maps LVM's messages (LC_ALL=C) to typed errors, keeping the
// command error for its host, argv and stderr.
func classify(err error) error {
	var e *exec.Error
	if !errors.As(err, &e) {
		return err
	}
	s := e.Stderr
	switch {
	case strings.Contains(s, "Failed to find logical volume"), strings.Contains(s, "not found"),
		strings.Contains(s, "Cannot process volume group"):
		return fault.Wrap(ErrNotFound, err)
	case strings.Contains(s, "already exists"):
		return fault.Wrap(ErrExists, err)
	case strings.Contains(s, "Insufficient free space"), strings.Contains(s, "insufficient suitable"),
		strings.Contains(s, "Volume group") && strings.Contains(s, "has insufficient"):
		return fault.Wrap(ErrNoSpace, err)
	case strings.Contains(s, "in use"), strings.Contains(s, "is open"), strings.Contains(s, "Device or resource busy"):
		return fault.Wrap(ErrInUse, err)
	}
	return err
}

type report struct {
	Report []struct {
		LV []map[string]string `json:"lv"`
		VG []map[string]string `json:"vg"`
	} `json:"report"`
}

const lvFields = "lv_name,vg_name,lv_size,lv_tags,pool_lv,lv_attr,data_percent"

// errEmptyReport is a read-back a dry run skipped.
var errEmptyReport = errors.New("empty lvs report")

func parseLVs(out []byte) ([]LV, error) {
	if len(out) == 0 {
		return nil, errEmptyReport
	}
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("parse lvs report: %w", err)
	}
	lvs := []LV{}
	for _, rep := range r.Report {
		for _, m := range rep.LV {
			size, err := strconv.ParseInt(m["lv_size"], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("parse lvs report: lv_size %q: %w", m["lv_size"], err)
			}
			lv := LV{Name: m["lv_name"], VG: m["vg_name"], SizeBytes: size, Pool: m["pool_lv"], Attr: m["lv_attr"]}
			if m["lv_tags"] != "" {
				lv.Tags = strings.Split(m["lv_tags"], ",")
			}
			lv.DataPercent, _ = strconv.ParseFloat(m["data_percent"], 64)
			lvs = append(lvs, lv)
		}
	}
	return lvs, nil
}

func parseVG(out []byte) (VG, error) {
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		return VG{}, fmt.Errorf("parse vgs report: %w", err)
	}
	if len(r.Report) == 0 || len(r.Report[0].VG) != 1 {
		return VG{}, fmt.Errorf("parse vgs report: want one volume group")
	}
	m := r.Report[0].VG[0]
	var vg VG
	var errs []error
	num := func(k string) int64 {
		n, err := strconv.ParseInt(m[k], 10, 64)
		errs = append(errs, err)
		return n
	}
	vg.Name = m["vg_name"]
	vg.SizeBytes, vg.FreeBytes, vg.LVCount = num("vg_size"), num("vg_free"), int(num("lv_count"))
	if err := errors.Join(errs...); err != nil {
		return VG{}, fmt.Errorf("parse vgs report: %w", err)
	}
	return vg, nil
}

func (l LVM) run(ctx context.Context, cmd exec.Cmd) ([]byte, error) {
	res, err := l.Run.Run(ctx, cmd)
	if err != nil {
		return nil, classify(err)
	}
	return res.Stdout, nil
}

// Group reads the volume group.
func (l LVM) Group(ctx context.Context) (VG, error) {
	out, err := l.run(ctx, exec.Cmd{Args: []string{"vgs", "--reportformat", "json", "--units", "b", "--nosuffix",
		"-o", "vg_name,vg_size,vg_free,lv_count", l.VG}})
	if err != nil {
		return VG{}, err
	}
	return parseVG(out)
}

// LV reads one logical volume; ErrNotFound if there is none.
func (l LVM) LV(ctx context.Context, name string) (LV, error) {
	return l.lv(ctx, name, false)
}

func (l LVM) lv(ctx context.Context, name string, observes bool) (LV, error) {
	out, err := l.run(ctx, exec.Cmd{Args: []string{"lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
		"-o", lvFields, l.VG + "/" + name}, Observes: observes})
	if err != nil {
		return LV{}, err
	}
	lvs, err := parseLVs(out)
	if err != nil {
		return LV{}, err
	}
	if len(lvs) != 1 {
		return LV{}, fmt.Errorf("lv %s/%s: %w", l.VG, name, ErrNotFound)
	}
	return lvs[0], nil
}

// Tagged lists the LVs in the group that carry tag.
func (l LVM) Tagged(ctx context.Context, tag string) ([]LV, error) {
	out, err := l.run(ctx, exec.Cmd{Args: []string{"lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
		"-o", lvFields, "--select", "lv_tags=" + tag, l.VG}})
	if err != nil {
		return nil, err
	}
	return parseLVs(out)
}

// CreateOptions describe a new LV. With ThinPool set the LV is thin and
// SizeBytes is its virtual size.
type CreateOptions struct {
	Name      string
	SizeBytes int64
	ThinPool  string
	Tags      []string
}

// Create makes the LV and returns it as LVM made it: LVM rounds the size up
// to whole extents. In a dry run, which made nothing to read back, it is
// the LV as asked.
func (l LVM) Create(ctx context.Context, o CreateOptions) (LV, error) {
	args := []string{"lvcreate", "--yes", "--name", o.Name}
	// LVM takes whole sectors; it rounds further up to whole extents itself.
	sectors := (o.SizeBytes + 511) / 512 * 512
	size := strconv.FormatInt(sectors, 10) + "b"
	if o.ThinPool != "" {
		args = append(args, "--type", "thin", "--virtualsize", size, "--thinpool", o.ThinPool)
	} else {
		args = append(args, "--size", size, "--wipesignatures", "y", "--zero", "y")
	}
	for _, t := range o.Tags {
		args = append(args, "--addtag", t)
	}
	if _, err := l.run(ctx, exec.Cmd{Args: append(args, l.VG), Mutates: true}); err != nil {
		return LV{}, err
	}
	lv, err := l.lv(ctx, o.Name, true)
	if errors.Is(err, errEmptyReport) {
		return LV{Name: o.Name, VG: l.VG, SizeBytes: sectors, Tags: o.Tags, Pool: o.ThinPool}, nil
	}
	if err != nil {
		return LV{}, fmt.Errorf("read back: %w", err)
	}
	return lv, nil
}

// Remove deletes the LV.
func (l LVM) Remove(ctx context.Context, name string) error {
	_, err := l.run(ctx, exec.Cmd{Args: []string{"lvremove", "--yes", l.VG + "/" + name}, Mutates: true})
	return err
}

// Fits refuses, with ErrNoSpace, an LV of size that the group (thick) or
// the thin pool could not hold: checked before lvcreate, so a dry run
// refuses what the real one would.
// gib makes a byte count readable in a message.
func gib(n int64) string { return strconv.FormatFloat(float64(n)/(1<<30), 'f', 2, 64) + "GiB" }

func (l LVM) Fits(ctx context.Context, size int64, thinPool string) error {
	if thinPool == "" {
		vg, err := l.Group(ctx)
		if err != nil {
			return err
		}
		if size > vg.FreeBytes {
			return fault.New(ErrNoSpace, "volume group %s has %s free, %s needed (%d and %d bytes)",
				l.VG, gib(vg.FreeBytes), gib(size), vg.FreeBytes, size)
		}
		return nil
	}
	// A thin LV may be larger than its pool (LVM over-provisions), but
	// not in a pool that is missing or full.
	pool, err := l.LV(ctx, thinPool)
	if err != nil {
		return fmt.Errorf("thin pool: %w", err)
	}
	if !strings.HasPrefix(pool.Attr, "t") {
		return fault.New(fault.ErrInvalid, "%s/%s is not a thin pool", l.VG, thinPool)
	}
	if pool.DataPercent >= 100 {
		return fault.New(ErrNoSpace, "thin pool %s/%s is full", l.VG, thinPool)
	}
	return nil
}

// Pool is a thin pool and what its thin LVs promise.
type Pool struct {
	SizeBytes       int64
	DataPercent     float64
	MetadataPercent float64
	// ProvisionedBytes is the sum of the virtual sizes of the pool's thin
	// LVs, blk's or not: what Cinder calls provisioned capacity.
	ProvisionedBytes int64
	ThinCount        int
}

// ThinPool reads the pool name and its thin LVs in one report.
func (l LVM) ThinPool(ctx context.Context, name string) (Pool, error) {
	out, err := l.run(ctx, exec.Cmd{Args: []string{"lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
		"-o", "lv_name,lv_size,pool_lv,lv_attr,data_percent,metadata_percent",
		"--select", `lv_name="` + name + `" || pool_lv="` + name + `"`, l.VG}})
	if err != nil {
		return Pool{}, err
	}
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		return Pool{}, fmt.Errorf("parse lvs report: %w", err)
	}
	var p Pool
	found := false
	for _, rep := range r.Report {
		for _, m := range rep.LV {
			size, err := strconv.ParseInt(m["lv_size"], 10, 64)
			if err != nil {
				return Pool{}, fmt.Errorf("parse lvs report: lv_size %q: %w", m["lv_size"], err)
			}
			if m["lv_name"] != name {
				p.ProvisionedBytes += size
				p.ThinCount++
				continue
			}
			if !strings.HasPrefix(m["lv_attr"], "t") {
				return Pool{}, fault.New(fault.ErrInvalid, "%s/%s is not a thin pool", l.VG, name)
			}
			found = true
			p.SizeBytes = size
			p.DataPercent, _ = strconv.ParseFloat(m["data_percent"], 64)
			p.MetadataPercent, _ = strconv.ParseFloat(m["metadata_percent"], 64)
		}
	}
	if !found {
		return Pool{}, fmt.Errorf("thin pool %s/%s: %w", l.VG, name, ErrNotFound)
	}
	return p, nil
}

// Extend grows the LV (thick, or a thin LV's virtual size) to at least size
// and returns it as LVM made it. An LV already that large is left alone, so
// a rerun of a killed extend does not fail on it.
//
// LVM grows the origin of a thick snapshot only while it is inactive: such
// an LV is deactivated around lvextend (its snapshots with it) and refused
// with ErrInUse while something holds it open. An LV found inactive (a
// killed extend's) is activated again.
func (l LVM) Extend(ctx context.Context, name string, size int64) (lv LV, err error) {
	if lv, err = l.LV(ctx, name); err != nil {
		return lv, err
	}
	inactive := !lv.Active()
	if lv.ThickOrigin() && !inactive && lv.SizeBytes < size {
		if lv.Open() {
			return lv, fault.New(ErrInUse, "%s/%s has thick snapshots and is open: LVM grows a thick snapshot's origin only while it is inactive", l.VG, name)
		}
		if err = l.Activate(ctx, name, false); err != nil {
			return lv, err
		}
		inactive = true
	}
	if inactive {
		// Deactivated here, or by a killed extend: whatever happens
		// next, the volume must be usable again.
		defer func() {
			uctx := context.WithoutCancel(ctx)
			if aerr := l.Activate(uctx, name, true); aerr != nil {
				err = errors.Join(err, aerr)
			} else if back, rerr := l.lv(uctx, name, true); rerr == nil {
				lv = back
			}
		}()
	}
	if lv.SizeBytes >= size {
		return lv, nil
	}
	sectors := (size + 511) / 512 * 512
	if _, err = l.run(ctx, exec.Cmd{Args: []string{"lvextend", "-L", strconv.FormatInt(sectors, 10) + "b", l.VG + "/" + name},
		Mutates: true}); err != nil {
		return lv, err
	}
	grown, err := l.lv(ctx, name, true)
	if errors.Is(err, errEmptyReport) {
		lv.SizeBytes = sectors
		return lv, nil
	}
	if err != nil {
		return lv, fmt.Errorf("read back: %w", err)
	}
	return grown, nil
}

// Activate activates (lvchange -ay) or deactivates (-an) the LV; an
// origin's thick snapshots follow it.
func (l LVM) Activate(ctx context.Context, name string, on bool) error {
	flag := "-an"
	if on {
		flag = "-ay"
	}
	_, err := l.run(ctx, exec.Cmd{Args: []string{"lvchange", flag, l.VG + "/" + name}, Mutates: true})
	return err
}

// lv_attr's characters: 1 the volume type, 5 the state, 6 whether open.

// ThickOrigin says the LV is the origin of a thick (copy-on-write) snapshot.
func (lv LV) ThickOrigin() bool { return len(lv.Attr) > 0 && lv.Attr[0] == 'o' }

// Active says the LV has a device; an empty Attr (a dry run's read) counts.
func (lv LV) Active() bool { return len(lv.Attr) < 5 || lv.Attr[4] == 'a' }

// Open says something holds the LV's device open.
func (lv LV) Open() bool { return len(lv.Attr) > 5 && lv.Attr[5] == 'o' }
