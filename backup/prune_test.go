package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blk-project/blk/internal/owner"
)

// at makes a manifest created at the given time, named after it.
func at(ts string) *Manifest {
	return &Manifest{Name: ts, CreatedAt: ts}
}

func names(ms []*Manifest) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Name)
	}
	return strings.Join(s, " ")
}

func TestPolicyKeep(t *testing.T) {
	list := []*Manifest{
		at("2026-01-01T10:00:00Z"),
		at("2026-01-31T23:00:00Z"),
		at("2026-02-14T09:00:00Z"),
		at("2026-02-15T09:00:00Z"), // Sunday, ISO week 7
		at("2026-02-16T08:00:00Z"), // Monday, week 8
		at("2026-02-16T08:30:00Z"),
		at("2026-02-16T09:10:00Z"),
		at("2026-02-16T09:50:00Z"),
	}
	for _, c := range []struct {
		name string
		p    Policy
		keep string
	}{
		{"last 3", Policy{Last: 3}, "2026-02-16T09:50:00Z 2026-02-16T09:10:00Z 2026-02-16T08:30:00Z"},
		{"last more than there are", Policy{Last: 20}, names(reverse(list))},
		{"hourly 2", Policy{Hourly: 2}, "2026-02-16T09:50:00Z 2026-02-16T08:30:00Z"},
		{"daily 2", Policy{Daily: 2}, "2026-02-16T09:50:00Z 2026-02-15T09:00:00Z"},
		{"weekly 2", Policy{Weekly: 2}, "2026-02-16T09:50:00Z 2026-02-15T09:00:00Z"},
		{"monthly 2", Policy{Monthly: 2}, "2026-02-16T09:50:00Z 2026-01-31T23:00:00Z"},
		// A rule with counts left keeps the oldest backup too (restic).
		{"monthly 5 keeps the oldest", Policy{Monthly: 5}, "2026-02-16T09:50:00Z 2026-01-31T23:00:00Z 2026-01-01T10:00:00Z"},
		{"all monthly", Policy{Monthly: -1}, "2026-02-16T09:50:00Z 2026-01-31T23:00:00Z 2026-01-01T10:00:00Z"},
		{"rules add up", Policy{Last: 1, Daily: 3, Monthly: 2},
			"2026-02-16T09:50:00Z 2026-02-15T09:00:00Z 2026-02-14T09:00:00Z 2026-01-31T23:00:00Z"},
	} {
		keep, remove := c.p.Keep(list)
		if got := names(keep); got != c.keep {
			t.Errorf("%s: keeps %s\nwant %s", c.name, got, c.keep)
		}
		if len(keep)+len(remove) != len(list) {
			t.Errorf("%s: %d kept + %d removed of %d", c.name, len(keep), len(remove), len(list))
		}
	}
}

func reverse(ms []*Manifest) []*Manifest {
	out := slices.Clone(ms)
	slices.Reverse(out)
	return out
}

func TestPruneRemovesBackupsThenUnusedChunks(t *testing.T) {
	r := newRepo(t)
	var ms []*Manifest
	for i := range 3 {
		ms = append(ms, backup(t, r, volumeData(int64(10+i)), Options{VolumeUUID: "v1"}))
	}
	other := backup(t, r, volumeData(20), Options{VolumeUUID: "v2"})
	if _, err := r.Prune(Policy{}, "", false); err == nil {
		t.Fatal("prune without a rule ran")
	}
	res, err := r.Prune(Policy{Last: 1}, "v1", true)
	if err != nil || len(res.Remove) != 2 || res.GC.Chunks != 12 {
		t.Fatalf("dry run: %v, removes %d, frees %d chunks; want 2 backups, 12 chunks", err, len(res.Remove), res.GC.Chunks)
	}
	if n := len(chunkFiles(t, r)); n != 24 {
		t.Fatalf("a dry run changed the repository: %d chunk files", n)
	}
	if res, err = r.Prune(Policy{Last: 1}, "v1", false); err != nil {
		t.Fatal(err)
	}
	left, _, _ := r.List()
	if got := names(left); got != names([]*Manifest{ms[2], other}) || len(chunkFiles(t, r)) != 12 || res.GC.Chunks != 12 {
		t.Errorf("after prune: backups %s, %d chunk files, gc %d", got, len(chunkFiles(t, r)), res.GC.Chunks)
	}
	for _, m := range left {
		if err := r.Verify(context.Background(), m, true); err != nil {
			t.Error(err)
		}
	}
}

func writeLock(t *testing.T, r *Repo, kind LockKind, own string) string {
	t.Helper()
	p := r.p("locks", string(kind)+"-test.json")
	b, _ := json.Marshal(lockFile{Owner: own, Op: "backup", CreatedAt: time.Now().UTC().Format(time.RFC3339)})
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLocks(t *testing.T) {
	r := newRepo(t)
	c := osexec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("%s:%s:%s:%d:1", owner.Hostname(), owner.BootID(), owner.PidNS(), c.Process.Pid)

	checkSharedAndExclusive(t, r)

	// A lock of a dead process is taken over; one of a live process, or
	// of another host, is not.
	stale := writeLock(t, r, Exclusive, dead)
	if l, err := r.Lock(Exclusive, "prune"); err != nil {
		t.Fatalf("over a stale lock: %v", err)
	} else {
		l.Unlock()
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("the stale lock is still there")
	}
	for _, own := range []string{selfOwner, "otherhost:" + owner.BootID() + ":1:1:1"} {
		p := writeLock(t, r, Shared, own)
		if _, err := r.Lock(Exclusive, "prune"); !errors.Is(err, ErrLocked) {
			t.Errorf("exclusive over a shared lock of %s: %v", own, err)
		}
		os.Remove(p)
	}
	if fis, _ := os.ReadDir(filepath.Join(r.root, "locks")); len(fis) != 0 {
		t.Errorf("refused locks left %d files", len(fis))
	}
}

// RFC 3339 drops trailing zeros of fractions: ".1Z" sorts after ".12Z" as
// text. Backups are ordered as times.
func TestListOrdersByTime(t *testing.T) {
	r := newRepo(t)
	for _, ts := range []string{"2026-02-16T09:00:05.12Z", "2026-02-16T09:00:05.1Z", "2026-02-16T09:00:05.2Z"} {
		m := &Manifest{Format: Format, UUID: randomID(), Name: ts, CreatedAt: ts, ChunkSize: ChunkSize}
		if err := r.writeManifest(m); err != nil {
			t.Fatal(err)
		}
	}
	ms, _, _ := r.List()
	if got := names(ms); got != "2026-02-16T09:00:05.1Z 2026-02-16T09:00:05.12Z 2026-02-16T09:00:05.2Z" {
		t.Errorf("listed %s", got)
	}
}

// checkSharedAndExclusive: shared locks coexist; an exclusive one waits for
// them, and excludes a shared one.
func checkSharedAndExclusive(t *testing.T, r *Repo) {
	t.Helper()
	a, err := r.Lock(Shared, "backup")
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Lock(Shared, "restore")
	if err != nil {
		t.Fatalf("a second shared lock: %v", err)
	}
	if _, err = r.Lock(Exclusive, "prune"); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("exclusive over shared: %v", err)
	}
	a.Unlock()
	b.Unlock()
	x, err := r.Lock(Exclusive, "prune")
	if err != nil {
		t.Fatal(err)
	}
	if _, err = r.Lock(Shared, "backup"); !errors.Is(err, ErrLocked) {
		t.Fatalf("shared over exclusive: %v", err)
	}
	x.Unlock()
}
