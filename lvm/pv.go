package lvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/blk-project/blk/internal/exec"
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
	if errors.As(err, new(*Error)) || !errors.As(err, &e) {
		return err
	}
	if strings.Contains(e.Stderr, "without -ff") || strings.Contains(e.Stderr, "is already in volume group") {
		return &Error{Kind: ErrInUse, Err: e}
	}
	return err
}

// PVs lists every PV the host sees, in any group or none.
func (l LVM) PVs(ctx context.Context) ([]PV, error) {
	out, err := l.run(ctx, false, "pvs", "--reportformat", "json", "--units", "b", "--nosuffix",
		"-o", "pv_name,vg_name,pv_size,pv_free")
	if err != nil {
		return nil, err
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
func (l LVM) Detail(ctx context.Context) (GroupDetail, error) {
	out, err := l.run(ctx, false, "vgs", "--reportformat", "json", "--units", "b", "--nosuffix",
		"-o", "vg_name,vg_size,vg_free,lv_count,vg_extent_size,vg_tags", l.VG)
	if err != nil {
		return GroupDetail{}, err
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
	_, err := l.runPV(ctx, true, "pvcreate", "--yes", dev)
	return err
}

// RemovePV wipes the PV label off dev.
func (l LVM) RemovePV(ctx context.Context, dev string) error {
	_, err := l.runPV(ctx, true, "pvremove", "--yes", dev)
	return err
}

// CreateGroup makes the group on devs, tagged blk so it is known as blk's.
func (l LVM) CreateGroup(ctx context.Context, devs []string) error {
	_, err := l.runPV(ctx, true, append([]string{"vgcreate", "--addtag", Tag, l.VG}, devs...)...)
	return err
}

// RemoveGroup removes the group and every LV in it.
func (l LVM) RemoveGroup(ctx context.Context) error {
	_, err := l.runPV(ctx, true, "vgremove", "--yes", l.VG)
	return err
}

// ExtendGroup adds PVs to the group.
func (l LVM) ExtendGroup(ctx context.Context, devs []string) error {
	_, err := l.runPV(ctx, true, append([]string{"vgextend", l.VG}, devs...)...)
	return err
}

// ReduceGroup takes unused PVs out of the group.
func (l LVM) ReduceGroup(ctx context.Context, devs []string) error {
	_, err := l.runPV(ctx, true, append([]string{"vgreduce", l.VG}, devs...)...)
	return err
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
	_, err := l.run(ctx, true, "lvcreate", "--yes", "--type", "thin-pool", "--name", name,
		"--size", bytesArg(p.DataBytes), "--chunksize", strconv.FormatInt(p.ChunkBytes>>10, 10)+"k",
		"--poolmetadatasize", bytesArg(p.MetadataBytes), "--poolmetadataspare", "y",
		"--addtag", Tag, l.VG)
	return err
}

// Pool reads a thin pool's sizes; ErrNotFound if there is none.
func (l LVM) Pool(ctx context.Context, name string) (ThinPool, error) {
	out, err := l.run(ctx, false, "lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
		"-o", "lv_size,lv_metadata_size,chunk_size", l.VG+"/"+name)
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
	_, err := l.run(ctx, true, "lvextend", "--yes", "--poolmetadatasize", "+"+bytesArg(bytes), l.VG+"/"+name)
	return err
}

// GrowPool adds bytes to a thin pool's data.
func (l LVM) GrowPool(ctx context.Context, name string, bytes int64) error {
	_, err := l.run(ctx, true, "lvextend", "--yes", "--size", "+"+bytesArg(bytes), l.VG+"/"+name)
	return err
}

func (l LVM) runPV(ctx context.Context, mutates bool, args ...string) ([]byte, error) {
	out, err := l.run(ctx, mutates, args...)
	if err != nil {
		return nil, pvClassify(err)
	}
	return out, nil
}

// bytesArg is a size LVM takes exactly: whole sectors, in bytes.
func bytesArg(n int64) string {
	return strconv.FormatInt((n+511)/512*512, 10) + "b"
}
