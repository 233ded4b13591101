package volume

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/state"
)

const qcow2Info = `{"virtual-size": 1073741824, "filename": "/srv/images/deb.qcow2", "format": "qcow2", "actual-size": 200704,
 "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "corrupt": false}}, "dirty-flag": false}`

var statImage = []string{"stat", "--dereference", "--format", "%F", "--", "/srv/images/deb.qcow2"}

type bytesDone struct {
	labels []string
	done   int64
}

func (b *bytesDone) start(label string, total int64) Progress {
	b.labels = append(b.labels, label)
	return b
}
func (b *bytesDone) Add(n int64) { b.done += n }
func (b *bytesDone) Done()       {}

func TestCreateFromQcow2Image(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	var bar bytesDone
	s.Progress = bar.start
	u := "12121212-2222-3333-4444-555555555555"
	s.testHookUUID = u
	convert := []string{"qemu-img", "convert", "-n", "-p", "-O", "raw", "-f", "qcow2", "/srv/images/deb.qcow2", "/dev/blk/volume-" + u}
	f.Expect("regular file\n", statImage...).Expect(qcow2Info, "qemu-img", "info", "--output=json", "/srv/images/deb.qcow2").
		ExpectFail(5, "", notFound, lvsOf(u)...).Expect(vgsReport("3208642560"), vgsArgs...).
		Expect("", "lvcreate", "--yes", "--name", "volume-"+u, "--size", "1073741824b", "--wipesignatures", "y", "--zero", "y",
			"--addtag", "blk", "--addtag", "blk-name-root1", "--addtag", "blk-vol-"+u, "blk").
		Expect(lvsReport(u, "1073741824"), lvsOf(u)...).
		Expect("    (0.00/100%)\r    (50.00/100%)\r    (100.00/100%)\r\n", convert...)
	f.InOrder([]string{"lvcreate", "--yes", "--name", "volume-" + u, "--size", "1073741824b", "--wipesignatures", "y", "--zero", "y",
		"--addtag", "blk", "--addtag", "blk-name-root1", "--addtag", "blk-vol-" + u, "blk"}, convert)
	v, err := s.Create(ctx, CreateOptions{Name: "root1", FromImage: "/srv/images/deb.qcow2"})
	if err != nil || v.Status != state.Available || v.SizeBytes != 1<<30 || v.Source != "image:/srv/images/deb.qcow2" {
		t.Fatalf("create = %+v, %v", v, err)
	}
	if bar.done != 1<<30 || len(bar.labels) != 1 || bar.labels[0] != "image to root1" {
		t.Errorf("progress: %d bytes done, labels %q", bar.done, bar.labels)
	}
}

// A thin LV this create makes reads as zeros: qemu-img skips writing the
// image's zeros. The format given is passed, never probed.
func TestCreateFromRawImageOnAFreshThinLV(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	u := "13131313-2222-3333-4444-555555555555"
	s.testHookUUID = u
	raw := `{"virtual-size": 1073741824, "filename": "/srv/images/deb.qcow2", "format": "raw"}`
	f.Expect("regular file\n", statImage...).Expect(raw, "qemu-img", "info", "--output=json", "-f", "raw", "/srv/images/deb.qcow2").
		ExpectFail(5, "", notFound, lvsOf(u)...).ExpectFail(5, "", notFound, lvsOf(u)...).
		Expect(poolReport, append(append([]string{}, lvsArgs...), "blk/pool")...).
		Expect("", "lvcreate", "--yes", "--name", "volume-"+u, "--type", "thin", "--virtualsize", "2147483648b", "--thinpool", "pool",
			"--addtag", "blk", "--addtag", "blk-name-root1", "--addtag", "blk-vol-"+u, "blk").
		Expect(lvsReport(u, "2147483648"), lvsOf(u)...).
		Expect("", "qemu-img", "convert", "-n", "-p", "-O", "raw", "-f", "raw", "--target-is-zero", "/srv/images/deb.qcow2", "/dev/blk/volume-"+u)
	v, err := s.Create(ctx, CreateOptions{Name: "root1", FromImage: "/srv/images/deb.qcow2", ImageFormat: "raw", Size: "2GiB", Thin: true})
	if err != nil || v.SizeBytes != 2<<30 {
		t.Fatalf("create = %+v, %v", v, err)
	}
}

