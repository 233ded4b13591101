// Package backup is blk's backup repository and engine: volumes cut into
// fixed chunks, each stored once per repository under its SHA-256,
// compressed with zstd, and a JSON manifest per backup that is enough, with
// the repository alone, to list and restore it.
//
// Layout of a repository:
//
//	config                  format version and chunk parameters (JSON)
//	chunks/ab/abcdef...     one zstd frame per chunk, named by the SHA-256 of its data
//	manifests/<uuid>.json   one per backup, written last
//	locks/<kind>-<id>.json  shared (backup, restore, verify) or exclusive (delete, prune)
//	tmp/                    files being written; renamed into place once synced
package backup

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/blk-project/blk/internal/directio"
)

// Format is the repository format this blk writes and the newest it reads.
const Format = 1

// ChunkSize is the fixed chunk size (as PBS for VM images).
const ChunkSize = 4 << 20

// ErrNewerFormat is returned for a repository or manifest written by a newer blk.
var ErrNewerFormat = errors.New("written in a newer format")

// ErrNotFound is returned for a backup the repository does not hold.
var ErrNotFound = errors.New("not found")

// ErrDirInUse is returned by Init for a directory holding other files.
var ErrDirInUse = errors.New("directory in use")

// ErrNotRepository is returned when a directory holds no repository.
var ErrNotRepository = errors.New("not a blk backup repository")

type repoConfig struct {
	Format      int    `json:"format"`
	ID          string `json:"id"`
	ChunkSize   int64  `json:"chunk_size"`
	Hash        string `json:"hash"`
	Compression string `json:"compression"`
}

// Repo is an open repository.
type Repo struct {
	fs   FS
	root string
	cfg  repoConfig
}

func (r *Repo) p(elem ...string) string { return path.Join(append([]string{r.root}, elem...)...) }

// String names the repository in errors.
func (r *Repo) String() string { return r.where("") }

// where names a file of the repository for people (an object store's
// keys are no paths on this machine).
func (r *Repo) where(name string) string {
	if w, ok := r.fs.(interface{ Where(string) string }); ok {
		return w.Where(r.p(name))
	}
	return r.p(name)
}

// putter is a file system that writes a whole file atomically in one call,
// as an object store's PUT does: writeAtomic needs no temp file then.
type putter interface {
	Put(name string, data []byte) error
}

// ID is the repository's random id, fixed at Init.
func (r *Repo) ID() string { return r.cfg.ID }

// Init makes a repository at root (created if missing), or opens the one
// already there.
func Init(fsys FS, root string) (*Repo, error) {
	r := &Repo{fs: fsys, root: root}
	if _, err := fsys.Stat(r.p("config")); err == nil {
		return Open(fsys, root)
	}
	// Only an empty or missing directory becomes a repository (or one an
	// Init killed half-way left): prune's gc empties tmp/ and chunks/ under
	// the root, which at a root of / or /var would be the host's own.
	fis, err := fsys.ReadDir(root)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("init repository %s: %w", root, err)
	}
	for _, fi := range fis {
		if !slices.Contains(repoEntries, fi.Name()) {
			return nil, fmt.Errorf("init repository %s: %w: it holds %q and no repository config: "+
				"give backup_repos an empty or missing directory", root, ErrDirInUse, fi.Name())
		}
	}
	dirs := []string{"manifests", "locks", "tmp"}
	for i := 0; i < 256; i++ {
		dirs = append(dirs, fmt.Sprintf("chunks/%02x", i))
	}
	for _, d := range dirs {
		if err := fsys.MkdirAll(r.p(d)); err != nil {
			return nil, fmt.Errorf("init repository %s: %w", root, err)
		}
	}
	for _, d := range []string{"chunks", "."} {
		if err := fsys.SyncDir(r.p(d)); err != nil {
			return nil, fmt.Errorf("init repository %s: %w", root, err)
		}
	}
	r.cfg = repoConfig{Format: Format, ID: randomID(), ChunkSize: ChunkSize, Hash: "sha256", Compression: "zstd"}
	b, _ := json.MarshalIndent(r.cfg, "", "  ")
	if err := r.writeAtomic("config", append(b, '\n'), true); err != nil {
		return nil, fmt.Errorf("init repository %s: %w", root, err)
	}
	return r, nil
}

// repoEntries are the names Init makes in a repository's root.
var repoEntries = []string{"manifests", "locks", "tmp", "chunks", "config"}

