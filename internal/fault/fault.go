// Package fault is blk's one error type: a kind, which callers test with
// errors.Is to choose an exit code or a recovery, and a cause, which is what
// the operator reads.
package fault

import (
	"errors"
	"fmt"
)

// The kinds. An error of none of them is an external step that failed.
var (
	ErrInvalid  = errors.New("invalid input")
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrPartial  = errors.New("partly failed")
	ErrExists   = errors.New("already exists")
	ErrNoSpace  = errors.New("insufficient free space")
	ErrInUse    = errors.New("in use")
)

// Error is a failure of a known kind. Its text is the cause's alone: the
// kind is for programs, the cause for people.
type Error struct {
	Kind error
	Err  error
}

func (e *Error) Error() string   { return e.Err.Error() }
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// New makes an error of kind with a formatted cause (%w allowed).
func New(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Err: fmt.Errorf(format, args...)}
}

// Wrap gives err a kind.
func Wrap(kind, err error) error { return &Error{Kind: kind, Err: err} }
