package lvm

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
)

// The XML is thin_delta's answer in the lab after 3 × 64 KiB written at
// block 100, the first MiB discarded, plus a right_only range added by hand.
func TestParseThinDelta(t *testing.T) {
	out, err := os.ReadFile("testdata/thin_delta.xml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := parseThinDelta(out)
	if err != nil {
		t.Fatal(err)
	}
	const b = 64 << 10
	want := Delta{BlockBytes: b,
		Changed: []Extent{{100 * b, 3 * b}, {200 * b, 2 * b}},
		Zeroed:  []Extent{{0, 16 * b}}}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("got %+v, want %+v", d, want)
	}
	for _, bad := range []string{"", "<superblock/>", `<superblock data_block_size="128"></superblock>`,
		// Lies: a negative range, one that wraps when made bytes.
		`<superblock data_block_size="128"><diff><different begin="-4" length="1"/></diff></superblock>`,
		`<superblock data_block_size="128"><diff><right_only begin="144115188075855872" length="1"/></diff></superblock>`,
		`<superblock data_block_size="128"><diff><left_only begin="0" length="-1"/></diff></superblock>`,
		`<superblock data_block_size="9223372036854775807"><diff></diff></superblock>`} {
		if _, err := parseThinDelta([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestMetadataSnapUsesDeviceMapperNames(t *testing.T) {
	held := "0 8388608 thin-pool 3 118/1024 131/65536 55 rw discard_passdown queue_if_no_space - 256\n"
	f := exectest.New(t, "stor1").
		Expect(held, "dmsetup", "status", "my--vg-my--pool-tpool").
		Expect("", "dmsetup", "message", "my--vg-my--pool-tpool", "0", "release_metadata_snap")
	if err := (LVM{Run: f, VG: "my-vg"}).ReleaseMetadataSnap(context.Background(), "my-pool"); err != nil {
		t.Fatal(err)
	}

	// None held: the fake fails the test if release is sent.
	f = exectest.New(t, "stor1").Expect(strings.Replace(held, " 55 ", " - ", 1), "dmsetup", "status", "blk-pool-tpool")
	if err := (LVM{Run: f, VG: "blk"}).ReleaseMetadataSnap(context.Background(), "pool"); err != nil {
		t.Fatal(err)
	}
}
