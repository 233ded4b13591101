package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/blk-project/blk/internal/directio"
)

// Range is a byte range of a volume.
type Range struct{ Off, Len int64 }

// Progress is reported as a backup or restore goes.
type Progress struct {
	Total  int64 // bytes of the volume
	Done   int64 // bytes of the volume handled (read, taken from the parent, or restored)
	Read   int64 // bytes read from the source (backup) or the repository (restore)
	Stored int64 // compressed bytes this backup added to the repository
}

// Options describe a backup beyond its data.
type Options struct {
	Name, Volume, VolumeUUID, Consistency string
	// Parent is the previous backup of the volume, if any.
	Parent *Manifest
	// Changed, when not nil, lists every byte range that may differ from
	// Parent (thin_delta's answer): only the chunks they touch are read,
	// the others are taken from Parent. Nil reads everything.
	Changed []Range
	// Progress, if set, is called after each chunk from one goroutine.
	Progress func(Progress)
}

// zeroChunk is aligned: restore writes it with O_DIRECT.
var zeroChunk = directio.Buf(ChunkSize)[:ChunkSize]

// timeFormat is RFC 3339 with fixed-width nanoseconds, so created_at
// strings also sort as times.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// workers is one per core: hashing and compression are CPU-bound.
func workers() int { return runtime.GOMAXPROCS(0) }

