package volume

import (
	"context"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
)

func TestHostCheckWarnsWhenLVMWouldScanBlksVolumes(t *testing.T) {
	for _, c := range []struct {
		name, conf string
		compute    bool
		want       []string
	}{
		{"storage, Debian's defaults", lvmDefaults, false, nil},
		{"storage scanning LVs", strings.Replace(lvmDefaults, "scan_lvs=0", "scan_lvs=1", 1), false, []string{"stor1: lvm.conf sets scan_lvs = 1"}},
		{"compute, Debian's defaults", lvmDefaults, true, []string{"stor1: lvm.conf has no filter that rejects devices"}},
		{"compute with blk's filter", lvmFiltered, true, nil},
		{"compute without LVM", "", true, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := exectest.New(t, "stor1")
			s := checkService(t, f, true)
			healthyStorage(f)
			if c.compute {
				healthyCompute(f)
			} else {
				s.Config.Compute = nil
			}
			if c.conf == "" {
				f.ExpectFail(127, "", "", lvmconf...)
			} else {
				f.Expect(c.conf, lvmconf...)
			}
			reps, err := s.CheckHosts(context.Background(), nil)
			// A warning fails no check.
			if err != nil || len(reps[0].Warnings) != len(c.want) {
				t.Fatalf("warnings %q, %v; want %q", reps[0].Warnings, err, c.want)
			}
			for i, w := range c.want {
				if !strings.HasPrefix(reps[0].Warnings[i], w) {
					t.Errorf("warning %q lacks %q", reps[0].Warnings[i], w)
				}
			}
		})
	}
}
