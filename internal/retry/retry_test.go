package retry

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// fakeClock records the waits and lets no real time pass.
func fakeClock(t *testing.T) *[]time.Duration {
	var waits []time.Duration
	t0 := time.Unix(0, 0)
	oldNow, oldAfter := now, after
	t.Cleanup(func() { now, after = oldNow, oldAfter })
	now = func() time.Time { return t0 }
	after = func(d time.Duration) <-chan time.Time {
		waits = append(waits, d)
		t0 = t0.Add(d)
		c := make(chan time.Time, 1)
		c <- t0
		return c
	}
	return &waits
}

var errBusy = errors.New("busy")

func TestBoundedAttemptsWithDoublingCappedBackoff(t *testing.T) {
	waits := fakeClock(t)
	calls := 0
	err := Do(context.Background(), Policy{Attempts: 5, Delay: 100 * time.Millisecond, Max: 300 * time.Millisecond},
		func() error { calls++; return errBusy })
	if !errors.Is(err, errBusy) || calls != 5 {
		t.Fatalf("err %v after %d calls, want busy after 5", err, calls)
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}
	if !slices.Equal(*waits, want) {
		t.Errorf("waits = %v, want %v", *waits, want)
	}
}

func TestWithinBoundsTheTimeAndConstantDelayStaysConstant(t *testing.T) {
	waits := fakeClock(t)
	calls := 0
	err := Do(context.Background(), Policy{Within: time.Second, Delay: 250 * time.Millisecond}, func() error { calls++; return errBusy })
	if !errors.Is(err, errBusy) || calls != 5 || len(*waits) != 4 || (*waits)[3] != 250*time.Millisecond {
		t.Fatalf("err %v, %d calls, waits %v", err, calls, *waits)
	}
}

func TestStopsAtSuccessAndAtARefusedError(t *testing.T) {
	fakeClock(t)
	calls := 0
	if err := Do(context.Background(), Policy{Attempts: 9, Delay: time.Millisecond}, func() error {
		calls++
		if calls < 3 {
			return errBusy
		}
		return nil
	}); err != nil || calls != 3 {
		t.Errorf("err %v after %d calls, want nil after 3", err, calls)
	}
	fatal := errors.New("fatal")
	calls = 0
	err := Do(context.Background(), Policy{Attempts: 9, Delay: time.Millisecond, Retry: func(err error) bool { return errors.Is(err, errBusy) }},
		func() error { calls++; return fatal })
	if err != fatal || calls != 1 {
		t.Errorf("err %v after %d calls, want fatal after 1", err, calls)
	}
}

func TestStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	start := time.Now()
	err := Do(ctx, Policy{Within: time.Hour, Delay: time.Minute}, func() error {
		calls++
		cancel()
		return errBusy
	})
	if !errors.Is(err, errBusy) || !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("err %v after %d calls", err, calls)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("waited %v after cancel", time.Since(start))
	}
}

func TestZeroPolicyTriesOnce(t *testing.T) {
	calls := 0
	if err := Do(context.Background(), Policy{}, func() error { calls++; return errBusy }); !errors.Is(err, errBusy) || calls != 1 {
		t.Errorf("err %v after %d calls", err, calls)
	}
}
