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

// PV is one physical volume on the host; VG is empty for a PV in no group.
type PV struct {
	Name      string
	VG        string
	SizeBytes int64
	FreeBytes int64
}

// GroupDetail is what backend init and extend need to know of a group.
type GroupDetail struct {
	VG
	ExtentBytes int64
	Tags        []string
}

// ThinPool is a thin pool's data and metadata sizes.
type ThinPool struct {
	DataBytes     int64
	MetadataBytes int64
	ChunkBytes    int64
}

// pvClassify adds the refusals LVM words its own way when a device is
// already some group's PV; run has classified the rest.
func pvClassify(err error) error {
	var e *exec.Error
	if errors.As(err, new(*fault.Error)) || !errors.As(err, &e) {
		return err
	}
	if strings.Contains(e.Stderr, "without -ff") || strings.Contains(e.Stderr, "is already in volume group") {
		return fault.Wrap(ErrInUse, err)
	}
	return err
}

// PVs lists every PV the host sees, in any group or none.
func (l LVM) PVs(ctx context.Context) ([]PV, error) { return l.pvs(ctx, false) }

// RecheckPVs lists the PVs again after this workflow changed them: a dry
// run, which changed nothing, sees none.
func (l LVM) RecheckPVs(ctx context.Context) ([]PV, error) { return l.pvs(ctx, true) }

