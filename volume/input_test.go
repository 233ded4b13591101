package volume

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSizeSpellingsAndMistakes(t *testing.T) {
	for in, want := range map[string]int64{
		"20GiB": 20 << 30, "20gib": 20 << 30, "20Gi": 20 << 30, "20gi": 20 << 30, "20G": 20 << 30, "20g": 20 << 30,
		"512MiB": 512 << 20, "512m": 512 << 20, "1TiB": 1 << 40, "1.5GiB": 3 << 29, " 2GiB ": 2 << 30, "1024KiB": 1 << 20,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"20":       "has no unit",
		"20GB":     `size "20GB": GB is ambiguous (10^9 or 2^30 bytes?): did you mean 20GiB?`,
		"20gb":     "did you mean 20GiB?",
		"512MB":    "did you mean 512MiB?",
		"1..5G":    `size "1..5G": "1..5" is not a number`,
		"1..2GiB":  `size "1..2GiB": "1..2" is not a number`,
		"1 GiB":    `size "1 GiB": no space inside a size: write 1GiB`,
		"0GiB":     "must be more than zero",
		"-5G":      "must be more than zero",
		"GiB":      "write a number and a unit",
		"":         "empty size",
		"20XiB":    `unknown unit "XiB"`,
		"20Gibs":   `unknown unit "Gibs"`,
		"1KiB":     "below the 1MiB minimum",
		"99999PiB": "too large",
	} {
		_, err := ParseSize(in)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSize(%q) = %v; want %q", in, err, want)
		}
	}
	_, err := ParseSize(strings.Repeat("9", 5000) + "x")
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("a long size is echoed whole: %d bytes", len(err.Error()))
	}
}

func TestNamesAndRefs(t *testing.T) {
	if err := CheckName("volume", strings.Repeat("a", 5000)); err == nil || len(err.Error()) > 200 || !strings.Contains(err.Error(), "(5000 bytes)") {
		t.Errorf("long name: %v", err)
	}
	for _, ok := range []string{"db1", "0f8fad5b-d9cb-469f-a165-70867728950e", "0F8FAD5B-D9CB-469F-A165-70867728950E"} {
		if err := CheckRef(ok); err != nil {
			t.Errorf("CheckRef(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Bad Name", "../x", strings.Repeat("a", 64)} {
		if err := CheckRef(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckRef(%q) = %v", bad, err)
		}
	}
}
