package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procRoot is where the kernel's process table is read (tests swap it).
var procRoot = "/proc"

// Owner names this process in the journal as host:boot_id:pid_ns:pid:start,
// where start is the kernel's record of when the process started (clock
// ticks since boot, /proc/<pid>/stat field 22). A pid alone is reused, and a
// wall-clock start says nothing once the pid is: with the boot id and the
// kernel's own start time, a later process can prove this one gone.
var Owner = func() string {
	ticks, _ := startTicks(os.Getpid())
	return fmt.Sprintf("%s:%s:%s:%d:%d", hostname(), bootID(), pidNS(), os.Getpid(), ticks)
}()

// owner is a parsed Owner. Rows written before boot ids were recorded read
// as host:pid:unix-start (legacy).
type owner struct {
	host, boot, pidNS string
	pid               int
	ticks             uint64
	legacy            bool
}

func parseOwner(s string) (owner, bool) {
	p := strings.Split(s, ":")
	var o owner
	var err error
	switch len(p) {
	case 5:
		o.host, o.boot, o.pidNS = p[0], p[1], p[2]
		if o.pid, err = strconv.Atoi(p[3]); err != nil {
			return o, false
		}
		if o.ticks, err = strconv.ParseUint(p[4], 10, 64); err != nil {
			return o, false
		}
	case 3:
		o.host, o.legacy = p[0], true
		if o.pid, err = strconv.Atoi(p[1]); err != nil {
			return o, false
		}
	default:
		return o, false
	}
	return o, o.pid > 0
}

// liveness is what this process can prove about an owner.
type liveness int

const (
	alive   liveness = iota // its process still runs
	gone                    // provably not running any more
	unknown                 // cannot be told from here: never taken over
)

// check says whether the owner's process still runs. Only what the kernel
// proves counts as gone: the same host and pid namespace, and then another
// boot, no such pid, or a pid whose recorded start differs. An owner on
// another host, in another pid namespace, or written by an older blk whose
// pid is still taken, is unknown.
func (o owner) check() (liveness, string) {
	if o.host != hostname() {
		return unknown, "it ran on another host"
	}
	if !o.legacy {
		if b := bootID(); o.boot != "" && b != "" && o.boot != b {
			return gone, "the host rebooted since"
		}
		if o.pidNS != pidNS() {
			return unknown, "it ran in another pid namespace (container)"
		}
	}
	// Signal 0 checks the pid without touching it; EPERM means it exists.
	if err := syscall.Kill(o.pid, 0); errors.Is(err, syscall.ESRCH) {
		return gone, "that process is gone"
	}
	if o.legacy {
		return unknown, "an older blk recorded it without a start time, and its pid is in use"
	}
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", procRoot, o.pid))
	if err != nil {
		return unknown, "its pid is in use and its start time cannot be read"
	}
	st, ticks, err := parseStat(string(b))
	switch {
	case err != nil:
		return unknown, "its pid is in use and its start time cannot be read"
	case ticks != o.ticks:
		return gone, "that process is gone (its pid now belongs to another)"
	case st == "Z" || st == "X":
		return gone, "that process is gone (it exited and awaits its parent)"
	}
	return alive, ""
}

// startTicks reads when pid started, in clock ticks since boot.
func startTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", procRoot, pid))
	if err != nil {
		return 0, err
	}
	_, ticks, err := parseStat(string(b))
	return ticks, err
}

// parseStat reads a /proc/<pid>/stat line: its state (field 3) and its
// start time in clock ticks since boot (field 22). Field 2, the command
// name, may hold spaces and parentheses, so fields are counted after its
// last ')'.
func parseStat(stat string) (state string, ticks uint64, err error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return "", 0, errors.New("stat: no command name")
	}
	// After ") " come fields 3, 4, ...: field 22 is the 20th.
	f := strings.Fields(stat[i+1:])
	if len(f) < 20 {
		return "", 0, fmt.Errorf("stat: %d fields after the command name, want 20 or more", len(f))
	}
	ticks, err = strconv.ParseUint(f[19], 10, 64)
	return f[0], ticks, err
}