// Backup reads size bytes of src, stores the chunks the repository lacks,
// and writes the manifest last. The caller holds a Shared lock. A run killed
// anywhere leaves no manifest, and the next run finds the chunks it wrote.
func (r *Repo) Backup(ctx context.Context, src io.ReaderAt, size int64, opt Options) (*Manifest, error) {
	n := (size + ChunkSize - 1) / ChunkSize
	m := &Manifest{
		Format: Format, UUID: randomID(), Name: opt.Name, Volume: opt.Volume, VolumeUUID: opt.VolumeUUID,
		SizeBytes: size, Consistency: opt.Consistency, ChunkSize: ChunkSize,
		CreatedAt: time.Now().UTC().Format(timeFormat), Chunks: make([]string, n),
	}
	if m.Name == "" {
		m.Name = "backup-" + m.UUID[:8]
	}
	read := make([]bool, n) // which chunks are read rather than taken from the parent
	if opt.Parent != nil {
		m.Parent = opt.Parent.UUID
	}
	if opt.Changed == nil {
		for i := range read {
			read[i] = true
		}
	} else {
		if opt.Parent == nil {
			return nil, errors.New("backup: changed ranges given without a parent backup")
		}
		m.Incremental = true
		pn := int64(len(opt.Parent.Chunks))
		for i := range read {
			// Chunks the parent lacks are read, and so is a last chunk
			// whose length the resize changed.
			read[i] = int64(i) >= pn ||
				size != opt.Parent.SizeBytes && (int64(i) == n-1 || int64(i) == pn-1)
			if !read[i] {
				m.Chunks[i] = opt.Parent.Chunks[i]
			}
		}
		for _, c := range opt.Changed {
			if c.Off < 0 || c.Len > math.MaxInt64-c.Off {
				return nil, fmt.Errorf("backup: changed range at %d of %d bytes is out of range", c.Off, c.Len)
			}
			if c.Len <= 0 {
				continue
			}
			for i := c.Off / ChunkSize; i <= (c.Off+c.Len-1)/ChunkSize && i < n; i++ {
				read[i] = true
			}
		}
	}

	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(workers()),
		zstd.WithEncoderCRC(false), zstd.WithWindowSize(ChunkSize))
	if err != nil {
		return nil, err
	}
	defer enc.Close()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type job struct {
		i   int64
		buf *[]byte
	}
	// Buffers bound memory: one being read, one queued and one per worker.
	nbuf := workers() + 2
	bufs := make(chan *[]byte, nbuf)
	for i := 0; i < nbuf; i++ {
		b := make([]byte, ChunkSize)
		bufs <- &b
	}
	// Aligned, so chunks are written with O_DIRECT (see direct_linux.go).
	outs := sync.Pool{New: func() any { b := directio.Buf(maxStored); return &b }}
	jobs := make(chan job, 1)
	var done, stored, readBytes atomic.Int64
	var dirsMu sync.Mutex
	dirs := map[string]bool{}
	claimed := &claims{m: map[string]bool{}}
	var pmu sync.Mutex
	report := func() {
		if opt.Progress == nil {
			return
		}
		pmu.Lock()
		defer pmu.Unlock()
		opt.Progress(Progress{Total: size, Done: done.Load(), Read: readBytes.Load(), Stored: stored.Load()})
	}

	// Writers are apart from the CPU workers: a worker waiting on an fsync
	// would leave its core idle.
	type write struct {
		i    int64
		hash string
		out  *[]byte
	}
	writes := make(chan write, workers())
	var wwg sync.WaitGroup
	for w := 0; w < ioWriters; w++ {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for w := range writes {
				if ctx.Err() == nil {
					if err := r.writeAtomic(chunkName(w.hash), *w.out, false); err != nil {
						cancel(fmt.Errorf("backup: chunk %d: %w", w.i, err))
					} else {
						stored.Add(int64(len(*w.out)))
						dirsMu.Lock()
						dirs[path.Dir(chunkName(w.hash))] = true
						dirsMu.Unlock()
					}
				}
				outs.Put(w.out)
				report()
			}
		}()
	}
	var wg sync.WaitGroup
	for w := 0; w < workers(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if ctx.Err() == nil {
					h, out := r.prepareChunk(*j.buf, enc, &outs, claimed)
					m.Chunks[j.i] = h
					if out != nil {
						writes <- write{j.i, h, out}
					}
				}
				done.Add(int64(len(*j.buf)))
				*j.buf = (*j.buf)[:cap(*j.buf)]
				bufs <- j.buf
				report()
			}
		}()
	}
	// The reader: one sequential pass, as a disk or a stream likes it.
	var rerr error
	for i := int64(0); i < n && ctx.Err() == nil; i++ {
		l := min(ChunkSize, size-i*ChunkSize)
		if !read[i] {
			done.Add(l)
			continue
		}
		var b *[]byte
		select {
		case b = <-bufs:
		case <-ctx.Done():
		}
		if b == nil {
			break
		}
		*b = (*b)[:l]
		if _, err := src.ReadAt(*b, i*ChunkSize); err != nil && !(errors.Is(err, io.EOF) && l == size-i*ChunkSize) {
			rerr = fmt.Errorf("backup: read at %d: %w", i*ChunkSize, err)
			bufs <- b
			break
		}
		readBytes.Add(l)
		jobs <- job{i, b}
	}
	close(jobs)
	wg.Wait()
	close(writes)
	wwg.Wait()
	if rerr != nil {
		return nil, rerr
	}
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	// Chunks are renamed into place without syncing their directory one by
	// one: every directory they landed in is synced once, before the
	// manifest that names them.
	touched := make([]string, 0, len(dirs))
	for d := range dirs {
		touched = append(touched, d)
	}
	sort.Strings(touched)
	for _, d := range touched {
		if err := r.fs.SyncDir(r.p(d)); err != nil {
			return nil, fmt.Errorf("backup: sync %s: %w", d, err)
		}
	}
	m.ReadBytes, m.StoredBytes = readBytes.Load(), stored.Load()
	for _, h := range m.Chunks {
		if h != ZeroChunk {
			m.ChunkCount++
		}
	}
	if err := r.writeManifest(m); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	report()
	return m, nil
}

// claims are the chunks this backup has stored or is storing: a chunk
// repeated within a volume is written once, even while its first copy is
// still on its way.
type claims struct {
	mu sync.Mutex
	m  map[string]bool
}

func (c *claims) claim(h string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[h] {
		return false
	}
	c.m[h] = true
	return true
}

// ioWriters bounds the chunk files being written and synced at once. Chunks
// are written with O_DIRECT: a write waits on the device, not the CPU.
const ioWriters = 6

