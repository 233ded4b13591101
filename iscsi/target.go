// Package iscsi drives both ends of an iSCSI export: tgt's tgtadm on the
// storage host and open-iscsi's iscsiadm on the compute host. Known failures
// are typed so callers decide with errors.Is, not by matching text.
package iscsi

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/fault"
	"github.com/blk-project/blk/internal/retry"
)

// The kinds of tgtadm failure callers act on.
var (
	ErrExists   = fault.ErrExists
	ErrNotFound = fault.ErrNotFound
)

// Target drives tgtd through tgtadm on one host.
type Target struct{ Run exec.Runner }

func classifyTgt(err error) error {
	var e *exec.Error
	if !errors.As(err, &e) {
		return err
	}
	switch s := e.Stderr; {
	case strings.Contains(s, "already exists"):
		return fault.Wrap(ErrExists, err)
	case strings.Contains(s, "can't find"), strings.Contains(s, "does not exist"):
		return fault.Wrap(ErrNotFound, err)
	}
	return err
}

func (t Target) tgtadm(ctx context.Context, mutates bool, secrets []string, args ...string) (string, error) {
	return t.run(ctx, exec.Cmd{Args: args, Mutates: mutates, Secrets: secrets})
}

func (t Target) run(ctx context.Context, cmd exec.Cmd) (string, error) {
	cmd.Args = append([]string{"tgtadm", "--lld", "iscsi"}, cmd.Args...)
	var res exec.Result
	p := transientPolicy
	p.Retry = tgtBusy
	err := retry.Do(ctx, p, func() error {
		var err error
		res, err = t.Run.Run(ctx, cmd)
		return err
	})
	if err != nil {
		return "", classifyTgt(err)
	}
	return string(res.Stdout), nil
}

// tgtBusy is a tgtadm failure another try may not meet: tgtd's management
// socket refusing a connection while it serves others (EAGAIN), or tgtd
// answering that the driver is busy or a LUN still has commands in flight.
// A tgtd that is not running ("Connection refused", "No such file") is no
// such thing: reconcile must see it at once.
func tgtBusy(err error) bool {
	var e *exec.Error
	if !errors.As(err, &e) {
		return false
	}
	for _, s := range []string{"Resource temporarily unavailable", "this driver is busy", "is still active"} {
		if strings.Contains(e.Stderr, s) {
			return true
		}
	}
	return false
}

var targetLine = regexp.MustCompile(`(?m)^Target (\d+): (\S+)$`)

// TargetInfo is what tgtd says of one target.
type TargetInfo struct {
	ID       int
	IQN      string
	Sessions []string       // initiators logged in (I_T nexus)
	LUNs     map[int]string // backing store of each LUN but the controller
	Accounts []string
	ACLs     []string // initiator names bound
}

// Show reads every target with its sessions, LUNs, accounts and ACLs.
func (t Target) Show(ctx context.Context) (map[string]TargetInfo, error) {
	out, err := t.run(ctx, exec.Cmd{Args: []string{"--op", "show", "--mode", "target"}})
	if err != nil {
		return nil, err
	}
	return parseShow(out), nil
}

// parseShow reads tgtadm's show output: one "Target N: IQN" line per target,
// then indented sections whose items are the lines under their heading.
func parseShow(out string) map[string]TargetInfo {
	targets := map[string]TargetInfo{}
	var cur *TargetInfo
	var section string
	lun := -1
	for _, line := range strings.Split(out, "\n") {
		if m := targetLine.FindStringSubmatch(line); m != nil {
			if cur != nil {
				targets[cur.IQN] = *cur
			}
			id, _ := strconv.Atoi(m[1])
			cur, section, lun = &TargetInfo{ID: id, IQN: m[2], LUNs: map[int]string{}}, "", -1
			continue
		}
		if cur == nil {
			continue
		}
		text := strings.TrimSpace(line)
		switch {
		case text == "":
		case strings.HasSuffix(text, "information:"):
			section = text
		case section == "I_T nexus information:" && strings.HasPrefix(text, "Initiator: "):
			f := strings.Fields(text)
			cur.Sessions = append(cur.Sessions, f[1])
		case section == "LUN information:" && strings.HasPrefix(text, "LUN: "):
			lun, _ = strconv.Atoi(strings.TrimPrefix(text, "LUN: "))
		case section == "LUN information:" && strings.HasPrefix(text, "Backing store path: ") && lun > 0:
			cur.LUNs[lun] = strings.TrimPrefix(text, "Backing store path: ")
		case section == "Account information:":
			cur.Accounts = append(cur.Accounts, text)
		case section == "ACL information:":
			cur.ACLs = append(cur.ACLs, text)
		}
	}
	if cur != nil {
		targets[cur.IQN] = *cur
	}
	return targets
}

// Accounts lists tgtd's CHAP accounts, bound to a target or not.
func (t Target) Accounts(ctx context.Context) ([]string, error) {
	out, err := t.run(ctx, exec.Cmd{Args: []string{"--op", "show", "--mode", "account"}})
	if err != nil {
		return nil, err
	}
	var users []string
	for _, l := range strings.Split(out, "\n") {
		// "Account list:", then one user per indented line.
		if u := strings.TrimSpace(l); u != "" && !strings.HasSuffix(u, ":") {
			users = append(users, u)
		}
	}
	return users, nil
}

// Targets lists the target ids by IQN.
func (t Target) Targets(ctx context.Context) (map[string]int, error) {
	return t.targets(ctx, false)
}

// Recheck lists the targets again after changing them: a dry run, which
// changed nothing, sees none.
func (t Target) Recheck(ctx context.Context) (map[string]int, error) {
	return t.targets(ctx, true)
}

