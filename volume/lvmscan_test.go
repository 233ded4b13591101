package volume

import (
	"context"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
)

func TestLVMScanWarnings(t *testing.T) {
	args := []string{"lvmconfig", "--typeconfig", "full", "devices/global_filter", "devices/filter", "devices/scan_lvs"}
	for _, c := range []struct {
		name, conf string
		compute    bool
		want       []string
	}{
		{"storage, Debian's defaults", "global_filter=[\"a|.*|\"]\nfilter=[\"a|.*|\"]\nscan_lvs=0\n", false, nil},
		{"storage scanning LVs", "global_filter=[\"a|.*|\"]\nfilter=[\"a|.*|\"]\nscan_lvs=1\n", false, []string{"scan_lvs = 1"}},
		{"compute, Debian's defaults", "global_filter=[\"a|.*|\"]\nfilter=[\"a|.*|\"]\nscan_lvs=0\n", true, []string{"no filter that rejects"}},
		{"compute with blk's filter", "global_filter=[\"a|^/dev/disk/by-id/virtio-root$|\",\"r|.*|\"]\nfilter=[\"a|.*|\"]\nscan_lvs=0\n", true, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := exectest.New(t, "stor1")
			s := newService(t, f, nil)
			if c.compute {
				s.Config.Compute = []string{"stor1"}
			}
			f.Expect(c.conf, args...)
			warn, err := s.LVMScanWarnings(context.Background(), "stor1")
			if err != nil || len(warn) != len(c.want) {
				t.Fatalf("warnings %q, %v; want %q", warn, err, c.want)
			}
			for i, w := range c.want {
				if !strings.Contains(warn[i], w) {
					t.Errorf("warning %q lacks %q", warn[i], w)
				}
			}
		})
	}
}
