package volume

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
)

func TestEachIsBoundedAndKeepsOrder(t *testing.T) {
	names := make([]string, 100)
	for i := range names {
		names[i] = "h" + strconv.Itoa(i)
	}
	var running, most atomic.Int32
	start := time.Now()
	errs := (&Hosts{}).Each(context.Background(), names, 8, func(_ context.Context, name string) error {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(10 * time.Millisecond)
		running.Add(-1)
		return errors.New(name)
	})
	if most.Load() != 8 {
		t.Errorf("at most %d at once, want 8", most.Load())
	}
	// 100 × 10ms one after another would take a second.
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("took %s: not concurrent", d)
	}
	for i, err := range errs {
		if err == nil || err.Error() != names[i] {
			t.Fatalf("errs[%d] = %v, want %s", i, err, names[i])
		}
	}
}

func TestEachStopsStartingOnceCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var ran atomic.Int32
	errs := (&Hosts{}).Each(ctx, []string{"a", "b", "c", "d"}, 1, func(_ context.Context, name string) error {
		ran.Add(1)
		if name == "b" {
			cancel()
		}
		return nil
	})
	if ran.Load() != 2 || errs[1] != nil || !errors.Is(errs[2], context.Canceled) || !errors.Is(errs[3], context.Canceled) {
		t.Errorf("ran %d, errs %v", ran.Load(), errs)
	}
}

// One host's slow libvirt dial must not hold up another's: reconcile
// and attach over many hosts dial them in parallel.
func TestHypervisorsAreDialledInParallel(t *testing.T) {
	cfg := &config.Config{Hosts: map[string]config.Host{"comp1": {Address: "192.0.2.20"}, "comp2": {Address: "192.0.2.21"}}}
	hs := NewHosts(cfg, nil, nil)
	hs.New = func(name string, _ config.Host) exec.Runner { return exectest.New(t, name) }
	comp2Dialled := make(chan struct{})
	var dials sync.Map
	hs.NewHypervisor = func(ctx context.Context, name string, _ exec.Runner) (hypervisor.Hypervisor, error) {
		n, _ := dials.LoadOrStore(name, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		if name == "comp1" {
			select { // comp1 answers only once comp2 has been dialled
			case <-comp2Dialled:
			case <-time.After(2 * time.Second):
				return nil, fmt.Errorf("comp1's dial held comp2's up")
			}
		} else {
			close(comp2Dialled)
		}
		return newFakeHV(), nil
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i, name := range []string{"comp1", "comp1", "comp2", "comp1"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 2 {
				time.Sleep(20 * time.Millisecond) // comp1's dial is under way
			}
			_, errs[i] = hs.Hypervisor(context.Background(), name)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if n, _ := dials.Load("comp1"); n.(*atomic.Int32).Load() != 1 {
		t.Errorf("comp1 dialled %d times, want once", n.(*atomic.Int32).Load())
	}
}