func (l LVM) pvs(ctx context.Context, observes bool) ([]PV, error) {
	out, err := l.run(ctx, exec.Cmd{Args: []string{"pvs", "--reportformat", "json", "--units", "b", "--nosuffix",
		"-o", "pv_name,vg_name,pv_size,pv_free"}, Observes: observes})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return []PV{}, nil
	}
	var r struct {
		Report []struct {
			PV []map[string]string `json:"pv"`
		} `json:"report"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("parse pvs report: %w", err)
	}
	pvs := []PV{}
	for _, rep := range r.Report {
		for _, m := range rep.PV {
			size, err1 := strconv.ParseInt(m["pv_size"], 10, 64)
			free, err2 := strconv.ParseInt(m["pv_free"], 10, 64)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("parse pvs report: %w", err)
			}
			pvs = append(pvs, PV{Name: m["pv_name"], VG: m["vg_name"], SizeBytes: size, FreeBytes: free})
		}
	}
	return pvs, nil
}

// Detail reads the group with its extent size and tags; ErrNotFound if
// there is none.
func (l LVM) Detail(ctx context.Context) (GroupDetail, error) { return l.detail(ctx, false) }

func (l LVM) detail(ctx context.Context, observes bool) (GroupDetail, error) {
	out, err := l.run(ctx, exec.Cmd{Args: []string{"vgs", "--reportformat", "json", "--units", "b", "--nosuffix",
		"-o", "vg_name,vg_size,vg_free,lv_count,vg_extent_size,vg_tags", l.VG}, Observes: observes})
	if err != nil {
		return GroupDetail{}, err
	}
	if len(out) == 0 {
		return GroupDetail{}, errEmptyReport
	}
	vg, err := parseVG(out)
	if err != nil {
		return GroupDetail{}, err
	}
	var r report
	_ = json.Unmarshal(out, &r) // parseVG checked it
	m := r.Report[0].VG[0]
	d := GroupDetail{VG: vg}
	if d.ExtentBytes, err = strconv.ParseInt(m["vg_extent_size"], 10, 64); err != nil || d.ExtentBytes <= 0 {
		return GroupDetail{}, fmt.Errorf("parse vgs report: vg_extent_size %q", m["vg_extent_size"])
	}
	if m["vg_tags"] != "" {
		d.Tags = strings.Split(m["vg_tags"], ",")
	}
	return d, nil
}

// CreatePV initialises dev as a PV. --yes answers LVM's "wipe this
// signature?" prompt: the caller has already refused devices holding
// anything unless the operator forced it.
func (l LVM) CreatePV(ctx context.Context, dev string) error {
	return l.changePV(ctx, "pvcreate", "--yes", dev)
}

// RemovePV wipes the PV label off dev.
func (l LVM) RemovePV(ctx context.Context, dev string) error {
	return l.changePV(ctx, "pvremove", "--yes", dev)
}

// Sizes LVM uses unless told otherwise, to size a group a dry run did not
// make: the data of a PV starts 1MiB in, in extents of 4MiB.
const (
	defaultPEStart = 1 << 20
	defaultExtent  = 4 << 20
)

// CreateGroup makes the group on the PVs devs, tagged blk so it is known as
// blk's. Read it back with NewGroup: a caller registers the group's undo in
// between, so a failed read-back does not leave a group nobody removes.
func (l LVM) CreateGroup(ctx context.Context, devs []PV) error {
	return l.changePV(ctx, append([]string{"vgcreate", "--addtag", Tag, l.VG}, names(devs)...)...)
}

// NewGroup reads back the group CreateGroup made on devs (their sizes only
// count in a dry run, which made nothing to read back: then it is the group
// the devices would make).
func (l LVM) NewGroup(ctx context.Context, devs []PV) (GroupDetail, error) {
	d, err := l.detail(ctx, true)
	if errors.Is(err, errEmptyReport) {
		d = GroupDetail{VG: VG{Name: l.VG}, ExtentBytes: defaultExtent, Tags: []string{Tag}}
		d.SizeBytes = usable(devs, d.ExtentBytes)
		d.FreeBytes = d.SizeBytes
		return d, nil
	}
	if err != nil {
		return GroupDetail{}, fmt.Errorf("read back: %w", err)
	}
	return d, nil
}

// RemoveGroup removes the group and every LV in it.
func (l LVM) RemoveGroup(ctx context.Context) error {
	return l.changePV(ctx, "vgremove", "--yes", l.VG)
}

// ExtendGroup adds the PVs devs to the group g and returns the group as it
// is after; in a dry run, g with the space the devices would add.
func (l LVM) ExtendGroup(ctx context.Context, g GroupDetail, devs []PV) (GroupDetail, error) {
	if err := l.changePV(ctx, append([]string{"vgextend", l.VG}, names(devs)...)...); err != nil {
		return GroupDetail{}, err
	}
	d, err := l.detail(ctx, true)
	if errors.Is(err, errEmptyReport) {
		add := usable(devs, g.ExtentBytes)
		g.SizeBytes += add
		g.FreeBytes += add
		return g, nil
	}
	if err != nil {
		return GroupDetail{}, fmt.Errorf("read back: %w", err)
	}
	return d, nil
}

// ReduceGroup takes unused PVs out of the group.
func (l LVM) ReduceGroup(ctx context.Context, devs []string) error {
	return l.changePV(ctx, append([]string{"vgreduce", l.VG}, devs...)...)
}

func names(pvs []PV) []string {
	out := make([]string, len(pvs))
	for i, pv := range pvs {
		out[i] = pv.Name
	}
	return out
}

// usable is the space PVs of these sizes give a group, in whole extents.
func usable(pvs []PV, extent int64) int64 {
	var n int64
	for _, pv := range pvs {
		n += max(0, pv.SizeBytes-defaultPEStart) / extent * extent
	}
	return n
}

// PlanThinPool sizes a thin pool to fit budget bytes of the group, counting
// its metadata and the spare LVM keeps beside it (same size), as lvcreate
// itself chooses them when not told: chunks of 64KiB, doubled until the
// metadata fits 128MiB.
func PlanThinPool(budget, extent int64) (ThinPool, error) {
	chunk := int64(64 << 10)
	for budget/chunk*64 > 128<<20 && chunk < 1<<30 {
		chunk *= 2
	}
	meta := PoolMetadataFor(budget, chunk, extent)
	data := (budget - 2*meta) / extent * extent
	if data < chunk || data < extent {
		return ThinPool{}, fmt.Errorf("%d bytes leave no room for a thin pool beside its %d bytes of metadata and spare: %w",
			budget, 2*meta, ErrNoSpace)
	}
	return ThinPool{DataBytes: data, MetadataBytes: meta, ChunkBytes: chunk}, nil
}

// PoolMetadataFor is the metadata LVM would give a pool of data bytes: 64
// bytes per chunk, between 2MiB and 16GiB, in whole extents.
func PoolMetadataFor(data, chunk, extent int64) int64 {
	meta := min(max(data/chunk*64, 2<<20), 16<<30)
	return (meta + extent - 1) / extent * extent
}

// CreateThinPool makes the pool as planned, with a metadata spare so a
// damaged pool can be repaired.
func (l LVM) CreateThinPool(ctx context.Context, name string, p ThinPool) error {
	_, err := l.run(ctx, exec.Cmd{Args: []string{"lvcreate", "--yes", "--type", "thin-pool", "--name", name,
		"--size", bytesArg(p.DataBytes), "--chunksize", strconv.FormatInt(p.ChunkBytes>>10, 10) + "k",
		"--poolmetadatasize", bytesArg(p.MetadataBytes), "--poolmetadataspare", "y",
		"--addtag", Tag, l.VG}, Mutates: true})
	return err
}

// Pool reads a thin pool's sizes; ErrNotFound if there is none.
func (l LVM) Pool(ctx context.Context, name string) (ThinPool, error) {
	out, err := l.run(ctx, exec.Cmd{Args: []string{"lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
		"-o", "lv_size,lv_metadata_size,chunk_size", l.VG + "/" + name}})
	if err != nil {
		return ThinPool{}, err
	}
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		return ThinPool{}, fmt.Errorf("parse lvs report: %w", err)
	}
	if len(r.Report) == 0 || len(r.Report[0].LV) != 1 {
		return ThinPool{}, fmt.Errorf("thin pool %s/%s: %w", l.VG, name, ErrNotFound)
	}
	m := r.Report[0].LV[0]
	var p ThinPool
	var errs []error
	for k, dst := range map[string]*int64{"lv_size": &p.DataBytes, "lv_metadata_size": &p.MetadataBytes, "chunk_size": &p.ChunkBytes} {
		n, err := strconv.ParseInt(m[k], 10, 64)
		errs = append(errs, err)
		*dst = n
	}
	if err := errors.Join(errs...); err != nil {
		return ThinPool{}, fmt.Errorf("parse lvs report of %s/%s: %w", l.VG, name, err)
	}
	return p, nil
}

// GrowPoolMetadata adds bytes to a thin pool's metadata (LVM grows the
// spare with it).
func (l LVM) GrowPoolMetadata(ctx context.Context, name string, bytes int64) error {
	_, err := l.run(ctx, exec.Cmd{Args: []string{"lvextend", "--yes", "--poolmetadatasize", "+" + bytesArg(bytes), l.VG + "/" + name}, Mutates: true})
	return err
}

// GrowPool adds bytes to a thin pool's data.
func (l LVM) GrowPool(ctx context.Context, name string, bytes int64) error {
	_, err := l.run(ctx, exec.Cmd{Args: []string{"lvextend", "--yes", "--size", "+" + bytesArg(bytes), l.VG + "/" + name}, Mutates: true})
	return err
}

// changePV runs a command that changes PVs or groups.
func (l LVM) changePV(ctx context.Context, args ...string) error {
	_, err := l.run(ctx, exec.Cmd{Args: args, Mutates: true})
	return pvClassify(err)
}

// bytesArg is a size LVM takes exactly: whole sectors, in bytes.
func bytesArg(n int64) string {
	return strconv.FormatInt((n+511)/512*512, 10) + "b"
}
