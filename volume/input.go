package volume

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// CheckName enforces blk's naming rule for volumes, snapshots and backups.
// A name shaped as a UUID is refused: commands take a name or a UUID, and a
// name equal to another volume's UUID would make them pick the wrong one.
func CheckName(kind, name string) error {
	if !nameRE.MatchString(name) {
		return invalid("%s name %q: use 1-63 of a-z 0-9 . _ -, starting with a letter or digit", kind, Truncate(name))
	}
	if uuidRE.MatchString(name) {
		return invalid("%s name %q is shaped as a UUID, which commands read as a UUID: choose another name", kind, name)
	}
	return nil
}

// CheckRef accepts what can name an existing volume: a name or a UUID.
// Anything else cannot exist, and is refused as bad input before any
// lookup (and before it is echoed whole).
func CheckRef(ref string) error {
	if nameRE.MatchString(ref) || uuidRE.MatchString(strings.ToLower(ref)) {
		return nil
	}
	if ref == "" {
		return invalid("empty volume name")
	}
	return invalid("%q is neither a volume name (1-63 of a-z 0-9 . _ -) nor a UUID", Truncate(ref))
}

// CheckText refuses a free-form value (a path, an instance name) that
// holds NUL or is not UTF-8: the state keeps text, PostgreSQL refuses
// both, and a rerun must find what the first run recorded, byte for byte.
func CheckText(what, s string) error {
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return invalid("%s %q: holds a NUL or bytes that are not UTF-8", what, Truncate(s))
	}
	return nil
}

// Truncate keeps what a user typed short enough to echo in a message.
func Truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "… (" + strconv.Itoa(len(s)) + " bytes)"
}

var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)$`)

var multipliers = map[byte]int64{'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40, 'p': 1 << 50}

// ParseSize reads a number and a binary unit: 512MiB, 20GiB, 1TiB, any
// case, with or without the B (20Gi, 20gib), or LVM's 20G (= GiB, as LVM
// means it). A bare number is refused: "20" could mean bytes, MiB or GiB,
// and guessing loses data. So is 20GB: decimal or binary, nobody can tell.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	q := Truncate(s)
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		num := strings.TrimRightFunc(s, unicode.IsLetter)
		switch {
		case s == "":
			return 0, invalid("empty size: write a number and a unit, e.g. 20GiB")
		case strings.ContainsFunc(s, unicode.IsSpace):
			return 0, invalid("size %q: no space inside a size: write %s", q, Truncate(strings.Join(strings.Fields(s), "")))
		case strings.HasPrefix(s, "-"):
			return 0, invalid("size %q: must be more than zero", q)
		case num == "":
			return 0, invalid("size %q: write a number and a unit, e.g. 20GiB", q)
		default:
			return 0, invalid("size %q: %q is not a number", q, Truncate(num))
		}
	}
	num, unit := m[1], strings.ToLower(m[2])
	if unit == "" {
		return 0, invalid("size %q has no unit: write e.g. 512MiB, 20GiB or 1TiB", q)
	}
	mult, ok := multipliers[unit[0]]
	switch {
	case !ok || len(unit) > 3 || unit[1:] != "" && unit[1:] != "i" && unit[1:] != "ib" && unit[1:] != "b":
		return 0, invalid("size %q: unknown unit %q (use KiB, MiB, GiB, TiB, PiB or LVM's K, M, G, T, P)", q, m[2])
	case unit[1:] == "b":
		return 0, invalid("size %q: %s is ambiguous (10^%d or 2^%d bytes?): did you mean %s%siB?",
			q, m[2], 3*strings.IndexByte("kmgtp", unit[0])+3, 10*strings.IndexByte("kmgtp", unit[0])+10, num, strings.ToUpper(unit[:1]))
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 {
		return 0, invalid("size %q: must be more than zero", q)
	}
	bytes := n * float64(mult)
	if bytes >= math.MaxInt64/2 {
		return 0, invalid("size %q is too large", q)
	}
	if bytes < 1<<20 {
		return 0, invalid("size %q is below the 1MiB minimum", q)
	}
	return int64(math.Ceil(bytes)), nil
}

// FormatSize prints bytes in the largest binary unit that keeps them readable.
func FormatSize(b int64) string {
	for _, u := range []struct {
		name string
		n    int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b >= u.n {
			v := float64(b) / float64(u.n)
			if v == math.Trunc(v) {
				return strconv.FormatInt(int64(v), 10) + u.name
			}
			return strconv.FormatFloat(v, 'f', 2, 64) + u.name
		}
	}
	return strconv.FormatInt(b, 10) + "B"
}
