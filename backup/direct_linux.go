package backup

import (
	"errors"
	"os"
	"syscall"

	"github.com/blk-project/blk/internal/directio"
)

// Chunks are written with O_DIRECT where the file system allows it: on
// this kind of machine (a VM, 2 cores) copying them through the page cache
// cost more CPU than compressing them (about 2 s of system time per 2 GiB
// written), and a backup or restore evicts nothing from the cache of the
// host it runs on. directio has the alignment rules.

// createDirect creates name (O_EXCL) on the local file system for writing
// with O_DIRECT; nil when the file system refuses direct I/O. Such a file
// system (tmpfs before Linux 6.6) may refuse only after it made the file:
// made by this call (O_EXCL), it is removed, so the caller can create it
// without O_DIRECT.
func createDirect(name string) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_DIRECT, 0o600)
	if errors.Is(err, syscall.EINVAL) {
		if rerr := os.Remove(name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return nil, rerr
		}
		return nil, nil
	}
	return f, err
}

// writeDirect writes data at the start of f, opened by createDirect: the
// aligned body directly, the tail (O_DIRECT lengths are whole blocks)
// through the page cache once O_DIRECT is cleared. A file system that
// opens with O_DIRECT but refuses the write (EINVAL: a larger block size)
// gets all of it through the page cache.
func writeDirect(f *os.File, data []byte) error {
	body := len(data) &^ (directio.Align - 1)
	if !directio.Aligned(data) {
		body = 0
	}
	if body > 0 {
		if n, err := f.Write(data[:body]); n == 0 && errors.Is(err, syscall.EINVAL) {
			body = 0
		} else if err != nil {
			return err
		}
	}
	if body == len(data) {
		return nil
	}
	if err := setDirect(f, false); err != nil {
		return err
	}
	_, err := f.Write(data[body:])
	return err
}

func setDirect(f *os.File, on bool) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		fl, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
		if e != 0 {
			serr = e
			return
		}
		if on {
			fl |= syscall.O_DIRECT
		} else {
			fl &^= syscall.O_DIRECT
		}
		if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETFL, fl); e != 0 {
			serr = e
		}
	})
	if err == nil {
		err = serr
	}
	return err
}
