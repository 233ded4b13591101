//go:build !linux

package directio

import (
	"io"
	"os"
)

const Align = 4096

func Buf(n int) []byte          { return make([]byte, 0, n) }
func Aligned([]byte) bool       { return false }
func Reopen(any, bool) *os.File { return nil }

func ReadAt(_ *os.File, r io.ReaderAt, b []byte, off int64) (int, error)  { return r.ReadAt(b, off) }
func WriteAt(_ *os.File, w io.WriterAt, b []byte, off int64) (int, error) { return w.WriteAt(b, off) }
