// Package retry is blk's one retry loop: bounded in tries or time, waiting
// longer after each failure, and ending as soon as the context does.
package retry

import (
	"context"
	"fmt"
	"time"
)

// Policy says how often and how long to try. A zero Policy tries once.
type Policy struct {
	Attempts int              // most calls of fn; 0: bounded by Within alone
	Within   time.Duration    // no try starts later than this after the first; 0: bounded by Attempts alone
	Delay    time.Duration    // wait after the first failure
	Max      time.Duration    // each wait doubles up to Max; 0: every wait is Delay
	Retry    func(error) bool // which failures are worth another try; nil: all
}

// Tests replace the clock.
var (
	now   = time.Now
	after = time.After
)

// Do calls fn until it succeeds, fails in a way p.Retry refuses, or runs out
// of tries or time, and returns fn's last error. If ctx ends while waiting,
// that error is returned with ctx's.
func Do(ctx context.Context, p Policy, fn func() error) error {
	if p.Attempts <= 0 && p.Within <= 0 {
		p.Attempts = 1
	}
	start, delay := now(), p.Delay
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || p.Retry != nil && !p.Retry(err) {
			return err
		}
		if p.Attempts > 0 && attempt >= p.Attempts || p.Within > 0 && now().Add(delay).Sub(start) > p.Within {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-after(delay):
		}
		if p.Max > delay {
			delay = min(2*delay, p.Max)
		}
	}
}
