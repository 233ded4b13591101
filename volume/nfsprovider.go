package volume

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/fault"
	"github.com/blk-project/blk/nfs"
	"github.com/blk-project/blk/state"
)

// nfsProvider makes volumes as raw files on an NFS export, and attaches
// them through one mount of the export per compute host, as Cinder's NFS
// driver with Nova's libvirt NFS volume driver.
type nfsProvider struct {
	s    *Service
	name string
	b    config.Backend
}

// A file is sparse unless preallocated: --thin says what is the default.
func (p nfsProvider) thin(o CreateOptions) (bool, error) {
	if o.Thin && o.Preallocate {
		return false, invalid("--thin and --preallocate: choose one")
	}
	return !o.Preallocate, nil
}

func (p nfsProvider) files() (nfs.Files, error) {
	r, err := p.s.Hosts.Runner(p.b.Host)
	return nfs.Files{Run: r}, err
}

// file is the volume's file on the storage host.
func (p nfsProvider) file(uuid string) string { return path.Join(p.b.Path, lvName(uuid)) }

func (p nfsProvider) make(ctx context.Context, r *reverter, v state.Volume) (int64, string, error) {
	f, err := p.files()
	if err != nil {
		return 0, "", err
	}
	file := p.file(v.UUID)
	// The name holds the volume's UUID: a file there is what a killed
	// create of this very volume made.
	undo := func(ctx context.Context) error { return f.Remove(ctx, file) }
	st, err := f.Stat(ctx, file)
	if err == nil {
		r.add("file", undo)
		if !v.Thin && st.AllocatedBytes < st.SizeBytes { // killed before or during fallocate
			st, err = f.Preallocate(ctx, file, st.SizeBytes)
		}
		return st.SizeBytes, file, err
	}
	if !errors.Is(err, nfs.ErrNotFound) {
		return 0, "", err
	}
	if !v.Thin {
		var fs nfs.FS
		if fs, err = f.Usage(ctx, p.b.Path); err != nil {
			return 0, "", err
		}
		if v.SizeBytes > fs.FreeBytes {
			return 0, "", fault.New(ErrConflict, "%s: %s has %s free, %s needed", f.Run.Host(), p.b.Path, FormatSize(fs.FreeBytes), FormatSize(v.SizeBytes))
		}
	}
	r.add("file", undo) // a failed truncate or fallocate may leave it
	st, err = f.Create(ctx, file, v.SizeBytes)
	if err == nil && !v.Thin {
		st, err = f.Preallocate(ctx, file, v.SizeBytes)
	}
	if errors.Is(err, nfs.ErrNoSpace) {
		err = fault.Wrap(ErrConflict, err)
	}
	return st.SizeBytes, file, err
}

