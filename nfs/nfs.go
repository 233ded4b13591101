// Package nfs drives file volumes on an NFS export: the files, on the
// storage host that exports them, and the export's mounts, on the compute
// hosts. It parses machine-readable output (findmnt -J, stat -c, df
// --output) and maps NFS's known failures to typed errors.
package nfs

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/fault"
)

// The kinds of NFS failure callers act on.
var (
	ErrNotFound   = fault.ErrNotFound
	ErrNoSpace    = fault.ErrNoSpace
	ErrInUse      = fault.ErrInUse
	ErrNotMounted = errors.New("not mounted")
	ErrStale      = errors.New("stale file handle")
	ErrPermission = errors.New("permission denied")
	ErrServer     = errors.New("nfs server unreachable")
)

// classify gives a failed command's error its kind, keeping the command
// error (host, argv, stderr) as the cause, and adds the hint an operator
// needs for the NFS-specific ones.
func classify(err error, what string) error {
	var e *exec.Error
	if !errors.As(err, &e) {
		return err
	}
	s := e.Stderr
	has := func(subs ...string) bool {
		for _, sub := range subs {
			if strings.Contains(s, sub) {
				return true
			}
		}
		return false
	}
	switch {
	case has("Stale file handle", "Stale NFS file handle"):
		return fault.New(ErrStale, "%w: the export was removed or re-created on the server; "+
			"unmount %s (umount -l) and run the command again", err, what)
	case has("Permission denied", "access denied", "Operation not permitted"):
		return fault.New(ErrPermission, "%w: the export must give root on this host access "+
			"(no_root_squash, or files owned by the user qemu runs as)", err)
	case has("No space left on device", "Disk quota exceeded"):
		return fault.Wrap(ErrNoSpace, err)
	case has("not mounted", "no mount point specified"):
		return fault.Wrap(ErrNotMounted, err)
	case has("target is busy", "device is busy"):
		return fault.Wrap(ErrInUse, err)
	case has("Connection refused", "No route to host", "timed out", "Network is unreachable", "Host is down"):
		return fault.New(ErrServer, "%w: check that the NFS server is up and that %s can reach it (TCP 2049)", err, e.Host)
	case has("No such file or directory"):
		return fault.Wrap(ErrNotFound, err)
	}
	return err
}

func run(ctx context.Context, r exec.Runner, cmd exec.Cmd, what string) ([]byte, error) {
	res, err := r.Run(ctx, cmd)
	if err != nil {
		return nil, classify(err, what)
	}
	return res.Stdout, nil
}

// Files are the volume files in the export's directory, on the host that
// exports it: blk makes and removes them there, not through a mount.
type Files struct{ Run exec.Runner }

// File is a volume file as stat sees it.
type File struct {
	SizeBytes      int64 // apparent
	AllocatedBytes int64 // blocks the filesystem gave it
}

// errEmpty is a read-back a dry run skipped.
var errEmpty = errors.New("empty stat output")

// Create makes a sparse file of size: nothing is allocated until written.
// truncate resizes a file that is there: the caller makes sure none is.
func (f Files) Create(ctx context.Context, file string, size int64) (File, error) {
	if _, err := run(ctx, f.Run, exec.Cmd{Args: []string{"truncate", "--size", strconv.FormatInt(size, 10), file}, Mutates: true}, file); err != nil {
		return File{}, err
	}
	return f.readBack(ctx, file, size)
}

// Preallocate gives every block of the file to it now, as Cinder does with
// nfs_sparsed_volumes=false, so a full export fails the create, not the
// guest's writes later.
func (f Files) Preallocate(ctx context.Context, file string, size int64) (File, error) {
	if _, err := run(ctx, f.Run, exec.Cmd{Args: []string{"fallocate", "--length", strconv.FormatInt(size, 10), file}, Mutates: true}, file); err != nil {
		return File{}, err
	}
	return f.readBack(ctx, file, size)
}

