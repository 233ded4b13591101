// Package directio reads and writes files and block devices with O_DIRECT
// where they allow it. In the guest-like VMs blk runs on, copying gigabytes
// through the page cache costs more CPU than the work itself, and a copy,
// a backup or a restore then evicts nothing from the host's cache.
package directio

import (
	"errors"
	"io"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// Align is the alignment O_DIRECT wants of buffers, lengths and offsets;
// it covers every Linux file system and block device.
const Align = 4096

// Buf returns an empty slice of capacity n whose first byte is aligned.
func Buf(n int) []byte {
	b := make([]byte, n+Align)
	off := int(-uintptr(unsafe.Pointer(&b[0])) & (Align - 1))
	return b[off : off : off+n]
}

// Aligned says whether b's first byte is aligned.
func Aligned(b []byte) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(&b[0]))&(Align-1) == 0
}

// Reopen opens a second, O_DIRECT descriptor on the file or block device
// behind x, when x is one and allows it; nil otherwise. The caller's
// descriptor keeps its flags.
func Reopen(x any, write bool) *os.File {
	f, ok := x.(*os.File)
	if !ok {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	flag := os.O_RDONLY
	if write {
		flag = os.O_WRONLY
	}
	var d *os.File
	_ = rc.Control(func(fd uintptr) {
		d, _ = os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(fd)), flag|syscall.O_DIRECT, 0)
	})
	return d
}

// usable says whether b at off may go through an O_DIRECT descriptor.
func usable(d *os.File, b []byte, off int64) bool {
	return d != nil && len(b)%Align == 0 && off%Align == 0 && Aligned(b)
}

// ReadAt reads b at off through direct (from Reopen) when it can, else,
// and when O_DIRECT refuses it (EINVAL: a device with larger blocks),
// through r.
func ReadAt(direct *os.File, r io.ReaderAt, b []byte, off int64) (int, error) {
	return either(usable(direct, b, off), direct.ReadAt, r.ReadAt, b, off)
}

// WriteAt is ReadAt's twin for writes.
func WriteAt(direct *os.File, w io.WriterAt, b []byte, off int64) (int, error) {
	return either(usable(direct, b, off), direct.WriteAt, w.WriteAt, b, off)
}

func either(useDirect bool, direct, buffered func([]byte, int64) (int, error), b []byte, off int64) (int, error) {
	if useDirect {
		n, err := direct(b, off)
		if n != 0 || !errors.Is(err, syscall.EINVAL) {
			return n, err
		}
	}
	return buffered(b, off)
}
