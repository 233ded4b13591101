package lvm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/fault"
)

// SnapshotTag ties a snapshot LV to its snapshot's UUID.
func SnapshotTag(uuid string) string { return "blk-snap-" + uuid }

// SnapshotOptions describe a snapshot of Origin (an LV of the group).
// SizeBytes is zero for a thin snapshot (it shares the pool), else the COW
// space of a thick one.
type SnapshotOptions struct {
	Name      string
	Origin    string
	SizeBytes int64
	Tags      []string
}

// cowOverhead is what a thick snapshot needs beyond its origin's size for
// its exception table: asked for, LVM trims the request to the most the
// snapshot can ever use, so a snapshot so sized never overflows.
func cowOverhead(origin int64) int64 { return origin/100 + 8<<20 }

// ThickSnapshotSize is the COW size that holds every block of origin.
func ThickSnapshotSize(origin int64) int64 { return origin + cowOverhead(origin) }

// Snapshot makes a snapshot LV and returns it as LVM made it. A thin one is
// made without the activation-skip flag LVM gives thin snapshots by
// default, so it is active and readable at once (a copy reads it, a clone
// is a volume like any other).
func (l LVM) Snapshot(ctx context.Context, o SnapshotOptions) (LV, error) {
	args := []string{"lvcreate", "--yes", "--snapshot", "--name", o.Name}
	if o.SizeBytes > 0 {
		args = append(args, "--size", strconv.FormatInt((o.SizeBytes+511)/512*512, 10)+"b")
	} else {
		args = append(args, "--setactivationskip", "n", "--activate", "y")
	}
	for _, t := range o.Tags {
		args = append(args, "--addtag", t)
	}
	if _, err := l.run(ctx, exec.Cmd{Args: append(args, l.VG+"/"+o.Origin), Mutates: true}); err != nil {
		return LV{}, err
	}
	lv, err := l.lv(ctx, o.Name, true)
	if errors.Is(err, errEmptyReport) {
		return LV{Name: o.Name, VG: l.VG, Tags: o.Tags}, nil
	}
	if err != nil {
		return LV{}, fmt.Errorf("read back: %w", err)
	}
	// blk's tags say what an LV is: one copied from the origin would make
	// the snapshot pass for the volume.
	return lv, l.Retag(ctx, lv, o.Tags, "blk-vol-", "blk-snap-", "blk-name-")
}

// Retag gives lv the tags want, taking off any other tag that starts with
// one of drop (one LVM carried over from an origin, or from a snapshot
// merged into it). Other tags stay.
func (l LVM) Retag(ctx context.Context, lv LV, want []string, drop ...string) error {
	var args []string
	for _, t := range lv.Tags {
		dropped := slices.ContainsFunc(drop, func(p string) bool { return strings.HasPrefix(t, p) })
		if dropped && !slices.Contains(want, t) {
			args = append(args, "--deltag", t)
		}
	}
	for _, t := range want {
		if !slices.Contains(lv.Tags, t) {
			args = append(args, "--addtag", t)
		}
	}
	if len(args) == 0 {
		return nil
	}
	_, err := l.run(ctx, exec.Cmd{Args: append(append([]string{"lvchange"}, args...), l.VG+"/"+lv.Name), Mutates: true})
	return err
}

// Merge rolls the origin of the snapshot LV name back to it, and LVM then
// removes the snapshot. The origin must not be open (blk only merges into
// an available volume): LVM would otherwise defer the merge to the next
// activation. A thick merge copies back, and lvconvert waits for it,
// polling every second rather than LVM's 15.
func (l LVM) Merge(ctx context.Context, name string, thin bool) error {
	args := []string{"lvconvert", "--yes", "--merge"}
	if !thin {
		args = append(args, "--interval", "1")
	}
	if _, err := l.run(ctx, exec.Cmd{Args: append(args, l.VG+"/"+name), Mutates: true}); err != nil {
		return err
	}
	// LVM defers a merge into an open origin, and says so only in passing:
	// a snapshot still there was not merged.
	if _, err := l.lv(ctx, name, true); err == nil {
		return fault.New(ErrInUse, "lvconvert deferred the merge of %s/%s (the volume's LV is open): it completes when the LV is next activated; "+
			"close what holds it ('lvs -o lv_name,lv_device_open %s'), then 'lvchange -an' and 'lvchange -ay' it", l.VG, name, l.VG)
	} else if !errors.Is(err, ErrNotFound) && !errors.Is(err, errEmptyReport) {
		return fmt.Errorf("read back: %w", err)
	}
	return nil
}
