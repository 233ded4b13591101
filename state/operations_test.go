package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/blk-project/blk/internal/owner"
	"github.com/blk-project/blk/internal/pgtest"
)

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	c := osexec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	return c.Process.Pid
}

// A new row and its create operation are one transaction: another process
// never sees a creating row without a live owner.
func TestInsertedVolumeIsNeverStale(t *testing.T) {
	ctx := context.Background()
	path := pgtest.State(t)
	s, other := open(t, path), open(t, path)
	op, err := s.InsertVolume(ctx, &Volume{UUID: "u1", Name: "db1", Backend: "b", SizeBytes: 1, Status: Creating})
	if err != nil {
		t.Fatal(err)
	}
	if other.Stale(ctx, "u1") {
		t.Fatal("a creating row of a live process is stale to another handle")
	}
	if err := op.End(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

// End records the outcome even after Ctrl-C or --timeout.
func TestEndRecordsWithACancelledContext(t *testing.T) {
	s := open(t, pgtest.State(t))
	op, err := s.BeginOp(context.Background(), "attach", "u1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := op.End(ctx, context.Canceled); err != nil {
		t.Fatal(err)
	}
	var st string
	s.db.QueryRow(`SELECT state FROM operations WHERE id = ?`, op.id).Scan(&st)
	if st != "failed" {
		t.Fatalf("operation is %q after End with a cancelled context, want failed", st)
	}
}

func TestConflictSaysWhoHoldsItAndWhatToDo(t *testing.T) {
	ctx := context.Background()
	h := hostname()
	shell := "sqlite3 "
	if testPostgres() {
		shell = "psql 'postgres://blk:xxxxx@"
	}
	for _, c := range []struct {
		op, owner string
		want      []string
	}{
		{"create", Owner, []string{`already exists (creating): held by "create" (pid ` + fmt.Sprint(os.Getpid()) + " on " + h + " since ", "still running: wait"}},
		{"attach", fmt.Sprintf("%s:%s:%s:%d:1", h, owner.BootID(), owner.PidNS(), deadPID(t)),
			[]string{`held by "attach"`, "that process is gone", "'blk volume detach --force db1'"}},
		{"delete", fmt.Sprintf("%s:%s:%s:%d:1", h, owner.BootID(), owner.PidNS(), deadPID(t)),
			[]string{"rerun 'blk volume delete db1' to finish it"}},
		{"create", fmt.Sprintf("stor9:%s:%s:77:1", owner.BootID(), owner.PidNS()),
			[]string{`(pid 77 on stor9 since `, "cannot tell from here", "on stor9 rerun the same 'blk volume create db1 ...'"}},
		{"detach", fmt.Sprintf("%s:%d:1", h, os.Getpid()),
			[]string{"cannot prove it gone", shell, "UPDATE operations SET state='failed' WHERE id=", "rerun 'blk volume detach db1'"}},
	} {
		s := open(t, pgtest.State(t))
		if _, err := s.InsertVolume(ctx, &Volume{UUID: "u1", Name: "db1", Backend: "b", SizeBytes: 1, Status: Creating}); err != nil {
			t.Fatal(err)
		}
		s.db.Exec(`UPDATE operations SET op = ?, owner = ?`, c.op, c.owner)
		_, err := s.InsertVolume(ctx, &Volume{UUID: "u2", Name: "db1", Backend: "b", SizeBytes: 1, Status: Creating})
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("err = %v, want a conflict", err)
		}
		msg := err.Error()
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s by %s:\n%s\nlacks %q", c.op, c.owner, msg, w)
			}
		}
		if !regexp.MustCompile(`since \d\d:\d\d:\d\d UTC`).MatchString(msg) {
			t.Errorf("%s: no start time in %q", c.op, msg)
		}
		for _, nowhere := range []string{"reconcile", "reset-state"} {
			if strings.Contains(msg, nowhere) {
				t.Errorf("%q points to %s, which does not exist", msg, nowhere)
			}
		}
	}
}

// holdWriteLock takes the state file's write lock from another handle, as a
// second blk in the middle of a transaction would, until the test ends.
func holdWriteLock(t *testing.T, path string) {
	t.Helper()
	h := open(t, path)
	c, err := h.db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lock := `BEGIN IMMEDIATE`
	if h.db.pg {
		lock = `BEGIN; ` + lockSQL
	}
	if _, err := c.ExecContext(context.Background(), lock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.ExecContext(context.Background(), `ROLLBACK`); c.Close() })
}

