package volume

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/state"
)

// image is a disk image on the storage host, as qemu-img info reads it.
type image struct {
	Path        string
	Format      string
	VirtualSize int64
}

// checkImage validates --from-image and --image-format alone.
func (o CreateOptions) checkImage() error {
	if o.FromImage == "" {
		if o.ImageFormat != "" {
			return invalid("--image-format is for --from-image")
		}
		return nil
	}
	// The path is read on the storage host, whose working directory is
	// nobody's business: only an absolute path means one file.
	if !path.IsAbs(o.FromImage) || path.Clean(o.FromImage) != o.FromImage {
		return invalid("--from-image %q: give the image's absolute, clean path on the storage host", Truncate(o.FromImage))
	}
	switch o.ImageFormat {
	case "", "raw", "qcow2":
		return nil
	}
	return invalid("--image-format %q: want raw or qcow2", Truncate(o.ImageFormat))
}

// qemuImgInfo is what blk reads of qemu-img info --output=json.
type qemuImgInfo struct {
	Format              string `json:"format"`
	VirtualSize         int64  `json:"virtual-size"`
	BackingFilename     string `json:"backing-filename"`
	FullBackingFilename string `json:"full-backing-filename"`
	FormatSpecific      struct {
		Data struct {
			DataFile string `json:"data-file"`
		} `json:"data"`
	} `json:"format-specific"`
}

// inspectImage reads the image o names on host and returns it with the
// size the volume is made: the image's virtual size, or --size, which may
// not be smaller. Only a regular file of raw or qcow2 that names no other
// file is taken: a backing file or an external data file would make
// qemu-img read whatever path the image's author wrote into it.
func (s *Service) inspectImage(ctx context.Context, host string, o CreateOptions, size int64) (*image, int64, error) {
	r, err := s.Hosts.Runner(host)
	if err != nil {
		return nil, 0, err
	}
	p := o.FromImage
	res, err := r.Run(ctx, exec.Cmd{Args: []string{"stat", "--dereference", "--format", "%F", "--", p}})
	if exec.ExitCode(err) == 1 {
		return nil, 0, invalid("--from-image %s: no such file on %s", p, host)
	}
	if err != nil {
		return nil, 0, err
	}
	if kind := strings.TrimSpace(string(res.Stdout)); kind != "regular file" && kind != "regular empty file" {
		return nil, 0, invalid("--from-image %s is a %s on %s: want a regular file", p, kind, host)
	}
	args := []string{"qemu-img", "info", "--output=json"}
	if o.ImageFormat != "" {
		// Given, the format is never probed: a raw image may well start
		// with a qcow2 header.
		args = append(args, "-f", o.ImageFormat)
	}
	if res, err = r.Run(ctx, exec.Cmd{Args: append(args, p)}); err != nil {
		return nil, 0, fmt.Errorf("read image %s: %w", p, err)
	}
	var info qemuImgInfo
	if err := json.Unmarshal(res.Stdout, &info); err != nil {
		return nil, 0, fmt.Errorf("%s: qemu-img info %s: %w", host, p, err)
	}
	switch {
	case info.Format != "raw" && info.Format != "qcow2":
		return nil, 0, invalid("image %s is %s: only raw and qcow2 images are taken (qemu-img convert -O raw it first)", p, info.Format)
	case info.BackingFilename != "" || info.FullBackingFilename != "":
		return nil, 0, invalid("image %s has a backing file (%s): blk takes only self-contained images (qemu-img convert it to one first)",
			p, firstOf(info.FullBackingFilename, info.BackingFilename))
	case info.FormatSpecific.Data.DataFile != "":
		return nil, 0, invalid("image %s keeps its data in another file (%s): blk takes only self-contained images", p, info.FormatSpecific.Data.DataFile)
	case info.VirtualSize <= 0:
		return nil, 0, invalid("image %s has no size", p)
	}
	if size == 0 {
		size = info.VirtualSize
	} else if size < info.VirtualSize {
		return nil, 0, invalid("--size %s (%d bytes) is smaller than image %s (%s, %d bytes)", o.Size, size, p, FormatSize(info.VirtualSize), info.VirtualSize)
	}
	return &image{Path: p, Format: info.Format, VirtualSize: info.VirtualSize}, size, nil
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// fillFromImage writes the image into the volume's storage at dest, on the
// storage host, as raw. zero says the storage reads as zeros already (a thin
// LV or sparse file just made): the image's zeros are then not written.
func (s *Service) fillFromImage(ctx context.Context, host, name string, img *image, dest string, zero bool) error {
	r, err := s.Hosts.Runner(host)
	if err != nil {
		return err
	}
	args := []string{"qemu-img", "convert", "-n", "-p", "-O", "raw", "-f", img.Format}
	if zero {
		args = append(args, "--target-is-zero")
	}
	bar := s.progress("image to "+name, img.VirtualSize)
	defer bar.Done()
	_, err = r.Run(ctx, exec.Cmd{Args: append(args, img.Path, dest), Mutates: true,
		Output: &qemuProgress{total: img.VirtualSize, bar: bar}})
	if err != nil {
		return fmt.Errorf("write image %s: %w", img.Path, err)
	}
	return nil
}

var percentRE = regexp.MustCompile(`\((\d+(?:\.\d+)?)/100%\)`)

// qemuProgress turns qemu-img -p's "(12.34/100%)\r" lines into bytes done.
type qemuProgress struct {
	mu    sync.Mutex
	total int64
	done  int64
	tail  string
	bar   Progress
}

func (q *qemuProgress) Write(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.tail += string(p)
	ms := percentRE.FindAllStringSubmatchIndex(q.tail, -1)
	if len(ms) == 0 {
		if len(q.tail) > 64 { // no meter in sight: keep only what may start one
			q.tail = q.tail[len(q.tail)-64:]
		}
		return len(p), nil
	}
	last := ms[len(ms)-1]
	pct, _ := strconv.ParseFloat(q.tail[last[2]:last[3]], 64)
	q.tail = q.tail[last[1]:]
	if n := int64(pct / 100 * float64(q.total)); n > q.done {
		q.bar.Add(n - q.done)
		q.done = n
	}
	return len(p), nil
}

// imageTarget says whether the new volume's storage will read as zeros: a
// thin volume whose storage this create makes (not one a killed create
// left, which may hold part of the image).
func (s *Service) imageTarget(ctx context.Context, p provider, v state.Volume) (bool, error) {
	if !v.Thin {
		return false, nil
	}
	made, err := p.exists(ctx, v)
	return !made, err
}