func (t Target) targets(ctx context.Context, observes bool) (map[string]int, error) {
	out, err := t.run(ctx, exec.Cmd{Args: []string{"--op", "show", "--mode", "target"}, Observes: observes})
	if err != nil {
		return nil, err
	}
	ids := map[string]int{}
	for _, m := range targetLine.FindAllStringSubmatch(out, -1) {
		id, _ := strconv.Atoi(m[1])
		ids[m[2]] = id
	}
	return ids, nil
}

// Create makes the target iqn, or finds it when a previous run did, and
// returns its id. tgtadm wants the caller to pick the id: another blk may
// pick the same one at the same moment, so a taken id is retried with the
// next.
func (t Target) Create(ctx context.Context, iqn string) (tid int, created bool, err error) {
	attempt := 0
	err = retry.Do(ctx, retry.Policy{Attempts: 20, Retry: func(err error) bool { return errors.Is(err, ErrExists) }}, func() error {
		ids, terr := t.Targets(ctx)
		if terr != nil {
			return terr
		}
		if id, ok := ids[iqn]; ok {
			tid, created = id, false
			return nil
		}
		tid = 1
		for _, id := range ids {
			tid = max(tid, id+1)
		}
		tid += attempt // racing processes spread out instead of colliding again
		attempt++
		_, terr = t.tgtadm(ctx, true, nil, "--op", "new", "--mode", "target", "--tid", strconv.Itoa(tid), "--targetname", iqn)
		created = terr == nil
		return terr
	})
	if errors.Is(err, ErrExists) {
		return 0, false, fmt.Errorf("create target %s: no free target id after 20 tries: %w", iqn, err)
	}
	return tid, created, err
}

// AddLUN backs LUN lun of target tid with a block device or file.
func (t Target) AddLUN(ctx context.Context, tid, lun int, backing string) error {
	_, err := t.tgtadm(ctx, true, nil, "--op", "new", "--mode", "logicalunit", "--tid", strconv.Itoa(tid),
		"--lun", strconv.Itoa(lun), "--backing-store", backing)
	if errors.Is(err, ErrExists) {
		return nil
	}
	return err
}

// Bind lets exactly one initiator, by IQN, log in to the target.
func (t Target) Bind(ctx context.Context, tid int, initiator string) error {
	_, err := t.tgtadm(ctx, true, nil, "--op", "bind", "--mode", "target", "--tid", strconv.Itoa(tid), "--initiator-name", initiator)
	if errors.Is(err, ErrExists) {
		return nil
	}
	return err
}

func (t Target) Unbind(ctx context.Context, tid int, initiator string) error {
	return ignore(t.tgtadm(ctx, true, nil, "--op", "unbind", "--mode", "target", "--tid", strconv.Itoa(tid), "--initiator-name", initiator))
}

// AddAccount creates a CHAP account and binds it to the target.
func (t Target) AddAccount(ctx context.Context, tid int, user, password string) error {
	newAccount := func() error {
		_, err := t.tgtadm(ctx, true, []string{password}, "--op", "new", "--mode", "account", "--user", user, "--password", password)
		return err
	}
	err := newAccount()
	if errors.Is(err, ErrExists) {
		// Left by an attach that did not finish: its password is not the
		// one this attach gives the initiator. Deleting it also unbinds it.
		if err = t.DeleteAccount(ctx, user); err == nil {
			err = newAccount()
		}
	}
	if err != nil {
		return err
	}
	_, err = t.tgtadm(ctx, true, nil, "--op", "bind", "--mode", "account", "--tid", strconv.Itoa(tid), "--user", user)
	if errors.Is(err, ErrExists) {
		return nil
	}
	return err
}

func (t Target) DeleteAccount(ctx context.Context, user string) error {
	return ignore(t.tgtadm(ctx, true, nil, "--op", "delete", "--mode", "account", "--user", user))
}

func (t Target) DeleteLUN(ctx context.Context, tid, lun int) error {
	return ignore(t.tgtadm(ctx, true, nil, "--op", "delete", "--mode", "logicalunit", "--tid", strconv.Itoa(tid), "--lun", strconv.Itoa(lun)))
}

// Delete removes the target; --force drops sessions an initiator left.
func (t Target) Delete(ctx context.Context, tid int) error {
	return ignore(t.tgtadm(ctx, true, nil, "--op", "delete", "--mode", "target", "--force", "--tid", strconv.Itoa(tid)))
}

// ignore treats "already gone" as done, so teardown can be rerun.
func ignore(_ string, err error) error {
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Reopen has tgtd close and open the LUN's backing store again, so it reads
// the store's size anew (tgtd reads it only at open, tgt_device_path_update).
// One update takes the LU offline and gives its path again: tgtd reopens a
// path only on an offline LU ("path=" alone is refused while online), and
// puts it back online itself once open. The target, its sessions and the
// LU's SCSI identity stay, so the initiator keeps its device and reads the
// new capacity when it rescans; nothing is deleted and re-added (in between,
// the initiator's commands would reach LUN 0, the controller). The caller
// must keep I/O away meanwhile: a command in flight in tgtd's I/O threads
// (bs_rdwr) may find the old descriptor closed and fail.
func (t Target) Reopen(ctx context.Context, tid, lun int, backing string) error {
	_, err := t.tgtadm(ctx, true, nil, "--op", "update", "--mode", "logicalunit", "--tid", strconv.Itoa(tid),
		"--lun", strconv.Itoa(lun), "--params", "online=0,path="+backing)
	return err
}
