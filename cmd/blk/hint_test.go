package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/blk-project/blk/state"
	"github.com/blk-project/blk/volume"
)

// The hint comes from the error's type, whatever its words say. (A held
// volume needs none: its conflict message says who holds it and what to do.)
func TestHintIsChosenByTypeNotByText(t *testing.T) {
	usage := fmt.Errorf("create: %w", &usageError{path: "blk volume create", err: errors.New("--size is required")})
	if exitCode(usage) != ExitUsage || hint(usage) != "see 'blk volume create --help'" {
		t.Errorf("usage error: exit %d, hint %q", exitCode(usage), hint(usage))
	}
	held := fmt.Errorf("delete volume: %w", &state.ConflictError{Volume: "db1", Status: "deleting", Holder: "delete by h:1:2"})
	words := fmt.Errorf("%w: see 'blk volume create --help'", volume.ErrInvalid)
	for _, err := range []error{held, words} {
		if h := hint(err); h != "" {
			t.Errorf("%v: hint %q, want none", err, h)
		}
	}
}