// Open opens the repository at root, refusing one of a newer format.
func Open(fsys FS, root string) (*Repo, error) {
	r := &Repo{fs: fsys, root: root}
	b, err := r.readFile("config")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open repository %s: %w (no config file there; the first backup makes one)", root, ErrNotRepository)
	}
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", root, err)
	}
	if err := strictUnmarshal(b, &r.cfg); err != nil {
		// A newer format may add keys: say so rather than "unknown field".
		var v struct{ Format int }
		if json.Unmarshal(b, &v) == nil && v.Format > Format {
			return nil, fmt.Errorf("open repository %s: format %d: %w; this blk reads up to format %d: upgrade blk", root, v.Format, ErrNewerFormat, Format)
		}
		return nil, fmt.Errorf("open repository %s: config: %w", root, err)
	}
	switch {
	case r.cfg.Format > Format:
		return nil, fmt.Errorf("open repository %s: format %d: %w; this blk reads up to format %d: upgrade blk", root, r.cfg.Format, ErrNewerFormat, Format)
	case r.cfg.Format < 1 || r.cfg.ChunkSize != ChunkSize || r.cfg.Hash != "sha256" || r.cfg.Compression != "zstd":
		return nil, fmt.Errorf("open repository %s: config: unsupported parameters (format %d, chunk size %d, hash %q, compression %q)",
			root, r.cfg.Format, r.cfg.ChunkSize, r.cfg.Hash, r.cfg.Compression)
	}
	return r, nil
}

func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// isID reports whether s has the shape of an id randomID makes, so a name
// typed by a user is never joined into a path.
func isID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !('0' <= c && c <= '9' || 'a' <= c && c <= 'f'):
			return false
		}
	}
	return true
}

