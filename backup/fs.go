package backup

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// FS is the file access a repository needs on its host. Local repositories
// use OS; over SSH each method maps onto one *sftp.Client call (Open,
// OpenFile with O_EXCL, PosixRename, Remove, ReadDir, MkdirAll, Stat), and
// File.Sync onto the fsync@openssh.com extension; SyncDir opens the
// directory read-only and syncs that handle the same way (OpenSSH's
// sftp-server open(2)s it, and fsync works on a directory fd). Paths are slash-separated
// and relative to nothing: the repository joins them onto its root.
type FS interface {
	Open(name string) (File, error)
	// CreateExcl creates name for writing and fails if it exists.
	CreateExcl(name string) (File, error)
	// Rename replaces newname atomically (POSIX rename).
	Rename(oldname, newname string) error
	Remove(name string) error
	ReadDir(name string) ([]fs.FileInfo, error)
	MkdirAll(name string) error
	Stat(name string) (fs.FileInfo, error)
	// SyncDir makes the entries of directory name durable (fsync of the
	// directory), so a rename survives a crash of the host.
	SyncDir(name string) error
}

// File is an open repository file.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	Stat() (fs.FileInfo, error)
	Sync() error
	Close() error
}

// OS is the local file system.
type OS struct{}

func (OS) Open(name string) (File, error) { return os.Open(name) }

func (OS) CreateExcl(name string) (File, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

func (OS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }
func (OS) Remove(name string) error             { return os.Remove(name) }
func (OS) MkdirAll(name string) error           { return os.MkdirAll(name, 0o700) }
func (OS) Stat(name string) (fs.FileInfo, error) {
	return os.Stat(name)
}

func (OS) ReadDir(name string) ([]fs.FileInfo, error) {
	es, err := os.ReadDir(name)
	if err != nil {
		return nil, err
	}
	out := make([]fs.FileInfo, 0, len(es))
	for _, e := range es {
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, fi)
	}
	return out, nil
}

func (OS) SyncDir(name string) error {
	d, err := os.Open(filepath.Clean(name))
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
