package volume

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// undoTimeout bounds the undo of a failed workflow: it runs past the
// workflow's own deadline or Ctrl-C, but not forever.
var undoTimeout = 2 * time.Minute

// reverter collects undo steps as a workflow makes things, and runs them in
// reverse unless the workflow succeeded, so a failed operation leaves
// nothing it made behind (Incus's idea):
//
//	r := newReverter()
//	defer r.fail(ctx, &err)
//	... r.add("target", undo) after each step ...
//	r.success()
type reverter struct {
	steps  []revertStep
	op     Op
	ok     bool
	failed []string // undo steps that failed, in the order they ran
}

type revertStep struct {
	name string
	undo func(context.Context) error
}

func newReverter() *reverter { return &reverter{} }

func (r *reverter) add(name string, undo func(context.Context) error) {
	r.steps = append(r.steps, revertStep{name, undo})
}

// journal has fail end op after any undo, with the workflow's error: while
// a process undoes, the volume is still held by it.
func (r *reverter) journal(op Op) { r.op = op }

// leftovers names what the undo so far could not remove. The first undo
// registered runs last: it releases the volume, and must not when something
// it stands for is still there.
func (r *reverter) leftovers() []string { return r.failed }

// success keeps everything made; the deferred fail then only ends the
// operation.
func (r *reverter) success() { r.ok = true }

// fail, deferred, undoes everything unless success was called, even when
// ctx is cancelled (within undoTimeout), and joins what could not be
// undone to *errp.
func (r *reverter) fail(ctx context.Context, errp *error) {
	if !r.ok {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer cancel()
		if *errp == nil { // a return without success: treat it as a failure
			*errp = errors.New("workflow ended without success: undone")
		}
		errs := []error{*errp}
		for i := len(r.steps) - 1; i >= 0; i-- {
			if err := r.steps[i].undo(uctx); err != nil {
				errs = append(errs, fmt.Errorf("rollback %s: %w", r.steps[i].name, err))
				r.failed = append(r.failed, r.steps[i].name)
			}
		}
		if len(errs) > 1 {
			*errp = errors.Join(errs...)
		}
	}
	r.steps = nil
	if r.op != nil {
		if err := r.op.End(ctx, *errp); err != nil {
			*errp = errors.Join(*errp, err)
		}
	}
}
