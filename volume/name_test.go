package volume

import (
	"errors"
	"testing"
)

func TestNamesShapedAsUUIDsAreRefused(t *testing.T) {
	if err := CheckName("volume", "6f1c2b7e-3d4a-4b5c-8d9e-0a1b2c3d4e5f"); !errors.Is(err, ErrInvalid) {
		t.Errorf("UUID-shaped name: err = %v, want invalid input", err)
	}
	for _, ok := range []string{"db1", "6f1c2b7e", "6f1c2b7e-3d4a-4b5c-8d9e-0a1b2c3d4e5f-x"} {
		if err := CheckName("volume", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}
