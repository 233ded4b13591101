package iscsi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/retry"
)

// iscsiadm exit codes (iscsi_err.h).
const (
	exitIDBM           = 6 // the node database: its lock not taken in time
	exitTransportTimer = 8
	exitSessExists     = 15 // already logged in
	exitNoObjsFound    = 21 // no records, no sessions
	exitAgain          = 29 // "retrying later may succeed"
)

// Initiator drives open-iscsi through iscsiadm on one host.
type Initiator struct{ Run exec.Runner }

// CHAP are per-volume credentials; the password never leaves the state file
// except as an argument to the two tools, masked in every log and error.
type CHAP struct {
	User, Password string
}

// Name reads the host's initiator IQN.
func (i Initiator) Name(ctx context.Context) (string, error) {
	res, err := i.Run.Run(ctx, exec.Cmd{Args: []string{"cat", "/etc/iscsi/initiatorname.iscsi"}})
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(strings.NewReader(string(res.Stdout)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "InitiatorName="); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("%s: no InitiatorName in /etc/iscsi/initiatorname.iscsi", i.Run.Host())
}

// node runs one iscsiadm node command, again while it fails in a way that
// passes (another iscsiadm holds the database lock).
func (i Initiator) node(ctx context.Context, portal, iqn string, secrets []string, args ...string) error {
	argv := append([]string{"iscsiadm", "-m", "node", "-T", iqn, "-p", portal}, args...)
	return retryTransient(ctx, func() error {
		_, err := i.Run.Run(ctx, exec.Cmd{Args: argv, Mutates: true, Secrets: secrets})
		return err
	})
}

// Login creates the node record, sets CHAP and node.startup, and logs in.
// node.startup=automatic makes the session come back after a reboot, and only
// attached volumes have a node record at all.
func (i Initiator) Login(ctx context.Context, portal, iqn string, chap *CHAP) error {
	if err := i.node(ctx, portal, iqn, nil, "-o", "new"); err != nil {
		return fmt.Errorf("iscsiadm node create: %w", err)
	}
	settings := [][2]string{{"node.startup", "automatic"}}
	var secrets []string
	if chap != nil {
		settings = append(settings, [2]string{"node.session.auth.authmethod", "CHAP"},
			[2]string{"node.session.auth.username", chap.User}, [2]string{"node.session.auth.password", chap.Password})
		secrets = []string{chap.Password}
	}
	for _, s := range settings {
		if err := i.node(ctx, portal, iqn, secrets, "-o", "update", "-n", s[0], "-v", s[1]); err != nil {
			return fmt.Errorf("iscsiadm node update %s: %w", s[0], err)
		}
	}
	err := i.node(ctx, portal, iqn, nil, "--login")
	if exec.ExitCode(err) == exitSessExists {
		return nil
	}
	if err != nil {
		return fmt.Errorf("iscsiadm login: %w", err)
	}
	return nil
}

// Logout ends the session and deletes the node record of this target only.
// Both already gone is success.
func (i Initiator) Logout(ctx context.Context, portal, iqn string) error {
	err := i.node(ctx, portal, iqn, nil, "--logout")
	if err != nil && exec.ExitCode(err) != exitNoObjsFound {
		return fmt.Errorf("iscsiadm logout: %w", err)
	}
	err = i.node(ctx, portal, iqn, nil, "-o", "delete")
	if err != nil && exec.ExitCode(err) != exitNoObjsFound {
		return fmt.Errorf("iscsiadm node delete: %w", err)
	}
	return nil
}

// ByPath is the stable device link udev makes for a LUN.
func ByPath(portal, iqn string, lun int) string {
	return fmt.Sprintf("/dev/disk/by-path/ip-%s-iscsi-%s-lun-%d", portal, iqn, lun)
}

// WaitDevice waits for link to appear (udev lags the login) and returns the
// device it points to.
func (i Initiator) WaitDevice(ctx context.Context, link string, timeout time.Duration) (string, error) {
	var dev string
	err := retry.Do(ctx, retry.Policy{Within: timeout, Delay: 200 * time.Millisecond}, func() error {
		res, err := i.Run.Run(ctx, exec.Cmd{Args: []string{"readlink", "-e", link}, Observes: true})
		dev = strings.TrimSpace(string(res.Stdout))
		return err
	})
	if err != nil && ctx.Err() == nil {
		return "", fmt.Errorf("%s: %s did not appear within %v", i.Run.Host(), link, timeout)
	}
	return dev, err
}

// RemoveDevice flushes and deletes the SCSI disk behind link, so no stale
// /dev/sdX is left when the session ends. A missing link is done already;
// any other failure (a dropped connection) proves nothing and is an error.
func (i Initiator) RemoveDevice(ctx context.Context, link string) error {
	res, err := i.Run.Run(ctx, exec.Cmd{Args: []string{"readlink", "-e", link}})
	if exec.ExitCode(err) == 1 {
		return nil // readlink -e: the link or its target does not exist
	}
	if err != nil {
		return fmt.Errorf("find the device behind %s: %w", link, err)
	}
	dev := strings.TrimSpace(string(res.Stdout))
	if _, err = i.Run.Run(ctx, exec.Cmd{Args: []string{"blockdev", "--flushbufs", dev}, Mutates: true}); err != nil {
		return fmt.Errorf("flush %s: %w", dev, err)
	}
	_, err = i.Run.Run(ctx, exec.Cmd{Args: []string{"tee", "/sys/block/" + path.Base(dev) + "/device/delete"},
		Stdin: strings.NewReader("1"), Mutates: true})
	if err != nil {
		return fmt.Errorf("delete scsi device %s: %w", dev, err)
	}
	return nil
}

// Nodes lists the target IQNs this host has node records of.
func (i Initiator) Nodes(ctx context.Context) ([]string, error) {
	res, err := i.Run.Run(ctx, exec.Cmd{Args: []string{"iscsiadm", "-m", "node"}})
	if exec.ExitCode(err) == exitNoObjsFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var iqns []string
	for _, l := range strings.Split(string(res.Stdout), "\n") {
		// 192.0.2.10:3260,1 iqn.2026-11.org.example.blk:uuid
		if f := strings.Fields(l); len(f) >= 2 {
			iqns = append(iqns, f[1])
		}
	}
	return iqns, nil
}

// Sessions lists the target IQNs this host is logged in to.
func (i Initiator) Sessions(ctx context.Context) ([]string, error) {
	res, err := i.Run.Run(ctx, exec.Cmd{Args: []string{"iscsiadm", "-m", "session"}})
	if exec.ExitCode(err) == exitNoObjsFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var iqns []string
	for _, l := range strings.Split(string(res.Stdout), "\n") {
		// tcp: [1] 127.0.0.1:3260,1 iqn.2026-11.org.example.blk:uuid (non-flash)
		if f := strings.Fields(l); len(f) >= 4 {
			iqns = append(iqns, f[3])
		}
	}
	return iqns, nil
}

// transientPolicy bounds the retries of a failure that passes; tests
// shorten it.
var transientPolicy = retry.Policy{Attempts: 5, Delay: 200 * time.Millisecond, Max: 2 * time.Second}

// retryTransient repeats transient iscsiadm failures (the node database
// locked by another iscsiadm, a transport still settling) with bounded
// backoff.
func retryTransient(ctx context.Context, fn func() error) error {
	p := transientPolicy
	p.Retry = transient
	return retry.Do(ctx, p, fn)
}

// transient is a failure another try may not meet. iscsiadm waits about
// 30 seconds for the database lock itself, then exits 6 saying "Timeout on
// acquiring lock on DB" (older versions: "Could not lock discovery DB");
// a lock it cannot take for good (a read-only /run/lock, not root) says
// so, and is no reason to try again.
func transient(err error) bool {
	var e *exec.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.ExitCode {
	case exitTransportTimer, exitAgain:
		return true
	case exitIDBM:
		return strings.Contains(e.Stderr, "lock") && !strings.Contains(e.Stderr, "Read-only file system") &&
			!strings.Contains(e.Stderr, "Permission denied")
	}
	return strings.Contains(e.Stderr, "database") && strings.Contains(e.Stderr, "lock")
}

// Rescan has the initiator rescan the sessions of this target only, which
// re-reads the capacity of their LUNs.
func (i Initiator) Rescan(ctx context.Context, portal, iqn string) error {
	err := retryTransient(ctx, func() error { return i.node(ctx, portal, iqn, nil, "-R") })
	if err != nil {
		return fmt.Errorf("iscsiadm rescan: %w", err)
	}
	return nil
}

// DeviceSize is the size in bytes the host's kernel gives the device behind
// link. In a dry run, which rescanned nothing, it is 0.
func (i Initiator) DeviceSize(ctx context.Context, link string) (int64, error) {
	res, err := i.Run.Run(ctx, exec.Cmd{Args: []string{"blockdev", "--getsize64", link}, Observes: true})
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(res.Stdout))
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: blockdev --getsize64 %s: %q is no size", i.Run.Host(), link, s)
	}
	return n, nil
}