// Ctrl-C ends a wait for another writer at once, not after BusyTimeout.
func TestWaitForTheWriteLockStopsOnCancel(t *testing.T) {
	path := pgtest.State(t)
	s := open(t, path)
	holdWriteLock(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.BeginOp(ctx, "delete", "u1")
	if took := time.Since(start); took > time.Second {
		t.Errorf("cancel took effect after %v", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), s.Path()) {
		t.Errorf("err = %v, want the deadline and the state file", err)
	}
}

// A writer that gives up says which file, and who the journal says runs.
func TestLockTimeoutNamesTheFileAndTheHolder(t *testing.T) {
	defer func(d time.Duration) { BusyTimeout = d }(BusyTimeout)
	BusyTimeout = 200 * time.Millisecond
	ctx := context.Background()
	path := pgtest.State(t)
	s := open(t, path)
	op, err := s.InsertVolume(ctx, &Volume{UUID: "u1", Name: "db1", Backend: "b", SizeBytes: 1, Status: Creating})
	if err != nil {
		t.Fatal(err)
	}
	holdWriteLock(t, path)
	err = op.Step(ctx, "lvcreate")
	locked := "database is locked"
	if s.db.pg {
		locked = "lock timeout"
	}
	want := []string{s.Path(), locked, `"create" of "db1" (pid ` + fmt.Sprint(os.Getpid())}
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("err = %v, lacks %q", err, w)
		}
	}
}

// Claim moves and journals at once: refused while a live process holds the
// volume, granted over an owner proven gone, whose operation it closes.
func TestClaimTakesOverOnlyFromTheDead(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.State(t))
	live, err := s.InsertVolume(ctx, &Volume{UUID: "u1", Name: "db1", Backend: "lvm-1", SizeBytes: 1 << 30, Status: Creating})
	if err != nil {
		t.Fatal(err)
	}
	var told []string
	s.TakeOver = func(msg string) { told = append(told, msg) }
	if _, err = s.Claim(ctx, "delete", "u1", []string{Creating}, Deleting); !errors.Is(err, ErrConflict) {
		t.Fatalf("claim under a live owner: %v", err)
	}
	if len(told) != 0 {
		t.Errorf("a live owner's operation was said taken over: %q", told)
	}
	// The same operation, owned by a pid that does not run.
	p := strings.Split(Owner, ":")
	p[3] = "4194303"
	if _, err = s.db.Exec(`UPDATE operations SET owner = ? WHERE id = ?`, strings.Join(p, ":"), live.id); err != nil {
		t.Fatal(err)
	}
	op, err := s.Claim(ctx, "delete", "u1", []string{Creating}, Deleting)
	if err != nil {
		t.Fatalf("claim from a dead owner: %v", err)
	}
	var running int
	s.db.QueryRow(`SELECT count(*) FROM operations WHERE object = 'u1' AND state = 'running'`).Scan(&running)
	v, _ := s.Volume(ctx, "u1")
	if running != 1 || v.Status != Deleting || op == nil {
		t.Errorf("after the claim: %d running, status %s", running, v.Status)
	}
	// blk says so: whose run, and what this one does about it.
	if len(told) != 1 || !strings.Contains(told[0], `volume "db1": its create by `+strings.Join(p, ":")) ||
		!strings.Contains(told[0], "is taken over: this delete finishes or rolls it back") {
		t.Errorf("takeover told %q", told)
	}
	if _, err = s.Claim(ctx, "delete", "u1", []string{Deleting}, Deleting); !errors.Is(err, ErrConflict) {
		t.Errorf("a second claim: %v", err)
	}
}

// reset-state looks at the hosts, then sets the status: a volume that an
// attach took meanwhile (available to attaching) is not reset under it.
func TestResetLeavesAVolumeThatMovedSinceItWasLookedAt(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.State(t))
	op, err := s.InsertVolume(ctx, &Volume{UUID: "u1", Name: "db1", Backend: "b", SizeBytes: 1, Status: Creating})
	if err != nil {
		t.Fatal(err)
	}
	op.End(ctx, nil)
	if _, err = s.MoveVolume(ctx, "u1", Move{From: []string{Creating}, To: Available}); err != nil {
		t.Fatal(err)
	}
	if _, err = s.Reserve(ctx, "u1", AttachmentRecord{Instance: "web1", Host: "c1", Device: "vdb"}); err != nil {
		t.Fatal(err)
	}
	v, err := s.ResetVolume(ctx, "u1", Reset{To: Error, From: Available, Reason: "reset"})
	if !errors.Is(err, ErrConflict) || v.Status != Attaching {
		t.Errorf("reset of a volume taken since: %v, status %s", err, v.Status)
	}
	if v, err = s.ResetVolume(ctx, "u1", Reset{To: Error, From: Attaching, Reason: "reset"}); err != nil || v.Status != Error {
		t.Errorf("reset from what it is: %v, status %s", err, v.Status)
	}
}
