package exectest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec"
)

// recorder is a testing.TB that keeps failures instead of reporting them,
// to test the fake's own checks.
type recorder struct {
	testing.TB
	errs     []string
	cleanups []func()
}

func (r *recorder) Helper()           {}
func (r *recorder) Cleanup(fn func()) { r.cleanups = append(r.cleanups, fn) }
func (r *recorder) Errorf(format string, a ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, a...))
}
func (r *recorder) finish() []string {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	return r.errs
}

var (
	addLUN = []string{"tgtadm", "--op", "new", "--mode", "logicalunit"}
	bind   = []string{"tgtadm", "--op", "bind", "--mode", "target"}
)

func runAll(f *Fake, argvs ...[]string) {
	for _, a := range argvs {
		f.Run(context.Background(), exec.Cmd{Args: a})
	}
}

func TestInOrderFailsWhenBindComesBeforeAddLUN(t *testing.T) {
	for _, c := range []struct {
		run  [][]string
		want string
	}{
		{[][]string{addLUN, bind}, ""},
		{[][]string{bind, addLUN}, "ran out of order, too early: tgtadm --op bind"},
		{[][]string{addLUN}, "never ran: tgtadm --op bind"},
	} {
		r := &recorder{TB: t}
		f := New(r, "stor1").Expect("", addLUN...).Expect("", bind...).InOrder(addLUN, bind)
		runAll(f, c.run...)
		errs := strings.Join(r.finish(), "\n")
		if c.want == "" && errs != "" || c.want != "" && !strings.Contains(errs, c.want) {
			t.Errorf("running %q: failures %q, want %q", c.run, errs, c.want)
		}
	}
}

func TestOrderIsFreeWithoutInOrder(t *testing.T) {
	r := &recorder{TB: t}
	runAll(New(r, "stor1").Expect("", addLUN...).Expect("", bind...), bind, addLUN)
	if errs := r.finish(); len(errs) != 0 {
		t.Errorf("failures %q", errs)
	}
}