// SessionState is open-iscsi's state of this host's session to iqn
// (LOGGED_IN, FAILED, FREE), or "" when there is none.
func (i Initiator) SessionState(ctx context.Context, iqn string) (string, error) {
	res, err := i.Run.Run(ctx, exec.Cmd{Args: []string{"iscsiadm", "-m", "session", "-P", "1"}})
	if exec.ExitCode(err) == exitNoObjsFound {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return parseSessionState(string(res.Stdout), iqn), nil
}

func parseSessionState(out, iqn string) string {
	in := false
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if t, ok := strings.CutPrefix(l, "Target: "); ok {
			f := strings.Fields(t)
			in = len(f) > 0 && f[0] == iqn
		} else if st, ok := strings.CutPrefix(l, "iSCSI Session State: "); ok && in {
			return st
		}
	}
	return ""
}

// RestartDaemon restarts iscsid through the host's init system. The
// kernel keeps its sessions; the new iscsid takes over their recovery.
// It is how a session that stopped retrying comes back: open-iscsi gives
// up on a login the target rejected as unknown, which is what a restarted
// tgtd answers until its targets are made again.
func (i Initiator) RestartDaemon(ctx context.Context) error {
	_, err := i.Run.Run(ctx, exec.Cmd{Args: []string{"service", "iscsid", "restart"}, Mutates: true})
	return err
}