func (r *Repo) readFile(name string) ([]byte, error) {
	f, err := r.fs.Open(r.p(name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// writeAtomic writes name through a synced temp file and a rename: a crash
// leaves the old file or the whole new one, never part of it. With syncDir
// the rename itself is made durable; callers writing many files in one
// directory batch that instead.
func (r *Repo) writeAtomic(name string, data []byte, syncDir bool) error {
	if p, ok := r.fs.(putter); ok {
		if err := p.Put(r.p(name), data); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		return nil
	}
	tmp := r.p("tmp", randomID())
	var f File
	var direct *os.File
	var err error
	if _, local := r.fs.(OS); local && len(data) >= directio.Align && directio.Aligned(data) {
		if direct, err = createDirect(tmp); direct != nil {
			f = direct
		}
	}
	if f == nil && err == nil {
		f, err = r.fs.CreateExcl(tmp)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if direct != nil {
		err = writeDirect(direct, data)
	} else {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.fs.Rename(tmp, r.p(name))
	}
	if err != nil {
		_ = r.fs.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	if syncDir {
		if err := r.fs.SyncDir(path.Dir(r.p(name))); err != nil {
			return fmt.Errorf("write %s: sync directory: %w", name, err)
		}
	}
	return nil
}

func chunkName(hash string) string { return "chunks/" + hash[:2] + "/" + hash }

func (r *Repo) hasChunk(hash string) bool {
	fi, err := r.fs.Stat(r.p(chunkName(hash)))
	return err == nil && fi.Size() > 0
}

// Manifest is one backup: everything needed to list and restore it.
type Manifest struct {
	Format      int    `json:"format"`
	UUID        string `json:"uuid"`
	Name        string `json:"name"`
	Volume      string `json:"volume"`
	VolumeUUID  string `json:"volume_uuid"`
	SizeBytes   int64  `json:"size_bytes"`
	ReadBytes   int64  `json:"read_bytes"`
	StoredBytes int64  `json:"stored_bytes"`
	// ChunkCount counts the chunks holding data (zero chunks are not stored).
	ChunkCount  int    `json:"chunk_count"`
	Parent      string `json:"parent,omitempty"`
	Incremental bool   `json:"incremental"`
	Consistency string `json:"consistency,omitempty"`
	CreatedAt   string `json:"created_at"`
	ChunkSize   int64  `json:"chunk_size"`
	// Chunks holds, per ChunkSize of the volume in order, the SHA-256 of its
	// data in hex, or ZeroChunk.
	Chunks []string `json:"chunks"`
}

// ZeroChunk marks an all-zero chunk: recorded, neither hashed nor stored.
const ZeroChunk = "0"

func (m *Manifest) check() error {
	if m.Format > Format {
		return fmt.Errorf("format %d: %w; this blk reads up to format %d: upgrade blk", m.Format, ErrNewerFormat, Format)
	}
	if m.Format < 1 || m.ChunkSize != ChunkSize || m.UUID == "" || m.SizeBytes < 0 {
		return errors.New("incomplete manifest")
	}
	if want := (m.SizeBytes + m.ChunkSize - 1) / m.ChunkSize; int64(len(m.Chunks)) != want {
		return fmt.Errorf("%d chunks for %d bytes, want %d", len(m.Chunks), m.SizeBytes, want)
	}
	n := 0
	for i, h := range m.Chunks {
		if h == ZeroChunk {
			continue
		}
		if _, err := hex.DecodeString(h); err != nil || len(h) != 64 {
			return fmt.Errorf("chunk %d: bad hash %q", i, h)
		}
		n++
	}
	if n != m.ChunkCount {
		return fmt.Errorf("chunk_count %d, but %d data chunks listed", m.ChunkCount, n)
	}
	return nil
}

func manifestName(uuid string) string { return "manifests/" + uuid + ".json" }

// Manifest reads the backup uuid, refusing a truncated, corrupt or newer one.
func (r *Repo) Manifest(uuid string) (*Manifest, error) {
	if !isID(uuid) {
		return nil, fmt.Errorf("backup %s in %s: %w", uuid, r, ErrNotFound)
	}
	b, err := r.readFile(manifestName(uuid))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("backup %s in %s: %w", uuid, r, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read backup %s: %w", uuid, err)
	}
	return parseManifest(b, uuid)
}

func parseManifest(b []byte, uuid string) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		var v struct{ Format int }
		if json.Unmarshal(b, &v) == nil && v.Format > Format {
			return nil, fmt.Errorf("backup %s: format %d: %w; this blk reads up to format %d: upgrade blk", uuid, v.Format, ErrNewerFormat, Format)
		}
		return nil, fmt.Errorf("backup %s: corrupt manifest: %w", uuid, err)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("backup %s: corrupt manifest: %w", uuid, err)
	}
	if m.UUID != uuid {
		return nil, fmt.Errorf("backup %s: corrupt manifest: it names backup %s", uuid, m.UUID)
	}
	return &m, nil
}

func (r *Repo) writeManifest(m *Manifest) error {
	if err := m.check(); err != nil {
		return fmt.Errorf("backup %s: %w", m.UUID, err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return r.writeAtomic(manifestName(m.UUID), append(b, '\n'), true)
}

// List reads every manifest, oldest first. A manifest that cannot be read is
// returned in bad, by uuid, with its error, and the others still listed.
func (r *Repo) List() (ms []*Manifest, bad map[string]error, err error) {
	fis, err := r.fs.ReadDir(r.p("manifests"))
	if err != nil {
		return nil, nil, fmt.Errorf("list backups in %s: %w", r, err)
	}
	bad = map[string]error{}
	for _, fi := range fis {
		uuid, ok := strings.CutSuffix(fi.Name(), ".json")
		if !ok {
			continue
		}
		m, err := r.Manifest(uuid)
		if err != nil {
			bad[uuid] = err
			continue
		}
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool {
		if ti, tj := created(ms[i]), created(ms[j]); !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return ms[i].UUID < ms[j].UUID
	})
	return ms, bad, nil
}

// Latest is the newest backup of the volume volumeUUID, the parent of its
// next one; nil when there is none. Call it under the backup's lock, so
// the parent cannot be pruned between the two.
func (r *Repo) Latest(volumeUUID string) (*Manifest, error) {
	ms, _, err := r.List()
	if err != nil {
		return nil, err
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].VolumeUUID == volumeUUID {
			return ms[i], nil
		}
	}
	return nil, nil
}

// Find returns the backup whose uuid or name is ref.
func (r *Repo) Find(ref string) (*Manifest, error) {
	if m, err := r.Manifest(ref); err == nil || !errors.Is(err, ErrNotFound) {
		return m, err
	}
	ms, _, err := r.List()
	if err != nil {
		return nil, err
	}
	var found *Manifest
	for _, m := range ms {
		if m.Name == ref {
			if found != nil {
				return nil, fmt.Errorf("backup name %q is ambiguous in %s (%s, %s): use a uuid", ref, r, found.UUID, m.UUID)
			}
			found = m
		}
	}
	if found == nil {
		return nil, fmt.Errorf("backup %q in %s: %w", ref, r, ErrNotFound)
	}
	return found, nil
}