// prepareChunk hashes data and, unless it is all zeros or already stored,
// compresses it into a buffer from outs.
func (r *Repo) prepareChunk(data []byte, enc *zstd.Encoder, outs *sync.Pool, claimed *claims) (string, *[]byte) {
	if bytes.Equal(data, zeroChunk[:len(data)]) {
		return ZeroChunk, nil
	}
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	// Asked even for the parent's chunks: a chunk lost from the repository
	// is stored again by the next full read, not trusted to be there.
	if !claimed.claim(h) || r.hasChunk(h) {
		return h, nil
	}
	out := outs.Get().(*[]byte)
	*out = enc.EncodeAll(data, (*out)[:0])
	return h, out
}

// ChunkError names a chunk that is missing or does not hold its data.
type ChunkError struct {
	Index int
	Hash  string
	Err   error
}

func (e *ChunkError) Error() string {
	return fmt.Sprintf("chunk %d (%s at offset %d): %v", e.Index, e.Hash, int64(e.Index)*ChunkSize, e.Err)
}
func (e *ChunkError) Unwrap() error { return e.Err }

// ErrCorrupt is wrapped by a ChunkError whose stored data is damaged.
var ErrCorrupt = errors.New("corrupt")

// loadChunk reads, decompresses and checks one stored chunk into dst.
func (r *Repo) loadChunk(i int, h string, want int, dec *zstd.Decoder, dst []byte) ([]byte, int, error) {
	rawp := raws.Get().(*[]byte)
	defer raws.Put(rawp)
	raw, err := r.readChunkFile(chunkName(h), rawp)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, &ChunkError{i, h, errors.New("missing from the repository")}
	}
	if err != nil {
		return nil, 0, &ChunkError{i, h, fmt.Errorf("unreadable: %w", err)}
	}
	out, err := dec.DecodeAll(raw, dst[:0])
	if err != nil {
		return nil, len(raw), &ChunkError{i, h, fmt.Errorf("%w: %v", ErrCorrupt, err)}
	}
	sum := sha256.Sum256(out)
	if got := hex.EncodeToString(sum[:]); got != h {
		return nil, len(raw), &ChunkError{i, h, fmt.Errorf("%w: its data hashes to %s", ErrCorrupt, got)}
	}
	if want >= 0 && len(out) != want {
		return nil, len(raw), &ChunkError{i, h, fmt.Errorf("%w: %d bytes, want %d", ErrCorrupt, len(out), want)}
	}
	return out, len(raw), nil
}

// maxStored bounds a compressed chunk: zstd stores incompressible blocks raw,
// at a few bytes per block more than their size.
const maxStored = ChunkSize + ChunkSize/64 + 1024

// raws are buffers for compressed chunks as read.
var raws = sync.Pool{New: func() any { b := make([]byte, 0, maxStored); return &b }}

// readChunkFile reads a whole chunk file into *buf, grown if needed.
func (r *Repo) readChunkFile(name string, buf *[]byte) ([]byte, error) {
	f, err := r.fs.Open(r.p(name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	// A chunk compresses to at most a little over its size: anything larger
	// is not one of ours, and is not read into memory.
	if fi.Size() > ChunkSize+ChunkSize/8 {
		return nil, fmt.Errorf("%s: %d bytes, too large for a chunk", name, fi.Size())
	}
	if int64(cap(*buf)) < fi.Size() {
		*buf = make([]byte, fi.Size())
	}
	b := (*buf)[:fi.Size()]
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	return b, nil
}

func newDecoder() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(workers()), zstd.WithDecoderMaxMemory(2*ChunkSize))
}

