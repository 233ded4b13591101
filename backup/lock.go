package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/blk-project/blk/internal/owner"
)

// ErrLocked is returned when another live process holds a conflicting lock.
var ErrLocked = errors.New("repository is locked")

// LockKind says what a lock allows others: shared locks (backup, restore,
// verify) coexist; an exclusive one (delete, prune) excludes every other.
type LockKind string

const (
	Shared    LockKind = "shared"
	Exclusive LockKind = "exclusive"
)

type lockFile struct {
	Owner     string `json:"owner"`
	Op        string `json:"op"`
	CreatedAt string `json:"created_at"`
}

// Lock is a held repository lock.
type Lock struct {
	r    *Repo
	name string
}

// selfOwner is the owner recorded in locks (tests swap it).
var selfOwner = owner.Self

// Lock takes a lock of kind for op. It first writes its own lock file, then
// looks at the others: two processes racing each see the other's file, so
// at worst both back off, never both proceed. Locks whose owner is proven
// gone (same host, process dead or its pid reused) are removed; a live one,
// or one whose owner cannot be checked from here, refuses with ErrLocked.
func (r *Repo) Lock(kind LockKind, op string) (*Lock, error) {
	l := &Lock{r: r, name: "locks/" + string(kind) + "-" + randomID() + ".json"}
	b, _ := json.Marshal(lockFile{Owner: selfOwner, Op: op, CreatedAt: time.Now().UTC().Format(time.RFC3339)})
	if err := r.writeAtomic(l.name, b, true); err != nil {
		return nil, fmt.Errorf("lock %s: %w", r, err)
	}
	fis, err := r.fs.ReadDir(r.p("locks"))
	if err != nil {
		l.Unlock()
		return nil, fmt.Errorf("lock %s: %w", r, err)
	}
	for _, fi := range fis {
		name := "locks/" + fi.Name()
		if name == l.name || !strings.HasSuffix(name, ".json") {
			continue
		}
		if kind == Shared && !strings.HasPrefix(fi.Name(), string(Exclusive)+"-") {
			continue
		}
		b, err := r.readFile(name)
		if err != nil {
			continue // released meanwhile
		}
		var other lockFile
		if json.Unmarshal(b, &other) != nil {
			l.Unlock()
			return nil, fmt.Errorf("lock %s: unreadable lock %s: remove it if no blk uses the repository: %w", r, r.where(name), ErrLocked)
		}
		o, ok := owner.Parse(other.Owner)
		live, why := owner.Unknown, "its owner is unreadable"
		if ok {
			live, why = o.Check()
		}
		if live == owner.Gone {
			_ = r.fs.Remove(r.p(name))
			continue
		}
		l.Unlock()
		msg := fmt.Sprintf("lock %s: %q holds it (pid %d on %s since %s)", r, other.Op, o.Pid, o.Host, other.CreatedAt)
		if live == owner.Unknown {
			msg += fmt.Sprintf("; %s, so blk cannot prove it gone: if it is, remove %s", why, r.where(name))
		} else {
			msg += ", still running: wait for it to finish"
		}
		return nil, fmt.Errorf("%s: %w", msg, ErrLocked)
	}
	return l, nil
}

// Unlock releases the lock.
func (l *Lock) Unlock() error {
	if err := l.r.fs.Remove(l.r.p(l.name)); err != nil {
		return fmt.Errorf("unlock %s: %w", l.r, err)
	}
	return nil
}
