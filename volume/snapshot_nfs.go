package volume

import (
	"context"
	"errors"
	"path"

	"github.com/blk-project/blk/nfs"
	"github.com/blk-project/blk/state"
)

// snapshotIn refuses an in-use NFS volume: its snapshot is a copy of the
// file, which takes time, and a guest writing meanwhile would leave a torn
// copy (Cinder keeps NFS snapshots off by default for the same reason).
func (p nfsProvider) snapshotIn(v state.Volume, status string) error {
	if status == state.InUse {
		return conflict("volume %q is in use: a snapshot on nfs backend %q is a copy of the volume's file, taken only of an available volume "+
			"(a guest writing during the copy would tear it): detach it first", v.Name, p.name)
	}
	return nil
}

// snapFile is a snapshot's file, next to its volume's.
func (p nfsProvider) snapFile(uuid string) string { return path.Join(p.b.Path, "snapshot-"+uuid) }

// snapshot copies the volume's file on the storage host, sparse.
func (p nfsProvider) snapshot(ctx context.Context, r *reverter, v state.Volume, sn state.Snapshot) (int64, string, error) {
	f, err := p.files()
	if err != nil {
		return 0, "", err
	}
	file := p.snapFile(sn.UUID)
	r.add("file "+file, func(ctx context.Context) error { return p.removeFile(ctx, f, file) })
	st, err := f.Copy(ctx, p.file(v.UUID), file)
	return st.SizeBytes, file, err
}

func (p nfsProvider) removeFile(ctx context.Context, f nfs.Files, file string) error {
	if _, err := f.Stat(ctx, file); errors.Is(err, nfs.ErrNotFound) {
		return nil
	}
	return f.Remove(ctx, file)
}

func (p nfsProvider) removeSnapshot(ctx context.Context, sn state.Snapshot) error {
	f, err := p.files()
	if err != nil {
		return err
	}
	return p.removeFile(ctx, f, p.snapFile(sn.UUID))
}

// revert copies the snapshot back over the volume's file (sparse; a
// preallocated volume is allocated in full again) and keeps the snapshot.
// A volume extended since keeps its size, as in Cinder: the copy is the
// snapshot's size, and is grown back to the volume's.
func (p nfsProvider) revert(ctx context.Context, v state.Volume, sn state.Snapshot) (bool, error) {
	f, err := p.files()
	if err != nil {
		return false, err
	}
	file := p.file(v.UUID)
	st, err := f.Copy(ctx, p.snapFile(sn.UUID), file)
	switch {
	case err != nil:
	case st.SizeBytes < v.SizeBytes:
		_, err = f.Grow(ctx, file, v.SizeBytes, !v.Thin)
	case !v.Thin:
		_, err = f.Preallocate(ctx, file, v.SizeBytes)
	}
	return false, err
}
