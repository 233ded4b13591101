// Package volume holds blk's workflows: each validates its input, moves the
// volume through its states in the state file, and drives the storage tools,
// undoing what it did when a later step fails.
package volume

import (
	"errors"

	"github.com/blk-project/blk/internal/fault"
)

// The kinds of failure a caller maps to exit codes. Errors from external
// commands are none of these (exit 1), unless a tool's known failure gave
// them one.
var (
	ErrInvalid  = fault.ErrInvalid
	ErrNotFound = fault.ErrNotFound
	ErrConflict = fault.ErrConflict
	ErrPartial  = fault.ErrPartial
	ErrNoSpace  = fault.ErrNoSpace
)

// ErrDrift is reconcile finding the state file and the hosts disagreeing:
// no failure of blk's, but an exit code of its own, so cron can alert.
var ErrDrift = errors.New("drift found")

func invalid(format string, args ...any) error { return fault.New(ErrInvalid, format, args...) }

func conflict(format string, args ...any) error { return fault.New(ErrConflict, format, args...) }
