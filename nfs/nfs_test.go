package nfs

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
)

const findmntOut = `{
   "filesystems": [
      {"target": "/var/lib/blk/mnt/x", "source": "192.0.2.10:/srv/blk", "fstype": "nfs4",
       "options": "rw,relatime,vers=4.2,hard,proto=tcp"}
   ]
}`

func TestMountPointIsTheMD5OfTheExport(t *testing.T) {
	// echo -n 192.0.2.10:/srv/blk | md5sum
	if got := MountPoint("192.0.2.10:/srv/blk"); got != "/var/lib/blk/mnt/c3d66496b13fc63add30ed22b43414f5" {
		t.Errorf("MountPoint = %q", got)
	}
}

func TestCreateIsSparseAndReadsBack(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	file := "/srv/blk/volume-u"
	f.Expect("", "truncate", "--size", "1073741824", file).
		Expect("1073741824,0,512\n", "stat", "--format", "%s,%b,%B", file)
	got, err := Files{Run: f}.Create(ctx, file, 1<<30)
	if err != nil || got != (File{SizeBytes: 1 << 30}) {
		t.Fatalf("Create = %+v, %v", got, err)
	}
	g := exectest.New(t, "stor1")
	g.ExpectFail(1, "", "stat: cannot statx '/srv/blk/volume-u': No such file or directory", "stat", "--format", "%s,%b,%B", file)
	if _, err := (Files{Run: g}).Stat(ctx, file); !errors.Is(err, ErrNotFound) {
		t.Errorf("stat of no file: %v", err)
	}
}

func TestUsageParsesDF(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect(" 1B-blocks     Avail\n1020702720 950214656\n", "df", "--block-size=1", "--output=size,avail", "/srv/blk")
	fs, err := Files{Run: f}.Usage(context.Background(), "/srv/blk")
	if err != nil || fs != (FS{SizeBytes: 1020702720, FreeBytes: 950214656}) {
		t.Errorf("Usage = %+v, %v", fs, err)
	}
}

func TestMountFallsBackThroughTheVersions(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "comp1")
	dir := MountPoint("192.0.2.10:/srv/blk")
	f.Expect("", "mkdir", "--parents", dir).
		ExpectFail(32, "", "mount.nfs: Protocol not supported", "mount", "-t", "nfs", "-o", "vers=4.2", "192.0.2.10:/srv/blk", dir).
		ExpectFail(32, "", "mount.nfs: an incorrect mount option was specified", "mount", "-t", "nfs", "-o", "vers=4.1", "192.0.2.10:/srv/blk", dir).
		Expect("", "mount", "-t", "nfs", "192.0.2.10:/srv/blk", dir)
	if err := (Mounts{Run: f}).Mount(ctx, "192.0.2.10:/srv/blk", dir, DefaultOptions); err != nil {
		t.Fatal(err)
	}
}

func TestMountFailuresAreTyped(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		stderr string
		kind   error
		hint   string
	}{
		{"mount.nfs: Connection refused", ErrServer, "TCP 2049"},
		{"mount.nfs: access denied by server while mounting 192.0.2.10:/srv/blk", ErrPermission, "no_root_squash"},
		{"mount.nfs: mounting 192.0.2.10:/srv/blk failed, reason given by server: No such file or directory", ErrNotFound, "exportfs -v"},
		{"mount.nfs: Stale file handle", ErrStale, "umount -l"},
	} {
		f := exectest.New(t, "comp1")
		f.Expect("", "mkdir", "--parents", "/m").
			ExpectFail(32, "", c.stderr, "mount", "-t", "nfs", "-o", "vers=4.2", "192.0.2.10:/srv/blk", "/m")
		err := Mounts{Run: f}.Mount(ctx, "192.0.2.10:/srv/blk", "/m", DefaultOptions)
		if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.hint) || !strings.Contains(err.Error(), "comp1: mount -t nfs") {
			t.Errorf("%s: err = %v", c.stderr, err)
		}
	}
}

