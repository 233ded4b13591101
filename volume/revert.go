package volume

import (
	"context"
	"errors"
	"fmt"
)

// reverter collects undo steps as a workflow makes things, and runs them in
// reverse when a later step fails, so a failed operation leaves nothing it
// made behind. (Incus's idea.)
type reverter struct {
	steps []revertStep
}

type revertStep struct {
	name string
	undo func(context.Context) error
}

func (r *reverter) add(name string, undo func(context.Context) error) {
	r.steps = append(r.steps, revertStep{name, undo})
}

// fail undoes everything, even when the operation's context was cancelled,
// and joins what could not be undone to cause.
func (r *reverter) fail(ctx context.Context, cause error) error {
	ctx = context.WithoutCancel(ctx)
	errs := []error{cause}
	for i := len(r.steps) - 1; i >= 0; i-- {
		if err := r.steps[i].undo(ctx); err != nil {
			errs = append(errs, fmt.Errorf("rollback %s: %w", r.steps[i].name, err))
		}
	}
	r.steps = nil
	return errors.Join(errs...)
}
