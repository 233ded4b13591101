package backup

import (
	"io/fs"
	"os"
	"path"

	"github.com/pkg/sftp"
)

// SFTP is a repository's host reached over SFTP, in a session of blk's one
// SSH connection to it: chunks cross the connection once, and nothing runs
// on the host but sshd's own SFTP server.
type SFTP struct{ C *sftp.Client }

func (s SFTP) Open(name string) (File, error) { return s.open(name, os.O_RDONLY) }

func (s SFTP) CreateExcl(name string) (File, error) {
	return s.open(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
}

func (s SFTP) open(name string, flag int) (File, error) {
	f, err := s.C.OpenFile(name, flag)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Rename needs posix-rename@openssh.com: plain SFTP rename refuses to
// replace, and a manifest or lock is replaced atomically or not at all.
func (s SFTP) Rename(oldname, newname string) error { return s.C.PosixRename(oldname, newname) }
func (s SFTP) Remove(name string) error             { return s.C.Remove(name) }
func (s SFTP) Stat(name string) (fs.FileInfo, error) {
	return s.C.Stat(name)
}

func (s SFTP) ReadDir(name string) ([]fs.FileInfo, error) { return s.C.ReadDir(name) }

// MkdirAll makes each missing directory private, as OS does: chunks are
// the volumes' data.
func (s SFTP) MkdirAll(name string) error {
	if fi, err := s.C.Stat(name); err == nil && fi.IsDir() {
		return nil
	}
	if parent := path.Dir(name); parent != name {
		if err := s.MkdirAll(parent); err != nil {
			return err
		}
	}
	if err := s.C.Mkdir(name); err != nil {
		// Made meanwhile by another run: fine if it is a directory now.
		if fi, serr := s.C.Stat(name); serr == nil && fi.IsDir() {
			return nil
		}
		return err
	}
	return s.C.Chmod(name, 0o700)
}

// SyncDir opens the directory and fsyncs it (fsync@openssh.com): OpenSSH's
// server open(2)s a directory read-only like a file.
func (s SFTP) SyncDir(name string) error {
	d, err := s.C.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