func bootID() string {
	b, _ := os.ReadFile(procRoot + "/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// pidNS names this process's pid namespace: pids of other namespaces mean
// nothing here.
func pidNS() string {
	l, _ := os.Readlink(procRoot + "/self/ns/pid")
	return strings.TrimSuffix(strings.TrimPrefix(l, "pid:["), "]")
}

// Op is one journaled operation on an object.
type Op struct {
	s  *Store
	id int64
}

// BeginOp journals that this process starts op on object.
func (s *Store) BeginOp(ctx context.Context, op, object string) (*Op, error) {
	var o *Op
	err := s.tx(ctx, func(t *sql.Tx) error {
		var err error
		o, err = s.beginOp(ctx, t, op, object)
		return err
	})
	return o, err
}

func (s *Store) beginOp(ctx context.Context, t *sql.Tx, op, object string) (*Op, error) {
	ts := now()
	res, err := t.ExecContext(ctx, `INSERT INTO operations (op, object, owner, started_at, heartbeat, state)
		VALUES (?, ?, ?, ?, ?, 'running')`, op, object, Owner, ts, ts)
	if err != nil {
		return nil, err
	}
	id, err := res.LastInsertId()
	return &Op{s: s, id: id}, err
}

// Step records the step the operation reached, so a rerun can continue.
func (o *Op) Step(ctx context.Context, step string) error {
	return o.s.tx(ctx, func(t *sql.Tx) error {
		_, err := t.ExecContext(ctx, `UPDATE operations SET step = ?, heartbeat = ? WHERE id = ?`, step, now(), o.id)
		return err
	})
}

// endTimeout bounds End: it runs after Ctrl-C or --timeout, when the
// command's own context is already done.
const endTimeout = 10 * time.Second

// End closes the operation as done or failed. It runs even when ctx is
// cancelled (that is when it matters most: an operation left running blocks
// the volume), within endTimeout.
func (o *Op) End(ctx context.Context, err error) error {
	st := "done"
	if err != nil {
		st = "failed"
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endTimeout)
	defer cancel()
	if eerr := o.s.tx(ctx, func(t *sql.Tx) error {
		_, err := t.ExecContext(ctx, `UPDATE operations SET state = ?, heartbeat = ? WHERE id = ?`, st, now(), o.id)
		return err
	}); eerr != nil {
		return fmt.Errorf("record operation %d as %s: %w", o.id, st, eerr)
	}
	return nil
}

// WipeRequested reports whether a delete of object was ever asked to wipe
// it: a later delete of what an interrupted one left must wipe too, or the
// data the operator meant to destroy stays readable on the reused extents.
func (s *Store) WipeRequested(ctx context.Context, object string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM operations WHERE object = ? AND op = 'delete --wipe'`, object).Scan(&n)
	return n > 0, err
}

// Holder describes the running operation on object for a conflict message,
// with what the operator can do about it; "" when none runs.
func (s *Store) Holder(ctx context.Context, object string) string { return s.holder(ctx, object) }

func (s *Store) holder(ctx context.Context, object string) string {
	return s.describeHolder(ctx, object, false)
}

// describeHolder is holder, naming the volume too when named.
func (s *Store) describeHolder(ctx context.Context, object string, named bool) string {
	var id int64
	var op, own, started, name string
	err := s.db.QueryRowContext(ctx, `SELECT o.id, o.op, o.owner, o.started_at, coalesce(v.name, o.object)
		FROM operations o LEFT JOIN volumes v ON v.uuid = o.object
		WHERE o.object = ? AND o.state = 'running' ORDER BY o.id DESC LIMIT 1`, object).Scan(&id, &op, &own, &started, &name)
	if err != nil {
		return ""
	}
	what := strconv.Quote(op)
	if named {
		what += " of " + strconv.Quote(name)
	}
	o, ok := parseOwner(own)
	if !ok {
		return fmt.Sprintf("%s (owner %q since %s)", what, own, since(started))
	}
	msg := fmt.Sprintf("%s (pid %d on %s since %s)", what, o.pid, o.host, since(started))
	l, why := o.check()
	rerun := rerunHint(op, name)
	switch {
	case l == alive:
		return msg + ", still running: wait for it to finish"
	case l == gone:
		return msg + "; " + why + ": " + rerun
	case o.host != hostname():
		return fmt.Sprintf("%s; %s, and blk cannot tell from here whether it still runs: if it does, wait; if not, on %s %s",
			msg, why, o.host, rerun)
	}
	return fmt.Sprintf("%s; %s, so blk cannot prove it gone: if pid %d on %s is no blk, mark the operation ended with "+
		`sqlite3 %s "UPDATE operations SET state='failed' WHERE id=%d", then %s`, msg, why, o.pid, o.host, shellQuote(s.path), id, rerun)
}

// rerunHint is what finishes or undoes op once its owner is gone: each
// workflow takes over an operation whose owner is provably gone.
func rerunHint(op, name string) string {
	switch op {
	case "create":
		return fmt.Sprintf("rerun the same 'blk volume create %s ...' to finish it, or 'blk volume delete %s' to roll it back", name, name)
	case "delete", "delete --wipe":
		return fmt.Sprintf("rerun 'blk volume delete %s' to finish it", name)
	case "attach":
		return fmt.Sprintf("roll the killed attach back with 'blk volume detach --force %s'", name)
	case "detach":
		return fmt.Sprintf("rerun 'blk volume detach %s' to finish it (with --force if a step keeps failing)", name)
	case "snapshot", "clone":
		return fmt.Sprintf("run 'blk snapshot create %s' to take the volume back (it thaws a guest the killed run may have left frozen first), "+
			"then delete the snapshot you do not want", name)
	case "revert":
		return fmt.Sprintf("rerun the 'blk snapshot revert' of %s to finish it", name)
	case "snapshot create", "snapshot delete":
		return fmt.Sprintf("'blk snapshot delete %s' removes what it left", name)
	case "extend":
		return fmt.Sprintf("rerun the same 'blk volume extend %s --size ...' to finish it", name)
	}
	return "rerun the same command to finish or roll it back"
}

// shellQuote makes a path safe to paste into a shell.
func shellQuote(p string) string {
	if p != "" && strings.Trim(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+") == "" {
		return p
	}
	return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
}

func since(ts string) string {
	t := parseTime(ts).UTC()
	if time.Since(t) < 20*time.Hour {
		return t.Format("15:04:05 UTC")
	}
	return t.Format("2006-01-02 15:04:05 UTC")
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// Stale reports whether no live process owns a running operation on
// object: there is none, or its owner is provably gone (see owner.check).
func (s *Store) Stale(ctx context.Context, object string) bool {
	var own string
	err := s.db.QueryRowContext(ctx, `SELECT owner FROM operations WHERE object = ? AND state = 'running'
		ORDER BY id DESC LIMIT 1`, object).Scan(&own)
	if err == sql.ErrNoRows {
		return true
	}
	if err != nil {
		return false
	}
	return ownerGone(own)
}

func ownerGone(own string) bool {
	o, ok := parseOwner(own)
	if !ok {
		return false
	}
	l, _ := o.check()
	return l == gone
}

// Claim moves the volume uuid from one of from to status to, and journals
// op on it, in one transaction, if no running operation on it has an owner
// that could be alive (those of owners proven gone are closed as failed).
// Checked apart, two reruns of a killed command could both see the volume
// free and both go on, one could take over a volume another run had
// meanwhile finished (and undo its work), or a volume moved but not yet
// journaled could look abandoned.
func (s *Store) Claim(ctx context.Context, op, uuid string, from []string, to string) (*Op, error) {
	return s.claim(ctx, "volume", op, uuid, from, to)
}

// claim is Claim on a row of the volumes or the snapshots table (kind
// "volume" or "snapshot", never input).
func (s *Store) claim(ctx context.Context, kind, op, uuid string, from []string, to string) (*Op, error) {
	var o *Op
	var conflict *ConflictError
	table := kind + "s"
	txErr := s.tx(ctx, func(t *sql.Tx) error {
		var name, st string
		err := t.QueryRowContext(ctx, `SELECT name, status FROM `+table+` WHERE uuid = ?`, uuid).Scan(&name, &st)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s %s: %w", kind, uuid, ErrNotFound)
		}
		if err != nil {
			return err
		}
		conflict = &ConflictError{Kind: kind, Volume: name, Status: st}
		if !slices.Contains(from, st) {
			return nil
		}
		rows, err := t.QueryContext(ctx, `SELECT owner FROM operations WHERE object = ? AND state = 'running'`, uuid)
		if err != nil {
			return err
		}
		var owners []string
		for rows.Next() {
			var own string
			if err = rows.Scan(&own); err != nil {
				rows.Close()
				return err
			}
			owners = append(owners, own)
		}
		rows.Close()
		if err = rows.Err(); err != nil {
			return err
		}
		for _, own := range owners {
			if !ownerGone(own) {
				return nil
			}
		}
		conflict = nil
		ts := now()
		if _, err = t.ExecContext(ctx, `UPDATE operations SET state = 'failed', heartbeat = ? WHERE object = ? AND state = 'running'`,
			ts, uuid); err != nil {
			return err
		}
		set := `status = ?, updated_at = ?, previous_status = status`
		if kind == "snapshot" {
			set = `status = ?, updated_at = ?`
		}
		if _, err = t.ExecContext(ctx, `UPDATE `+table+` SET `+set+` WHERE uuid = ?`, to, ts, uuid); err != nil {
			return err
		}
		o, err = s.beginOp(ctx, t, op, uuid)
		return err
	})
	if txErr != nil {
		return nil, txErr
	}
	if conflict != nil {
		conflict.Holder = s.holder(ctx, uuid)
		return nil, conflict
	}
	return o, nil
}