// A failed copy removes the LV and leaves no row in creating.
func TestFailedImageCopyLeavesNothing(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	u := "14141414-2222-3333-4444-555555555555"
	s.testHookUUID = u
	f.Expect("regular file\n", statImage...).Expect(qcow2Info, "qemu-img", "info", "--output=json", "/srv/images/deb.qcow2").
		ExpectFail(5, "", notFound, lvsOf(u)...).Expect(vgsReport("3208642560"), vgsArgs...).
		Expect("", "lvcreate", "--yes", "--name", "volume-"+u, "--size", "1073741824b", "--wipesignatures", "y", "--zero", "y",
			"--addtag", "blk", "--addtag", "blk-name-root1", "--addtag", "blk-vol-"+u, "blk").
		Expect(lvsReport(u, "1073741824"), lvsOf(u)...).
		ExpectFail(1, "", "qemu-img: error while reading at byte 0: Input/output error",
			"qemu-img", "convert", "-n", "-p", "-O", "raw", "-f", "qcow2", "/srv/images/deb.qcow2", "/dev/blk/volume-"+u).
		Expect(lvsReport(u, "1073741824"), lvsOf(u)...).Expect("", "lvremove", "--yes", "blk/volume-"+u)
	_, err := s.Create(ctx, CreateOptions{Name: "root1", FromImage: "/srv/images/deb.qcow2"})
	if err == nil || !strings.Contains(err.Error(), "write image /srv/images/deb.qcow2") || !strings.Contains(err.Error(), "Input/output error") {
		t.Fatalf("err = %v", err)
	}
	if _, err := s.Show(ctx, "root1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("row left: %v", err)
	}
}

func TestImagesBlkWillNotTake(t *testing.T) {
	ctx := context.Background()
	info := []string{"qemu-img", "info", "--output=json", "/srv/images/deb.qcow2"}
	for name, c := range map[string]struct {
		o          CreateOptions
		stat, info string
		statCode   int
		want       string
	}{
		"relative":    {o: CreateOptions{FromImage: "images/deb.qcow2"}, want: "absolute, clean path"},
		"unclean":     {o: CreateOptions{FromImage: "/srv/../etc/shadow"}, want: "absolute, clean path"},
		"format flag": {o: CreateOptions{FromImage: "/srv/images/deb.qcow2", ImageFormat: "vmdk"}, want: "want raw or qcow2"},
		"format only": {o: CreateOptions{ImageFormat: "raw", Size: "1GiB"}, want: "--image-format is for --from-image"},
		"missing":     {o: CreateOptions{FromImage: "/srv/images/deb.qcow2"}, statCode: 1, want: "no such file on stor1"},
		"directory":   {o: CreateOptions{FromImage: "/srv/images/deb.qcow2"}, stat: "directory", want: "is a directory on stor1"},
		"block device": {o: CreateOptions{FromImage: "/srv/images/deb.qcow2"}, stat: "block special file",
			want: "is a block special file on stor1: want a regular file"},
		"vmdk": {o: CreateOptions{FromImage: "/srv/images/deb.qcow2"}, stat: "regular file",
			info: `{"virtual-size": 1073741824, "format": "vmdk"}`, want: "is vmdk: only raw and qcow2"},
		"backing file": {o: CreateOptions{FromImage: "/srv/images/deb.qcow2"}, stat: "regular file",
			info: `{"virtual-size": 1073741824, "format": "qcow2", "backing-filename": "base.qcow2", "full-backing-filename": "/srv/images/base.qcow2"}`,
			want: "has a backing file (/srv/images/base.qcow2)"},
		"only the full backing name": {o: CreateOptions{FromImage: "/srv/images/deb.qcow2"}, stat: "regular file",
			info: `{"virtual-size": 1073741824, "format": "qcow2", "full-backing-filename": "/etc/shadow"}`, want: "has a backing file"},
		"data file": {o: CreateOptions{FromImage: "/srv/images/deb.qcow2"}, stat: "regular file",
			info: `{"virtual-size": 1073741824, "format": "qcow2", "format-specific": {"type": "qcow2", "data": {"data-file": "/dev/sda"}}}`,
			want: "keeps its data in another file (/dev/sda)"},
		"smaller size": {o: CreateOptions{FromImage: "/srv/images/deb.qcow2", Size: "512MiB"}, stat: "regular file", info: qcow2Info,
			want: "--size 512MiB (536870912 bytes) is smaller than image /srv/images/deb.qcow2 (1GiB, 1073741824 bytes)"},
	} {
		f := exectest.New(t, "stor1")
		s := newService(t, f, nil)
		switch {
		case c.statCode != 0:
			f.ExpectFail(c.statCode, "", "stat: cannot statx: No such file or directory", statImage...)
		case c.stat != "":
			f.Expect(c.stat+"\n", statImage...)
		}
		if c.info != "" {
			f.Expect(c.info, info...)
		}
		c.o.Name = "root1"
		_, err := s.Create(ctx, c.o)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want invalid with %q", name, err, c.want)
		}
		if _, err := s.Show(ctx, "root1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: row made: %v", name, err)
		}
	}
}

