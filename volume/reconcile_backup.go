package volume

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/blk-project/blk/lvm"
)

// Drift of backups on a storage host.
const (
	// DriftOrphanBackupSnap is a backup snapshot that is no thin volume's
	// base: its volume is gone or thick, or a killed backup left it.
	DriftOrphanBackupSnap = "orphan-backup-snapshot"
	// DriftHeldMetadataSnap is a thin pool's metadata snapshot reserved
	// with no backup running: the next backup of the pool releases it,
	// --fix does now.
	DriftHeldMetadataSnap = "held-metadata-snapshot"
)

// lookBackupSnaps reads the backup snapshots and the thin pools' metadata
// snapshots of each lvm backend on host.
func lookBackupSnaps(ctx context.Context, s *Service, host string) (func(*snapshot) []Drift, error) {
	type seenLV struct {
		backend string
		lv      lvm.LV
	}
	var snaps []seenLV
	held := map[string]bool{} // backend -> its pool holds a metadata snapshot
	lvms := map[string]lvm.LVM{}
	for _, bn := range slices.Sorted(maps.Keys(s.backendsOn(host, "lvm"))) {
		b := s.Config.Backends[bn]
		l, err := s.lvm(ctx, b)
		if err != nil {
			return nil, err
		}
		lvms[bn] = l
		lvs, err := l.Tagged(ctx, backupBaseTag)
		if err != nil {
			return nil, err
		}
		for _, lv := range lvs {
			snaps = append(snaps, seenLV{bn, lv})
		}
		if b.ThinPool != "" {
			h, err := l.MetadataSnapHeld(ctx, b.ThinPool)
			// An inactive pool has no -tpool device, and holds nothing.
			if err != nil && !strings.Contains(err.Error(), "does not exist") {
				return nil, err
			}
			held[bn] = h
		}
	}
	return func(snap *snapshot) []Drift {
		var out []Drift
		for _, f := range snaps {
			rest, ok := strings.CutPrefix(f.lv.Name, "_backup-")
			if !ok || len(rest) < 37 {
				continue
			}
			u := rest[:36]
			v, known := snap.vols[u]
			if snap.busy[u] {
				continue // a backup running now
			}
			based := isBase(f.lv)
			why := ""
			switch {
			case !known:
				why = "its volume " + u + " has no row (deleted)"
			case !v.Thin:
				why = "volume " + v.Name + " is thick: its backups keep no base"
			case !based:
				why = "a backup of " + v.Name + " was killed before it finished"
			default:
				continue
			}
			l, object := lvms[f.backend], f.lv.VG+"/"+f.lv.Name
			out = append(out, Drift{Host: host, Kind: DriftOrphanBackupSnap, Object: object, Volume: snap.name(u), uuid: u,
				Detail: "backup snapshot " + object + " is no volume's backup base: " + why,
				Action: "--fix removes it (lvremove " + object + "); no backup needs it",
				fix: func(ctx context.Context) error {
					lv, err := l.LV(ctx, f.lv.Name)
					switch {
					case errors.Is(err, lvm.ErrNotFound):
						return nil
					case err != nil:
						return err
					case !based && isBase(lv):
						// The run looked at as killed finished since.
						return errors.New("it is a backup's base now: left alone")
					}
					return l.Remove(ctx, f.lv.Name)
				}})
		}
		for _, bn := range slices.Sorted(maps.Keys(held)) {
			b := s.Config.Backends[bn]
			if !held[bn] || snap.busy[poolObject(b.Host, b.VG, b.ThinPool)] {
				continue
			}
			l, object := lvms[bn], b.VG+"/"+b.ThinPool
			out = append(out, Drift{Host: host, Kind: DriftHeldMetadataSnap, Object: object,
				Detail: fmt.Sprintf("thin pool %s holds a metadata snapshot and no backup is running (one was killed)", object),
				Action: fmt.Sprintf("--fix releases it (dmsetup message %s-%s-tpool 0 release_metadata_snap); the next backup would too",
					b.VG, b.ThinPool),
				fix: func(ctx context.Context) error {
					// A backup that started since may hold it for its
					// thin_delta, which would read freed metadata.
					op, err := s.State.Lock(ctx, "reconcile", poolObject(b.Host, b.VG, b.ThinPool))
					if errors.Is(err, ErrConflict) {
						return fmt.Errorf("a backup uses it now: left alone: %w", err)
					}
					if err != nil {
						return err
					}
					err = l.ReleaseMetadataSnap(ctx, b.ThinPool)
					return errors.Join(err, op.End(ctx, err))
				}})
		}
		return out
	}, nil
}

// isBase says whether a backup snapshot is the base of a backup (tagged
// with its manifest's uuid).
func isBase(lv lvm.LV) bool {
	return slices.ContainsFunc(lv.Tags, func(t string) bool {
		return strings.HasPrefix(t, "blk-backup-") && t != backupBaseTag
	})
}

// poolObject names a thin pool in the journal, for the lock of its one
// metadata snapshot.
func poolObject(host, vg, pool string) string { return "pool:" + host + ":" + vg + "/" + pool }