// Grow lengthens the file to size, unless it is that long already, and
// allocates the new part too when preallocate. truncate is given ">size"
// (at least): whatever raced it, truncate never shortens the file.
func (f Files) Grow(ctx context.Context, file string, size int64, preallocate bool) (File, error) {
	st, err := f.Stat(ctx, file)
	if err != nil {
		return st, err
	}
	if st.SizeBytes < size {
		if _, err = run(ctx, f.Run, exec.Cmd{Args: []string{"truncate", "--size", ">" + strconv.FormatInt(size, 10), file}, Mutates: true}, file); err != nil {
			return st, err
		}
		if st, err = f.readBack(ctx, file, size); err != nil || !preallocate {
			return st, err
		}
	}
	if preallocate && st.AllocatedBytes < st.SizeBytes {
		return f.Preallocate(ctx, file, st.SizeBytes)
	}
	return st, nil
}

func (f Files) readBack(ctx context.Context, file string, size int64) (File, error) {
	st, err := f.stat(ctx, file, true)
	if errors.Is(err, errEmpty) {
		return File{SizeBytes: size}, nil
	}
	if err != nil {
		return File{}, fmt.Errorf("read back: %w", err)
	}
	return st, nil
}

// Stat reads a file's apparent and allocated size; ErrNotFound if none.
func (f Files) Stat(ctx context.Context, file string) (File, error) {
	return f.stat(ctx, file, false)
}

func (f Files) stat(ctx context.Context, file string, observes bool) (File, error) {
	out, err := run(ctx, f.Run, exec.Cmd{Args: []string{"stat", "--format", "%s,%b,%B", file}, Observes: observes}, file)
	if err != nil {
		return File{}, err
	}
	return parseStat(out)
}

func parseStat(out []byte) (File, error) {
	s := strings.TrimSpace(string(out))
	if s == "" {
		return File{}, errEmpty
	}
	var n [3]int64
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return File{}, fmt.Errorf("parse stat output %q: want size,blocks,block size", s)
	}
	for i, p := range parts {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return File{}, fmt.Errorf("parse stat output %q: %w", s, err)
		}
		n[i] = v
	}
	return File{SizeBytes: n[0], AllocatedBytes: n[1] * n[2]}, nil
}

// Listed is a volume file of a directory listing.
type Listed struct {
	Name string
	File
}

// List lists the files of dir whose names start with prefix, with their
// sizes: one find, however many there are.
func (f Files) List(ctx context.Context, dir, prefix string) ([]Listed, error) {
	out, err := run(ctx, f.Run, exec.Cmd{Args: []string{"find", dir, "-maxdepth", "1", "-type", "f", "-name", prefix + "*",
		"-printf", `%f\t%s\t%b\n`}}, dir)
	if err != nil {
		return nil, err
	}
	var files []Listed
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		p := strings.Split(line, "\t")
		if len(p) != 3 {
			continue // a name with a tab or newline in it is none of blk's
		}
		size, err1 := strconv.ParseInt(p[1], 10, 64)
		blocks, err2 := strconv.ParseInt(p[2], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("parse find output %q: %w", line, err)
		}
		// find's %b counts 512-byte blocks.
		files = append(files, Listed{Name: p[0], File: File{SizeBytes: size, AllocatedBytes: blocks * 512}})
	}
	return files, nil
}

// Remove deletes the file; one already gone is fine.
func (f Files) Remove(ctx context.Context, file string) error {
	_, err := run(ctx, f.Run, exec.Cmd{Args: []string{"rm", "--force", "--", file}, Mutates: true}, file)
	return err
}

// FS is the export's filesystem.
type FS struct {
	SizeBytes, FreeBytes int64
}

// Usage reads the size and free space of the filesystem holding dir.
func (f Files) Usage(ctx context.Context, dir string) (FS, error) {
	out, err := run(ctx, f.Run, exec.Cmd{Args: []string{"df", "--block-size=1", "--output=size,avail", dir}}, dir)
	if err != nil {
		return FS{}, err
	}
	return parseDF(out)
}

