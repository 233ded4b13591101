package fault

import (
	"errors"
	"fmt"
	"testing"
)

func TestKindAndCauseBothMatchAndOnlyTheCauseIsPrinted(t *testing.T) {
	cause := errors.New("lvcreate: exit 5")
	err := fmt.Errorf("create volume %q: %w", "db1", Wrap(ErrNoSpace, cause))
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, cause) || errors.Is(err, ErrNotFound) {
		t.Errorf("errors.Is: %v", err)
	}
	if err.Error() != `create volume "db1": lvcreate: exit 5` {
		t.Errorf("text = %q", err)
	}
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != ErrNoSpace {
		t.Errorf("errors.As: %+v", fe)
	}
	if e := New(ErrInvalid, "size %q: %w", "x", cause); e.Error() != `size "x": lvcreate: exit 5` || !errors.Is(e, cause) || !errors.Is(e, ErrInvalid) {
		t.Errorf("New: %v", e)
	}
}
