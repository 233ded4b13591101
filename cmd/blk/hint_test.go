package main

import (
	"fmt"
	"testing"

	"github.com/blk-project/blk/state"
	"github.com/blk-project/blk/volume"
)

// The hint comes from the error's type, whatever its words say.
func TestHintIsChosenByTypeNotByText(t *testing.T) {
	held := fmt.Errorf("delete volume: %w", &state.ConflictError{Volume: "db1", Status: "deleting", Holder: "delete by h:1:2"})
	if exitCode(held) != ExitConflict || hint(held, ExitConflict) == "" {
		t.Errorf("held volume: exit %d, hint %q", exitCode(held), hint(held, ExitConflict))
	}
	free := &state.ConflictError{Volume: "db1", Status: "in-use"}
	words := fmt.Errorf("%w: instance %q is held by its owner", volume.ErrConflict, "web1")
	for _, err := range []error{free, words} {
		if h := hint(err, ExitConflict); h != "" {
			t.Errorf("%v: hint %q, want none", err, h)
		}
	}
}
