//go:build !linux

package backup

import "os"

const directAlign = 4096

func alignedBuf(n int) []byte                   { return make([]byte, 0, n) }
func isAligned([]byte) bool                     { return false }
func createDirect(string) (*os.File, error)     { return nil, nil }
func writeDirect(f *os.File, data []byte) error { _, err := f.Write(data); return err }
func reopenDirect(any) *os.File                 { return nil }