// Restore writes the backup m to dst, reading chunks in order with bounded
// read-ahead; workers decompress, check each chunk's hash and write it at
// its offset (io.WriterAt allows parallel writes of disjoint ranges), so
// neither hashing nor writing is serialized. Progress and the first error
// are reported in volume order. With dstZeroed (a fresh thin volume or
// sparse file) zero chunks are left unwritten. When dst is a local file or
// block device, chunks are written through a second, O_DIRECT descriptor.
// Restore does not sync dst: the caller does. The caller holds a Shared lock.
func (r *Repo) Restore(ctx context.Context, m *Manifest, dst io.WriterAt, dstZeroed bool, progress func(Progress)) error {
	dec, err := newDecoder()
	if err != nil {
		return err
	}
	defer dec.Close()
	direct := directio.Reopen(dst, true)
	if direct != nil {
		defer direct.Close()
	}
	// Whole aligned chunks go through direct; a last short chunk, or one
	// O_DIRECT refused (EINVAL: a device with larger blocks), through dst.
	writeAt := func(b []byte, off int64) error {
		_, err := directio.WriteAt(direct, dst, b, off)
		return err
	}
	type result struct {
		n   int // bytes read from the repository
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Workers finish before the decoder closes.
	defer func() { cancel(); wg.Wait() }()
	nw := workers()
	bufs := sync.Pool{New: func() any { b := directio.Buf(ChunkSize); return &b }}
	// order carries each chunk's result slot in volume order; its capacity
	// is the read-ahead. sem bounds the chunks in memory: twice the
	// workers, so the CPUs keep busy while others wait on their writes.
	order := make(chan chan result, 4*nw)
	sem := make(chan struct{}, 2*nw)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(order)
		for i, h := range m.Chunks {
			slot := make(chan result, 1)
			select {
			case order <- slot:
			case <-ctx.Done():
				return
			}
			off := int64(i) * ChunkSize
			want := int(min(ChunkSize, m.SizeBytes-off))
			if h == ZeroChunk && dstZeroed {
				slot <- result{}
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if h == ZeroChunk {
					err := writeAt(zeroChunk[:want], off)
					if err != nil {
						err = fmt.Errorf("write at %d: %w", off, err)
					}
					slot <- result{err: err}
					return
				}
				b := bufs.Get().(*[]byte)
				defer bufs.Put(b)
				out, n, err := r.loadChunk(i, h, want, dec, *b)
				if err == nil {
					if err = writeAt(out, off); err != nil {
						err = fmt.Errorf("write at %d: %w", off, err)
					}
				}
				slot <- result{n: n, err: err}
			}()
		}
	}()
	var p Progress
	p.Total = m.SizeBytes
	i := 0
	for slot := range order {
		res := <-slot
		if res.err != nil {
			return fmt.Errorf("restore backup %s: %w", m.UUID, res.err)
		}
		p.Read += int64(res.n)
		p.Done += min(ChunkSize, m.SizeBytes-int64(i)*ChunkSize)
		if progress != nil {
			progress(p)
		}
		i++
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if i != len(m.Chunks) {
		return fmt.Errorf("restore backup %s: stopped after chunk %d of %d", m.UUID, i, len(m.Chunks))
	}
	return nil
}

// Verify checks that every chunk of m is in the repository; with readData
// it re-reads, decompresses and re-hashes each. It returns every bad chunk
// (as *ChunkError, joined), not only the first. The caller holds a Shared lock.
func (r *Repo) Verify(ctx context.Context, m *Manifest, readData bool) error {
	var dec *zstd.Decoder
	if readData {
		var err error
		if dec, err = newDecoder(); err != nil {
			return err
		}
		defer dec.Close()
	}
	seen := map[string]bool{}
	idx := make(chan int)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for w := 0; w < workers(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, ChunkSize)
			for i := range idx {
				h := m.Chunks[i]
				var err error
				if readData {
					want := int(min(ChunkSize, m.SizeBytes-int64(i)*ChunkSize))
					_, _, err = r.loadChunk(i, h, want, dec, buf)
				} else if !r.hasChunk(h) {
					err = &ChunkError{i, h, errors.New("missing from the repository")}
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i, h := range m.Chunks {
		if h == ZeroChunk || seen[h] || ctx.Err() != nil {
			continue
		}
		seen[h] = true
		idx <- i
	}
	close(idx)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	sort.Slice(errs, func(a, b int) bool { return errs[a].(*ChunkError).Index < errs[b].(*ChunkError).Index })
	if len(errs) > 0 {
		return fmt.Errorf("verify backup %s: %d bad chunks: %w", m.UUID, len(errs), errors.Join(errs...))
	}
	return nil
}
