package backup

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"time"
)

// Policy says which backups prune keeps, with restic's semantics: keep the
// Last n backups, and the newest backup of each of the last n hours, days,
// ISO weeks and months that have one. A count of -1 keeps all of them. A
// backup kept by any rule is kept.
type Policy struct {
	Last, Hourly, Daily, Weekly, Monthly int
}

// Empty reports whether the policy keeps nothing: prune refuses it.
func (p Policy) Empty() bool { return p == Policy{} }

type bucket struct {
	count int
	key   func(t time.Time, nr int) int
	last  int
}

// Keep splits backups (of one volume) into those the policy keeps and those
// it removes, both newest first.
func (p Policy) Keep(backups []*Manifest) (keep, remove []*Manifest) {
	list := append([]*Manifest(nil), backups...)
	sort.SliceStable(list, func(i, j int) bool { return created(list[i]).After(created(list[j])) })
	bs := []bucket{
		{p.Last, func(_ time.Time, nr int) int { return nr }, -1},
		{p.Hourly, func(t time.Time, _ int) int { return t.Year()*1000000 + int(t.Month())*10000 + t.Day()*100 + t.Hour() }, -1},
		{p.Daily, func(t time.Time, _ int) int { return t.Year()*10000 + int(t.Month())*100 + t.Day() }, -1},
		{p.Weekly, func(t time.Time, _ int) int { y, w := t.ISOWeek(); return y*100 + w }, -1},
		{p.Monthly, func(t time.Time, _ int) int { return t.Year()*100 + int(t.Month()) }, -1},
	}
	for nr, m := range list {
		t := created(m)
		kept := false
		for i := range bs {
			b := &bs[i]
			if b.count == 0 {
				continue
			}
			// As restic, the oldest backup is kept while a rule has counts
			// left: that keeps the longest history the policy allows.
			if v := b.key(t, nr); v != b.last || nr == len(list)-1 {
				kept = true
				b.last = v
				if b.count > 0 {
					b.count--
				}
			}
		}
		if kept {
			keep = append(keep, m)
		} else {
			remove = append(remove, m)
		}
	}
	return keep, remove
}

func created(m *Manifest) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, m.CreatedAt)
	return t
}

// Delete removes the manifests of the given backups. Their chunks stay
// until GC. The caller holds an Exclusive lock.
func (r *Repo) Delete(uuids ...string) error {
	for _, u := range uuids {
		if !isID(u) {
			return fmt.Errorf("delete backup %s: %w", u, ErrNotFound)
		}
		if err := r.fs.Remove(r.p(manifestName(u))); err != nil {
			return fmt.Errorf("delete backup %s from %s: %w", u, r, err)
		}
	}
	if err := r.fs.SyncDir(r.p("manifests")); err != nil {
		return fmt.Errorf("delete backups from %s: %w", r, err)
	}
	return nil
}

// GCResult says what GC removed (or, in a dry run, would remove).
type GCResult struct {
	Chunks int
	Bytes  int64
}

// GC removes the chunks no manifest references, and temp files left by
// killed runs. It refuses to run while any manifest is unreadable: the
// chunks of a backup it cannot read would look unused. The caller holds an
// Exclusive lock, so no backup is writing chunks it has not yet named.
func (r *Repo) GC(dryRun bool) (GCResult, error) { return r.gc(dryRun, nil) }

// gc is GC as if the backups in without were already deleted.
func (r *Repo) gc(dryRun bool, without map[string]bool) (GCResult, error) {
	var res GCResult
	ms, bad, err := r.List()
	if err != nil {
		return res, err
	}
	if len(bad) > 0 {
		var errs []error
		for _, e := range bad {
			errs = append(errs, e)
		}
		return res, fmt.Errorf("gc %s: refused while %d manifests cannot be read (their chunks would look unused): %w",
			r, len(bad), errors.Join(errs...))
	}
	used := map[string]bool{}
	for _, m := range ms {
		if without[m.UUID] {
			continue
		}
		for _, h := range m.Chunks {
			used[h] = true
		}
	}
	for i := 0; i < 256; i++ {
		dir := fmt.Sprintf("chunks/%02x", i)
		var fis []fs.FileInfo
		if fis, err = r.fs.ReadDir(r.p(dir)); err != nil {
			return res, fmt.Errorf("gc %s: %w", r, err)
		}
		removed := false
		for _, fi := range fis {
			if used[fi.Name()] {
				continue
			}
			res.Chunks++
			res.Bytes += fi.Size()
			if dryRun {
				continue
			}
			if err = r.fs.Remove(r.p(dir, fi.Name())); err != nil {
				return res, fmt.Errorf("gc %s: %w", r, err)
			}
			removed = true
		}
		if removed {
			if err = r.fs.SyncDir(r.p(dir)); err != nil {
				return res, fmt.Errorf("gc %s: %w", r, err)
			}
		}
	}
	if dryRun {
		return res, nil
	}
	fis, err := r.fs.ReadDir(r.p("tmp"))
	if err != nil {
		return res, fmt.Errorf("gc %s: %w", r, err)
	}
	for _, fi := range fis {
		// Under the exclusive lock only a process trying to lock writes
		// here, and for an instant: what is older was left by a killed run.
		if time.Since(fi.ModTime()) < time.Minute {
			continue
		}
		if err := r.fs.Remove(r.p("tmp", fi.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("gc %s: %w", r, err)
		}
	}
	return res, nil
}

// PruneResult is what prune kept and removed, per volume uuid.
type PruneResult struct {
	Keep, Remove []*Manifest
	GC           GCResult
}

// Prune applies the policy to the backups of each volume (only volume
// uuid's, if not empty), deletes those it does not keep, and then collects
// the chunks nothing uses. With dryRun nothing changes. The caller holds an
// Exclusive lock.
func (r *Repo) Prune(p Policy, volumeUUID string, dryRun bool) (PruneResult, error) {
	var res PruneResult
	if p.Empty() {
		return res, errors.New("prune: no keep rule given: it would remove every backup")
	}
	ms, bad, err := r.List()
	if err != nil {
		return res, err
	}
	if len(bad) > 0 {
		var errs []error
		for _, e := range bad {
			errs = append(errs, e)
		}
		return res, fmt.Errorf("prune %s: refused while %d manifests cannot be read: %w", r, len(bad), errors.Join(errs...))
	}
	groups := map[string][]*Manifest{}
	var vols []string
	for _, m := range ms {
		if volumeUUID != "" && m.VolumeUUID != volumeUUID {
			continue
		}
		if groups[m.VolumeUUID] == nil {
			vols = append(vols, m.VolumeUUID)
		}
		groups[m.VolumeUUID] = append(groups[m.VolumeUUID], m)
	}
	sort.Strings(vols)
	var gone []string
	for _, v := range vols {
		k, rm := p.Keep(groups[v])
		res.Keep = append(res.Keep, k...)
		res.Remove = append(res.Remove, rm...)
		for _, m := range rm {
			gone = append(gone, m.UUID)
		}
	}
	if !dryRun && len(gone) > 0 {
		if err = r.Delete(gone...); err != nil {
			return res, err
		}
	}
	without := map[string]bool{}
	for _, u := range gone {
		without[u] = true
	}
	res.GC, err = r.gc(dryRun, without)
	return res, err
}