func TestAtReadsFindmnt(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "comp1")
	f.Expect(findmntOut, "findmnt", "--json", "--mountpoint", "/var/lib/blk/mnt/x").
		ExpectFail(1, "", "", "findmnt", "--json", "--mountpoint", "/var/lib/blk/mnt/y")
	m, err := Mounts{Run: f}.At(ctx, "/var/lib/blk/mnt/x")
	if err != nil || m.Source != "192.0.2.10:/srv/blk" || m.FSType != "nfs4" {
		t.Errorf("At = %+v, %v", m, err)
	}
	if _, err := (Mounts{Run: f}).At(ctx, "/var/lib/blk/mnt/y"); !errors.Is(err, ErrNotMounted) {
		t.Errorf("At of nothing: %v", err)
	}
}

func TestUnmountOfNothingIsDone(t *testing.T) {
	f := exectest.New(t, "comp1")
	f.ExpectFail(32, "", "umount: /m: not mounted.", "umount", "/m").
		Expect("", "rmdir", "--ignore-fail-on-non-empty", "/m")
	if err := (Mounts{Run: f}).Unmount(context.Background(), "/m"); err != nil {
		t.Error(err)
	}
	g := exectest.New(t, "comp1")
	g.ExpectFail(32, "", "umount: /m: target is busy.", "umount", "/m")
	if err := (Mounts{Run: g}).Unmount(context.Background(), "/m"); !errors.Is(err, ErrInUse) {
		t.Errorf("busy: %v", err)
	}
}

// hangs is a host where mount never returns until killed, as with an NFS
// server that does not answer.
type hangs struct{ *exectest.Fake }

func (h hangs) Run(ctx context.Context, cmd exec.Cmd) (exec.Result, error) {
	if cmd.Args[0] == "mount" {
		<-ctx.Done()
		return exec.Result{}, exec.NewError(h.Host(), cmd, -1, nil, ctx.Err())
	}
	return h.Fake.Run(ctx, cmd)
}

func TestMountThatHangsIsBoundedAndSaysSo(t *testing.T) {
	old := MountWait
	MountWait = 50 * time.Millisecond
	t.Cleanup(func() { MountWait = old })
	f := exectest.New(t, "comp1")
	f.Expect("", "mkdir", "--parents", "/m")
	start := time.Now()
	err := Mounts{Run: hangs{f}}.Mount(context.Background(), "192.0.2.10:/srv/blk", "/m", DefaultOptions)
	if !errors.Is(err, ErrServer) || !strings.Contains(err.Error(), "no answer within 50ms") || time.Since(start) > 5*time.Second {
		t.Errorf("err = %v after %v", err, time.Since(start))
	}
}

// Grow never shortens: truncate gets ">size", and only a shorter file is
// touched; a preallocated one is allocated in full again.
func TestGrowLengthensOnlyAShorterFile(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	files := Files{Run: f}
	stat := []string{"stat", "--format", "%s,%b,%B", "/srv/blk/v"}
	f.Expect("1073741824,2097152,512\n", stat...).Expect("", "truncate", "--size", ">2147483648", "/srv/blk/v").
		Expect("2147483648,2097152,512\n", stat...).Expect("", "fallocate", "--length", "2147483648", "/srv/blk/v").
		Expect("2147483648,4194304,512\n", stat...)
	st, err := files.Grow(ctx, "/srv/blk/v", 2<<30, true)
	if err != nil || st.SizeBytes != 2<<30 || st.AllocatedBytes != 2<<30 {
		t.Fatalf("grow = %+v, %v", st, err)
	}
	f.Expect("2147483648,8,512\n", stat...)
	if st, err = files.Grow(ctx, "/srv/blk/v", 1<<30, false); err != nil || st.SizeBytes != 2<<30 {
		t.Errorf("grow of a longer file = %+v, %v", st, err)
	}
}
