package lvm

import (
	"cmp"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/blk-project/blk/internal/exec"
)

// Extent is a byte range of a thin volume.
type Extent struct {
	Offset, Length int64
}

// Delta is what changed between two thin snapshots of one pool, in bytes of
// the thin volume: Changed must be read again (blocks written or newly
// mapped), Zeroed were unmapped (discarded) and read as zeros now. Blocks in
// neither are the same in both.
type Delta struct {
	BlockBytes int64
	Changed    []Extent
	Zeroed     []Extent
}

// ThinID is the pool's device id of a thin LV, which thin_delta names it by.
func (l LVM) ThinID(ctx context.Context, name string) (int64, error) {
	out, err := l.run(ctx, exec.Cmd{Args: []string{"lvs", "--reportformat", "json", "-o", "lv_name,thin_id",
		l.VG + "/" + name}})
	if err != nil {
		return 0, err
	}
	var rep struct {
		Report []struct {
			LV []struct {
				ThinID string `json:"thin_id"`
			} `json:"lv"`
		} `json:"report"`
	}
	if err = json.Unmarshal(out, &rep); err != nil {
		return 0, fmt.Errorf("parse lvs report: %w", err)
	}
	if len(rep.Report) != 1 || len(rep.Report[0].LV) != 1 {
		return 0, fmt.Errorf("lv %s/%s: %w", l.VG, name, ErrNotFound)
	}
	id, err := strconv.ParseInt(rep.Report[0].LV[0].ThinID, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("lv %s/%s is not a thin volume", l.VG, name)
	}
	return id, nil
}

// dmName is device-mapper's name of an LV, or of one of its layers
// ("tpool"): hyphens inside the VG and LV names are doubled, then the parts
// are joined by one.
func dmName(vg, lv string, layer ...string) string {
	return strings.Join(append([]string{strings.ReplaceAll(vg, "-", "--"), strings.ReplaceAll(lv, "-", "--")}, layer...), "-")
}

// MetadataSnapHeld says whether the pool holds a metadata snapshot: a
// killed backup may have left one, and a pool holds at most one.
func (l LVM) MetadataSnapHeld(ctx context.Context, pool string) (bool, error) {
	out, err := l.run(ctx, exec.Cmd{Args: []string{"dmsetup", "status", dmName(l.VG, pool, "tpool")}})
	if err != nil {
		return false, err
	}
	// <start> <len> thin-pool <transaction> <meta used/total> <data used/total> <held root> ...
	f := strings.Fields(string(out))
	if len(f) < 7 || f[2] != "thin-pool" {
		return false, fmt.Errorf("unexpected dmsetup status of pool %s/%s: %q", l.VG, pool, strings.TrimSpace(string(out)))
	}
	return f[6] != "-", nil
}

// ReserveMetadataSnap takes the pool's metadata snapshot, which thin_delta
// reads while the pool stays live. The caller must release it.
func (l LVM) ReserveMetadataSnap(ctx context.Context, pool string) error {
	_, err := l.run(ctx, exec.Cmd{Args: []string{"dmsetup", "message", dmName(l.VG, pool, "tpool"), "0",
		"reserve_metadata_snap"}, Mutates: true})
	return err
}

// ReleaseMetadataSnap drops the pool's metadata snapshot; none held is done.
func (l LVM) ReleaseMetadataSnap(ctx context.Context, pool string) error {
	held, err := l.MetadataSnapHeld(ctx, pool)
	if err != nil || !held {
		return err
	}
	_, err = l.run(ctx, exec.Cmd{Args: []string{"dmsetup", "message", dmName(l.VG, pool, "tpool"), "0",
		"release_metadata_snap"}, Mutates: true})
	return err
}

// ThinDelta compares two thin devices of the pool on its reserved metadata
// snapshot.
func (l LVM) ThinDelta(ctx context.Context, pool string, base, next int64) (Delta, error) {
	out, err := l.run(ctx, exec.Cmd{Args: []string{"thin_delta", "-m",
		"--snap1", strconv.FormatInt(base, 10), "--snap2", strconv.FormatInt(next, 10),
		"/dev/mapper/" + dmName(l.VG, pool+"_tmeta")}})
	if err != nil {
		return Delta{}, err
	}
	return parseThinDelta(out)
}

type deltaRange struct {
	Begin  int64 `xml:"begin,attr"`
	Length int64 `xml:"length,attr"`
}

func parseThinDelta(out []byte) (Delta, error) {
	var doc struct {
		XMLName       xml.Name `xml:"superblock"`
		DataBlockSize int64    `xml:"data_block_size,attr"`
		Diff          *struct {
			LeftOnly  []deltaRange `xml:"left_only"`
			RightOnly []deltaRange `xml:"right_only"`
			Different []deltaRange `xml:"different"`
			Same      []deltaRange `xml:"same"`
		} `xml:"diff"`
	}
	if err := xml.Unmarshal(out, &doc); err != nil {
		return Delta{}, fmt.Errorf("parse thin_delta output: %w", err)
	}
	if doc.DataBlockSize <= 0 || doc.Diff == nil {
		return Delta{}, errors.New("parse thin_delta output: no data_block_size or diff")
	}
	// A range past what bytes can say would wrap negative and read as
	// "nothing changed there": the backup would silently miss data.
	const most = math.MaxInt64 / 4
	if doc.DataBlockSize > most/512 {
		return Delta{}, fmt.Errorf("parse thin_delta output: data_block_size %d is out of range", doc.DataBlockSize)
	}
	d := Delta{BlockBytes: doc.DataBlockSize * 512}
	var bad error
	add := func(to *[]Extent, rs []deltaRange) {
		for _, r := range rs {
			if r.Begin < 0 || r.Length < 0 || r.Begin > most/d.BlockBytes || r.Length > most/d.BlockBytes {
				bad = fmt.Errorf("parse thin_delta output: range begin=%d length=%d is out of range", r.Begin, r.Length)
				return
			}
			*to = append(*to, Extent{Offset: r.Begin * d.BlockBytes, Length: r.Length * d.BlockBytes})
		}
	}
	add(&d.Changed, doc.Diff.Different)
	add(&d.Changed, doc.Diff.RightOnly)
	add(&d.Zeroed, doc.Diff.LeftOnly)
	if bad != nil {
		return Delta{}, bad
	}
	byOffset := func(a, b Extent) int { return cmp.Compare(a.Offset, b.Offset) }
	slices.SortFunc(d.Changed, byOffset)
	slices.SortFunc(d.Zeroed, byOffset)
	return d, nil
}
