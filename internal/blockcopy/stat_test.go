package blockcopy

import (
	"os"
	"syscall"
)

func allocated(fi os.FileInfo) int64 { return fi.Sys().(*syscall.Stat_t).Blocks * 512 }