func parseDF(out []byte) (FS, error) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		return FS{}, fmt.Errorf("parse df output %q: want a header and one line", out)
	}
	f := strings.Fields(lines[1])
	if len(f) != 2 {
		return FS{}, fmt.Errorf("parse df output %q: want size and avail", lines[1])
	}
	size, err1 := strconv.ParseInt(f[0], 10, 64)
	free, err2 := strconv.ParseInt(f[1], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return FS{}, fmt.Errorf("parse df output: %w", err)
	}
	return FS{SizeBytes: size, FreeBytes: free}, nil
}

// MountRoot holds blk's mounts, one per export.
const MountRoot = "/var/lib/blk/mnt"

// MountPoint is where blk mounts export on a compute host: named by a hash
// of the export, as Nova does, so one export has one mount per host.
func MountPoint(export string) string {
	sum := md5.Sum([]byte(export))
	return path.Join(MountRoot, hex.EncodeToString(sum[:]))
}

// DefaultOptions are tried in turn when the backend sets no mount_options:
// the newest NFS version first, then the system's default, as Cinder does.
var DefaultOptions = []string{"vers=4.2", "vers=4.1", ""}

// MountWait bounds one mount attempt: a server that does not answer must
// not hang blk (mount.nfs itself retries for two minutes).
var MountWait = 60 * time.Second

// Mounts are the NFS mounts of one compute host.
type Mounts struct{ Run exec.Runner }

// Mount is one line of findmnt.
type Mount struct {
	Target  string `json:"target"`
	Source  string `json:"source"`
	FSType  string `json:"fstype"`
	Options string `json:"options"`
}

// At reads what is mounted at dir; ErrNotMounted if nothing is.
func (m Mounts) At(ctx context.Context, dir string) (Mount, error) {
	res, err := m.Run.Run(ctx, exec.Cmd{Args: []string{"findmnt", "--json", "--mountpoint", dir}})
	// findmnt exits 1, printing nothing, when nothing is mounted there; it
	// also exits 1 when it fails, saying why.
	var e *exec.Error
	if errors.As(err, &e) && e.ExitCode == 1 && strings.TrimSpace(string(res.Stdout)) == "" && strings.TrimSpace(e.Stderr) == "" {
		return Mount{}, fmt.Errorf("%s: %s: %w", m.Run.Host(), dir, ErrNotMounted)
	}
	if err != nil {
		return Mount{}, err
	}
	var out struct {
		Filesystems []Mount `json:"filesystems"`
	}
	if err := json.Unmarshal(res.Stdout, &out); err != nil {
		return Mount{}, fmt.Errorf("parse findmnt output: %w", err)
	}
	if len(out.Filesystems) == 0 {
		return Mount{}, fmt.Errorf("%s: %s: %w", m.Run.Host(), dir, ErrNotMounted)
	}
	// Mounted over and over, the last one is what paths resolve to.
	return out.Filesystems[len(out.Filesystems)-1], nil
}