// qemu-img's meter may come split across writes; bytes done never go back.
func TestQemuProgressAcrossWrites(t *testing.T) {
	var bar bytesDone
	q := &qemuProgress{total: 1000, bar: &bar}
	for _, chunk := range []string{"    (0.00/10", "0%)\r    (25.", "00/100%)\r", "    (20.00/100%)\r", "    (100.00/100%)\r\n"} {
		q.Write([]byte(chunk))
		if chunk == "0%)\r    (25." && bar.done != 0 {
			t.Errorf("half a meter read: %d", bar.done)
		}
	}
	if bar.done != 1000 {
		t.Errorf("done = %d, want 1000", bar.done)
	}
}

// A create from an image killed during the copy, run again, copies again
// into the LV it finds, which may hold part of the image: no
// --target-is-zero.
func TestKilledImageCreateRerunCopiesAgain(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1")
	s := newService(t, f, nil)
	u := "15151515-2222-3333-4444-555555555555"
	s.testHookUUID = u
	op, err := s.State.InsertVolume(ctx, &state.Volume{UUID: u, Name: "root1", Backend: "lvm-1", SizeBytes: 1 << 30, Thin: true,
		Status: state.Creating, Source: "image:/srv/images/deb.qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	op.End(ctx, errors.New("killed"))
	f.Expect("regular file\n", statImage...).Expect(qcow2Info, "qemu-img", "info", "--output=json", "/srv/images/deb.qcow2").
		Expect(lvsReport(u, "1073741824"), lvsOf(u)...).Expect(lvsReport(u, "1073741824"), lvsOf(u)...).
		Expect("", "qemu-img", "convert", "-n", "-p", "-O", "raw", "-f", "qcow2", "/srv/images/deb.qcow2", "/dev/blk/volume-"+u)
	v, err := s.Create(ctx, CreateOptions{Name: "root1", FromImage: "/srv/images/deb.qcow2", Thin: true})
	if err != nil || v.Status != state.Available {
		t.Fatalf("rerun = %+v, %v", v, err)
	}
	// Another image under the same name is another create: refused.
	if _, err := s.Create(ctx, CreateOptions{Name: "root1", Size: "1GiB", Thin: true}); !errors.Is(err, ErrConflict) {
		t.Errorf("err = %v", err)
	}
}