func (p nfsProvider) exists(ctx context.Context, v state.Volume) (bool, error) {
	f, err := p.files()
	if err != nil {
		return false, err
	}
	_, err = f.Stat(ctx, p.file(v.UUID))
	if errors.Is(err, nfs.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// grow lengthens the file; the guest's QEMU, asked to resize, reads the
// new length through the mount.
func (p nfsProvider) grow(ctx context.Context, v state.Volume, size int64) (int64, error) {
	f, err := p.files()
	if err != nil {
		return 0, err
	}
	st, err := f.Grow(ctx, p.file(v.UUID), size, !v.Thin)
	if errors.Is(err, nfs.ErrNoSpace) {
		err = fault.Wrap(ErrConflict, err)
	}
	return st.SizeBytes, err
}

func (nfsProvider) reveal(context.Context, state.Volume, state.AttachmentRecord, int64) error {
	return nil
}

func (p nfsProvider) remove(ctx context.Context, v state.Volume, wipe bool) error {
	f, err := p.files()
	if err != nil {
		return err
	}
	file := p.file(v.UUID)
	st, err := f.Stat(ctx, file)
	if errors.Is(err, nfs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if wipe {
		if err := p.s.wipe(ctx, f.Run, file, st.SizeBytes, v.Name, false); err != nil {
			return fmt.Errorf("wipe: %w", err)
		}
	}
	return f.Remove(ctx, file)
}

func (p nfsProvider) fill(ctx context.Context, info *BackendInfo) error {
	f, err := p.files()
	if err != nil {
		return err
	}
	fs, err := f.Usage(ctx, p.b.Path)
	if err != nil {
		return err
	}
	info.SizeBytes, info.FreeBytes = fs.SizeBytes, fs.FreeBytes
	if fs.SizeBytes > 0 {
		info.UsedPercent = 100 * float64(fs.SizeBytes-fs.FreeBytes) / float64(fs.SizeBytes)
	}
	// Sparse files promise what the state file says blk made there.
	thinCapacity(info, p.b.OverSubscription(), fs.SizeBytes, info.AllocatedBytes)
	return nil
}

// allocated asks the storage host: the state file cannot know how much of
// a sparse file the guest has written. Unknown (host down) is left out:
// show reads the state file, and must work without the host.
func (p nfsProvider) allocated(ctx context.Context, v state.Volume) (int64, bool) {
	f, err := p.files()
	if err != nil {
		return 0, false
	}
	st, err := f.Stat(ctx, p.file(v.UUID))
	return st.AllocatedBytes, err == nil
}

func (p nfsProvider) connection(v state.Volume, o AttachOptions) state.ConnectionInfo {
	mp := nfs.MountPoint(p.b.Export)
	file := path.Join(mp, lvName(v.UUID))
	return state.ConnectionInfo{DriverVolumeType: "nfs", Export: p.b.Export, MountPoint: mp, File: file, Format: "raw",
		DevicePath: file, Bus: o.Bus, ReadOnly: o.ReadOnly}
}

// mountOptions are the backend's, or else the versions to try in turn.
func (p nfsProvider) mountOptions() []string {
	if p.b.MountOptions != "" {
		return []string{p.b.MountOptions}
	}
	return nfs.DefaultOptions
}

// connect mounts the export on the compute host, unless it is mounted
// there already (by another volume's attach, by hand, or by a killed run),
// then plugs the file in, its format given: a guest can write a qcow2
// header into a raw volume, and QEMU must never probe it (Cinder bug
// 1350504).
func (p nfsProvider) connect(ctx context.Context, r *reverter, v state.Volume, rec *state.AttachmentRecord) error {
	compute, err := p.s.Hosts.Runner(rec.Host)
	if err != nil {
		return err
	}
	hv, err := p.s.Hosts.Hypervisor(ctx, rec.Host)
	if err != nil {
		return err
	}
	m, conn := nfs.Mounts{Run: compute}, rec.Conn
	step := func(name string) error {
		rec.Step = name
		return p.s.State.UpdateAttachment(ctx, *rec)
	}
	mnt, err := m.At(ctx, conn.MountPoint)
	switch {
	case errors.Is(err, nfs.ErrNotMounted):
		r.add("nfs mount", func(ctx context.Context) error {
			return p.s.releaseMount(ctx, m, hv, conn, v.UUID)
		})
		if err = m.Mount(ctx, conn.Export, conn.MountPoint, p.mountOptions()); err != nil {
			return err
		}
	case err != nil:
		return err
	case mnt.Source != conn.Export:
		return conflict("%s: %s is mounted from %s, not %s: blk will not mount over it", rec.Host, conn.MountPoint, mnt.Source, conn.Export)
	default:
		// Reused: the last attachment's detach unmounts it.
		r.add("nfs mount", func(ctx context.Context) error {
			return p.s.releaseMount(ctx, m, hv, conn, v.UUID)
		})
		if err = m.Check(ctx, conn.MountPoint); err != nil {
			return err
		}
	}
	if err = step("mounted"); err != nil {
		return err
	}
	if err = p.s.plug(ctx, r, hv, rec, hypervisor.Disk{Source: conn.File, File: true}); err != nil {
		return err
	}
	return step("libvirt-attached")
}

func (p nfsProvider) release(ctx context.Context, rec state.AttachmentRecord) []detachStep {
	return []detachStep{{"unmounted", func() error {
		compute, err := p.s.Hosts.Runner(rec.Host)
		if err != nil {
			return err
		}
		hv, err := p.s.Hosts.Hypervisor(ctx, rec.Host)
		if err != nil {
			return err
		}
		return p.s.releaseMount(ctx, nfs.Mounts{Run: compute}, hv, rec.Conn, rec.Volume)
	}}}
}

// releaseMount unmounts the export from the compute host once nothing
// needs it: no other attachment on the host uses the export in the state
// file (attaches in progress included), what is mounted there is the
// export, and no domain has a disk on a file under it. A mount blk did not
// make (elsewhere, or of something else) is never touched.
func (s *Service) releaseMount(ctx context.Context, m nfs.Mounts, hv hypervisor.Hypervisor, conn state.ConnectionInfo, uuid string) error {
	host := m.Run.Host()
	atts, err := s.State.AttachmentsOn(ctx, host)
	if err != nil {
		return err
	}
	for _, a := range atts {
		if a.Volume != uuid && a.Conn.DriverVolumeType == "nfs" && a.Conn.MountPoint == conn.MountPoint {
			return nil
		}
	}
	mnt, err := m.At(ctx, conn.MountPoint)
	if errors.Is(err, nfs.ErrNotMounted) {
		return m.RemoveDir(ctx, conn.MountPoint) // a failed mount may have made it
	}
	if err != nil {
		return err
	}
	if mnt.Source != conn.Export {
		return nil
	}
	if user, err := domainOnMount(ctx, hv, conn.MountPoint); err != nil || user != "" {
		if err != nil {
			return fmt.Errorf("%s: cannot tell whether a domain uses %s, so it stays mounted: %w", host, conn.MountPoint, err)
		}
		return nil
	}
	if err := m.Unmount(ctx, conn.MountPoint); err != nil {
		if errors.Is(err, nfs.ErrInUse) {
			return fmt.Errorf("%w: something on %s still uses it ('fuser -vm %s' tells what)", err, host, conn.MountPoint)
		}
		return err
	}
	return nil
}

// domainOnMount names a domain with a disk on a file under dir, or "".
func domainOnMount(ctx context.Context, hv hypervisor.Hypervisor, dir string) (string, error) {
	return domainOnSource(ctx, hv, func(src string) bool { return strings.HasPrefix(src, dir+"/") })
}