// Under lists the NFS mounts whose mount point is under root.
func (m Mounts) Under(ctx context.Context, root string) ([]Mount, error) {
	res, err := m.Run.Run(ctx, exec.Cmd{Args: []string{"findmnt", "--json", "--list", "--types", "nfs,nfs4",
		"--output", "TARGET,SOURCE,FSTYPE,OPTIONS"}})
	// findmnt exits 1, printing nothing, when nothing matches.
	var e *exec.Error
	if errors.As(err, &e) && e.ExitCode == 1 && strings.TrimSpace(string(res.Stdout)) == "" && strings.TrimSpace(e.Stderr) == "" {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out struct {
		Filesystems []Mount `json:"filesystems"`
	}
	if err := json.Unmarshal(res.Stdout, &out); err != nil {
		return nil, fmt.Errorf("parse findmnt output: %w", err)
	}
	var under []Mount
	for _, mnt := range out.Filesystems {
		if strings.HasPrefix(mnt.Target, root+"/") {
			under = append(under, mnt)
		}
	}
	return under, nil
}

// Check stats the mounted filesystem, within a few seconds: a stale handle
// or a server gone shows here, before a domain is given a file on it.
func (m Mounts) Check(ctx context.Context, dir string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := m.Run.Run(ctx, exec.Cmd{Args: []string{"stat", "--file-system", "--format", "%b", dir}})
	if err != nil && ctx.Err() != nil {
		return fault.New(ErrServer, "%s: %s did not answer within 10s: the NFS server is unreachable or hung", m.Run.Host(), dir)
	}
	return classify(err, dir)
}

// Mount mounts export at dir, made first if needed. Each options string of
// tries is tried until one works; a version the server or client refuses
// moves on to the next, any other failure stops.
func (m Mounts) Mount(ctx context.Context, export, dir string, tries []string) error {
	if _, err := run(ctx, m.Run, exec.Cmd{Args: []string{"mkdir", "--parents", dir}, Mutates: true}, dir); err != nil {
		return err
	}
	var errs []error
	for _, opts := range tries {
		args := []string{"mount", "-t", "nfs"}
		if opts != "" {
			args = append(args, "-o", opts)
		}
		mctx, cancel := context.WithTimeout(ctx, MountWait)
		_, err := m.Run.Run(mctx, exec.Cmd{Args: append(args, export, dir), Mutates: true})
		timedOut := mctx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil {
			return nil
		}
		if timedOut {
			return fault.New(ErrServer, "%s: mount %s: no answer within %v: check that the NFS server is up and that %s can reach it (TCP 2049)",
				m.Run.Host(), export, MountWait, m.Run.Host())
		}
		errs = append(errs, err)
		if !versionRefused(err) {
			err = classify(errors.Join(errs...), dir)
			if errors.Is(err, ErrNotFound) {
				err = fmt.Errorf("%w: the server exports no such path: check 'exportfs -v' on it, and the backend's export", err)
			}
			return err
		}
	}
	return fmt.Errorf("no NFS version in %q worked: %w", tries, errors.Join(errs...))
}

// versionRefused is a mount that another NFS version may make.
func versionRefused(err error) bool {
	var e *exec.Error
	if !errors.As(err, &e) {
		return false
	}
	for _, s := range []string{"incorrect mount option", "Protocol not supported", "requested NFS version", "not supported"} {
		if strings.Contains(e.Stderr, s) {
			return true
		}
	}
	return false
}

// Unmount unmounts dir and removes the empty directory. Not mounted is
// done already; busy is ErrInUse, and the mount stays.
func (m Mounts) Unmount(ctx context.Context, dir string) error {
	_, err := run(ctx, m.Run, exec.Cmd{Args: []string{"umount", dir}, Mutates: true}, dir)
	if err != nil && !errors.Is(err, ErrNotMounted) {
		return err
	}
	return m.RemoveDir(ctx, dir)
}

// RemoveDir removes the empty mount point. One that is not empty is not
// blk's to remove, and stays.
func (m Mounts) RemoveDir(ctx context.Context, dir string) error {
	_, err := run(ctx, m.Run, exec.Cmd{Args: []string{"rmdir", "--ignore-fail-on-non-empty", dir}, Mutates: true}, dir)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Copy copies the file src to dst on the storage host, sparse: runs of
// zeros become holes, so a snapshot of a sparse volume stays as small as it.
// dst is made or overwritten.
func (f Files) Copy(ctx context.Context, src, dst string) (File, error) {
	if _, err := run(ctx, f.Run, exec.Cmd{Args: []string{"cp", "--sparse=always", "--", src, dst}, Mutates: true}, dst); err != nil {
		return File{}, err
	}
	return f.readBack(ctx, dst, 0)
}
