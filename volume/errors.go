// Package volume holds blk's workflows: each validates its input, moves the
// volume through its states in the state file, and drives the storage tools,
// undoing what it did when a later step fails.
package volume

import (
	"errors"
	"fmt"

	"github.com/blk-project/blk/state"
)

// The kinds of failure a caller maps to exit codes. Errors from external
// commands are none of these (exit 1).
var (
	ErrInvalid  = errors.New("invalid input")
	ErrNotFound = state.ErrNotFound
	ErrConflict = state.ErrConflict
	ErrPartial  = errors.New("partly failed")
)

func invalid(format string, args ...any) error {
	return &kindError{kind: ErrInvalid, msg: fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) error {
	return &kindError{kind: ErrConflict, msg: fmt.Sprintf(format, args...)}
}

// kindError is a message of a given kind, without the kind's own text.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }
