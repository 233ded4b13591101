package main

import (
	"io"
	"time"

	"github.com/blk-project/blk/volume"
	"github.com/schollz/progressbar/v3"
)

type bar struct{ b *progressbar.ProgressBar }

func (p bar) Add(n int64) { _ = p.b.Add64(n) }
func (p bar) Done()       { _ = p.b.Finish() }

// newProgress draws progress bars on a terminal (stderr, never stdout,
// which belongs to results).
func newProgress(w io.Writer) func(label string, total int64) volume.Progress {
	return func(label string, total int64) volume.Progress {
		return bar{progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(label),
			progressbar.OptionShowBytes(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetWidth(30),
		)}
	}
}
