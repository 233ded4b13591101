package iscsi

import (
	"context"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
)

func TestRemoveDeviceTellsGoneFromUnknown(t *testing.T) {
	const link = "/dev/disk/by-path/ip-192.0.2.10:3260-iscsi-iqn.x:v-lun-1"
	ctx := context.Background()

	gone := exectest.New(t, "web1")
	gone.ExpectFail(1, "", "", "readlink", "-e", link)
	if err := (Initiator{Run: gone}).RemoveDevice(ctx, link); err != nil {
		t.Errorf("missing link: %v, want done already", err)
	}

	// The connection dropped: nothing says the device is gone.
	lost := exectest.New(t, "web1")
	lost.ExpectFail(-1, "", "", "readlink", "-e", link)
	err := (Initiator{Run: lost}).RemoveDevice(ctx, link)
	if err == nil || !strings.Contains(err.Error(), link) {
		t.Errorf("readlink did not finish: err = %v, want an error naming the link", err)
	}
}
