package volume

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/state"
)

const cloneUUID = "c10e0000-1111-2222-3333-444455556666"

// fileRunner is a scripted host whose devices are local files.
type fileRunner struct {
	exec.Runner
	files map[string]string // device path -> local file
}

func (f fileRunner) OpenFile(_ context.Context, path string, write bool) (exec.File, error) {
	local, ok := f.files[path]
	if !ok {
		return nil, errors.New("test: no device " + path)
	}
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	return os.OpenFile(local, flag, 0)
}

// device makes a local file standing for a device of size bytes, holding
// data at its start.
func device(t *testing.T, fr fileRunner, path string, size int64, data []byte) string {
	t.Helper()
	local := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(local, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(local, size); err != nil {
		t.Fatal(err)
	}
	fr.files[path] = local
	return local
}

// cloneService is snapService with file access on stor1.
func cloneService(t *testing.T, thin, inUse bool) (*Service, *exectest.Fake, fileRunner, *events) {
	s, stor, hv, ev := snapService(t, thin, inUse)
	fr := fileRunner{loggedRunner{stor, ev}, map[string]string{}}
	s.Hosts.New = func(string, config.Host) exec.Runner { return fr }
	s.Hosts.NewHypervisor = func(context.Context, string, exec.Runner) (hypervisor.Hypervisor, error) {
		return loggedHV{hv, ev}, nil
	}
	return s, stor, fr, ev
}

const mib8 = 8 << 20

func thickCreate(u string, size string) []string {
	return []string{"lvcreate", "--yes", "--name", "volume-" + u, "--size", size + "b", "--wipesignatures", "y", "--zero", "y",
		"--addtag", "blk", "--addtag", "blk-name-db2", "--addtag", "blk-vol-" + u, "blk"}
}

func TestThinCloneOfAThinSnapshotIsInstantAndGrows(t *testing.T) {
	s, stor, _, _ := snapService(t, true, false)
	takeSnapshot(t, s, stor)
	s.testHookUUID = cloneUUID
	stor.ExpectFail(5, "", notFound, lvsOf(cloneUUID)...)
	stor.Expect(poolReport, lvsOfName("pool")...)
	stor.Expect("", "lvcreate", "--yes", "--snapshot", "--name", "volume-"+cloneUUID, "--setactivationskip", "n", "--activate", "y",
		"--addtag", "blk", "--addtag", "blk-name-db2", "--addtag", "blk-vol-"+cloneUUID, "blk/"+snapLV)
	stor.Expect(snapReport("volume-"+cloneUUID, "1073741824", "blk,blk-name-db2,blk-vol-"+cloneUUID), lvsOf(cloneUUID)...)
	// Extend reads the size first: a rerun finds it grown already.
	stor.Expect(snapReport("volume-"+cloneUUID, "1073741824", "blk,blk-name-db2,blk-vol-"+cloneUUID), lvsOf(cloneUUID)...)
	stor.Expect("", "lvextend", "-L", "2147483648b", "blk/volume-"+cloneUUID)
	stor.Expect(snapReport("volume-"+cloneUUID, "2147483648", "blk,blk-name-db2,blk-vol-"+cloneUUID), lvsOf(cloneUUID)...)
	v, err := s.Create(context.Background(), CreateOptions{Name: "db2", FromSnapshot: "s1", Size: "2GiB"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Source != "snapshot:"+snapUUID || !v.Thin || v.SizeBytes != 2<<30 || v.Backend != "lvm-1" || v.Status != state.Available {
		t.Errorf("volume = %+v", v)
	}
}

func TestThickCloneOfAnAvailableVolumeIsAByteCopy(t *testing.T) {
	s, stor, fr, _ := cloneService(t, false, false)
	data := bytes.Repeat([]byte("A"), 3<<20) // the second block is zeros
	src := device(t, fr, "/dev/blk/volume-"+volUUID, mib8, data)
	dst := device(t, fr, "/dev/blk/volume-"+cloneUUID, mib8, bytes.Repeat([]byte{0xee}, mib8)) // stale bytes
	// The source's recorded size is what is copied.
	s.State.MoveVolume(context.Background(), volUUID, state.Move{From: []string{state.Available}, To: state.Available, SizeBytes: mib8})
	s.testHookUUID = cloneUUID
	stor.ExpectFail(5, "", notFound, lvsOf(cloneUUID)...)
	stor.Expect(vgsReport("3208642560"), vgsArgs...)
	stor.Expect("", thickCreate(cloneUUID, "8388608")...)
	stor.Expect(lvsReport(cloneUUID, "8388608"), lvsOf(cloneUUID)...)
	v, err := s.Create(context.Background(), CreateOptions{Name: "db2", FromVolume: "db1"})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	// A thick target is written in full, zeros too: it does not read as
	// zeros by itself.
	if !bytes.Equal(a, b) {
		t.Error("the clone differs from its source")
	}
	if v.Source != "volume:"+volUUID || v.Thin {
		t.Errorf("volume = %+v", v)
	}
	checkVolume(t, s, state.Available, 0)
}

// A copy that fails removes the new LV and row, and gives the source back;
// the same command then works.
func TestFailedCopyLeavesNothingAndRerunWorks(t *testing.T) {
	s, stor, fr, _ := cloneService(t, false, false)
	src := device(t, fr, "/dev/blk/volume-"+volUUID, 3<<20, []byte("short"))
	device(t, fr, "/dev/blk/volume-"+cloneUUID, mib8, nil)
	s.State.MoveVolume(context.Background(), volUUID, state.Move{From: []string{state.Available}, To: state.Available, SizeBytes: mib8})
	s.testHookUUID = cloneUUID
	stor.ExpectFail(5, "", notFound, lvsOf(cloneUUID)...)
	stor.Expect(vgsReport("3208642560"), vgsArgs...)
	stor.Expect("", thickCreate(cloneUUID, "8388608")...)
	stor.Expect(lvsReport(cloneUUID, "8388608"), lvsOf(cloneUUID)...)
	stor.Expect(lvsReport(cloneUUID, "8388608"), lvsOf(cloneUUID)...)
	stor.Expect("", "lvremove", "--yes", "blk/volume-"+cloneUUID)
	_, err := s.Create(context.Background(), CreateOptions{Name: "db2", FromVolume: "db1"})
	if err == nil || !strings.Contains(err.Error(), "short read") {
		t.Fatalf("err = %v", err)
	}
	if _, err := s.State.Volume(context.Background(), "db2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("row left behind: %v", err)
	}
	checkVolume(t, s, state.Available, 0)

	os.Truncate(src, mib8)
	stor.ExpectFail(5, "", notFound, lvsOf(cloneUUID)...)
	stor.Expect(vgsReport("3208642560"), vgsArgs...)
	stor.Expect("", thickCreate(cloneUUID, "8388608")...)
	stor.Expect(lvsReport(cloneUUID, "8388608"), lvsOf(cloneUUID)...)
	if _, err := s.Create(context.Background(), CreateOptions{Name: "db2", FromVolume: "db1"}); err != nil {
		t.Fatalf("rerun: %v", err)
	}
}

// An in-use volume is copied through a quiesced temporary snapshot, removed
// afterwards; the volume is held only while that snapshot is taken.
func TestCloneOfAnInUseVolumeGoesThroughATemporarySnapshot(t *testing.T) {
	s, stor, fr, ev := cloneService(t, false, true)
	tmp := "_snapshot-" + cloneUUID
	data := bytes.Repeat([]byte("B"), mib8)
	device(t, fr, "/dev/blk/"+tmp, mib8, data)
	dst := device(t, fr, "/dev/blk/volume-"+cloneUUID, mib8, nil)
	s.State.MoveVolume(context.Background(), volUUID, state.Move{From: []string{state.InUse}, To: state.InUse, SizeBytes: mib8})
	s.testHookUUID = cloneUUID
	stor.ExpectFail(5, "", notFound, lvsOfName(tmp)...)
	stor.Expect(vgsReport("3208642560"), vgsArgs...)
	stor.Expect("", "lvcreate", "--yes", "--snapshot", "--name", tmp, "--size", "16861184b",
		"--addtag", "blk", "--addtag", "blk-vol-"+volUUID, "blk/volume-"+volUUID)
	stor.Expect(snapReport(tmp, "16777216", "blk,blk-vol-"+volUUID), lvsOfName(tmp)...)
	stor.ExpectFail(5, "", notFound, lvsOf(cloneUUID)...)
	stor.Expect(vgsReport("3208642560"), vgsArgs...)
	stor.Expect("", thickCreate(cloneUUID, "8388608")...)
	stor.Expect(lvsReport(cloneUUID, "8388608"), lvsOf(cloneUUID)...)
	stor.Expect("", "lvremove", "--yes", "blk/"+tmp)
	if _, err := s.Create(context.Background(), CreateOptions{Name: "db2", FromVolume: "db1"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); !bytes.Equal(b, data) {
		t.Error("the clone differs from the snapshot it was copied from")
	}
	if want := []string{"fsfreeze", "lvcreate", "fsthaw", "lvcreate", "lvremove"}; !slices.Equal(ev.log, want) {
		t.Errorf("ran %v, want %v", ev.log, want)
	}
	checkVolume(t, s, state.InUse, 0)
}

func TestCloneCannotShrink(t *testing.T) {
	s, _, _, _ := snapService(t, true, false)
	_, err := s.Create(context.Background(), CreateOptions{Name: "db2", FromVolume: "db1", Size: "512MiB"})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "a copy cannot shrink") {
		t.Fatalf("err = %v", err)
	}
	if _, err := (CreateOptions{Name: "x", FromVolume: "a", FromSnapshot: "b"}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("both sources: %v", err)
	}
}
