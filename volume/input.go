package volume

import (
	"math"
	"regexp"
	"strconv"
	"strings"
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
		return invalid("%s name %q: use 1-63 of a-z 0-9 . _ -, starting with a letter or digit", kind, name)
	}
	if uuidRE.MatchString(name) {
		return invalid("%s name %q is shaped as a UUID, which commands read as a UUID: choose another name", kind, name)
	}
	return nil
}

var units = map[string]int64{
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "PiB": 1 << 50,
	// LVM's own single letters mean binary units too.
	"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50,
	"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50,
}

// ParseSize reads 512MiB, 20GiB, 1TiB or LVM's 20G (= GiB). A bare number is
// refused: "20" could mean bytes, MiB or GiB, and guessing loses data.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i <= 0 {
		if i < 0 && s != "" {
			return 0, invalid("size %q has no unit: write e.g. 512MiB, 20GiB or 1TiB", s)
		}
		return 0, invalid("size %q: write a positive number and a unit, e.g. 20GiB", s)
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	mult, ok := units[unit]
	if !ok {
		return 0, invalid("size %q: unknown unit %q (use KiB, MiB, GiB, TiB or LVM's K, M, G, T)", s, unit)
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 {
		return 0, invalid("size %q: must be more than zero", s)
	}
	bytes := n * float64(mult)
	if bytes >= math.MaxInt64/2 {
		return 0, invalid("size %q is too large", s)
	}
	if bytes < 1<<20 {
		return 0, invalid("size %q is below the 1MiB minimum", s)
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
