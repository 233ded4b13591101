package iscsi

import (
	"context"
	"errors"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
)

func tgt(args ...string) []string { return append([]string{"tgtadm", "--lld", "iscsi"}, args...) }

// Messages as tgtadm 1.0.85 prints them, seen in the lab.
func TestTeardownOfWhatIsGoneSucceeds(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.ExpectFail(22, "", "tgtadm: this access control rule does not exist", tgt("--op", "unbind", "--mode", "target", "--tid", "3", "--initiator-name", "iqn.x:c")...)
	f.ExpectFail(22, "", "tgtadm: can't find the account", tgt("--op", "delete", "--mode", "account", "--user", "u")...)
	f.ExpectFail(22, "", "tgtadm: can't find the logical unit", tgt("--op", "delete", "--mode", "logicalunit", "--tid", "3", "--lun", "1")...)
	f.ExpectFail(22, "", "tgtadm: can't find the target", tgt("--op", "delete", "--mode", "target", "--force", "--tid", "3")...)
	tg := Target{Run: f}
	ctx := context.Background()
	for _, err := range []error{tg.Unbind(ctx, 3, "iqn.x:c"), tg.DeleteAccount(ctx, "u"), tg.DeleteLUN(ctx, 3, 1), tg.Delete(ctx, 3)} {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestCreateRetriesATakenTargetID(t *testing.T) {
	f := exectest.New(t, "stor1")
	show := tgt("--op", "show", "--mode", "target")
	f.Expect("Target 1: iqn.a:1\n", show...)
	f.ExpectFail(22, "", "tgtadm: this target already exists", tgt("--op", "new", "--mode", "target", "--tid", "2", "--targetname", "iqn.a:mine")...)
	// Another blk took tid 2 meanwhile.
	f.Expect("Target 1: iqn.a:1\nTarget 2: iqn.a:theirs\n", show...)
	f.Expect("", tgt("--op", "new", "--mode", "target", "--tid", "4", "--targetname", "iqn.a:mine")...)
	tid, created, err := Target{Run: f}.Create(context.Background(), "iqn.a:mine")
	if err != nil || tid != 4 || !created {
		t.Fatalf("tid %d created %v err %v", tid, created, err)
	}
}

func TestLoginTreatsAlreadyLoggedInAsDone(t *testing.T) {
	f := exectest.New(t, "comp1")
	node := func(a ...string) []string {
		return append([]string{"iscsiadm", "-m", "node", "-T", "iqn.a:v", "-p", "10.0.0.1:3260"}, a...)
	}
	f.Expect("", node("-o", "new")...)
	f.Expect("", node("-o", "update", "-n", "node.startup", "-v", "automatic")...)
	f.ExpectFail(15, "", "iscsiadm: default: 1 session requested, but 1 already present.", node("--login")...)
	if err := (Initiator{Run: f}).Login(context.Background(), "10.0.0.1:3260", "iqn.a:v", nil); err != nil {
		t.Fatal(err)
	}
	g := exectest.New(t, "comp1")
	g.ExpectFail(21, "", "iscsiadm: No matching sessions found", node("--logout")...)
	g.ExpectFail(21, "", "iscsiadm: No records found", node("-o", "delete")...)
	if err := (Initiator{Run: g}).Logout(context.Background(), "10.0.0.1:3260", "iqn.a:v"); err != nil {
		t.Fatal(err)
	}
	h := exectest.New(t, "comp1")
	h.ExpectFail(24, "", "iscsiadm: Login failed to authenticate with target", node("--login")...)
	h.Expect("", node("-o", "new")...)
	h.Expect("", node("-o", "update", "-n", "node.startup", "-v", "automatic")...)
	if err := (Initiator{Run: h}).Login(context.Background(), "10.0.0.1:3260", "iqn.a:v", nil); err == nil {
		t.Fatal("a failed login must fail")
	}
}

func TestWaitDeviceGivesUpAfterItsTimeoutNamingTheLink(t *testing.T) {
	f := exectest.New(t, "comp1")
	f.Handle(func(args []string) (string, string, int, bool) { return "", "", 1, args[0] == "readlink" })
	start := time.Now()
	_, err := Initiator{Run: f}.WaitDevice(context.Background(), "/dev/disk/by-path/x", 300*time.Millisecond)
	if err == nil || err.Error() != "comp1: /dev/disk/by-path/x did not appear within 300ms" {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 5*time.Second {
		t.Errorf("waited %v for a 300ms timeout", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (Initiator{Run: f}).WaitDevice(ctx, "/dev/disk/by-path/x", time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestTransientLoginFailuresAreRetriedAFewTimes(t *testing.T) {
	fastRetries(t)
	f := exectest.New(t, "comp1")
	node := append([]string{"iscsiadm", "-m", "node", "-T", "iqn.a:v", "-p", "10.0.0.1:3260"}, "--logout")
	for range 5 {
		f.ExpectFail(8, "", "iscsiadm: transport timer", node...)
	}
	err := Initiator{Run: f}.Logout(context.Background(), "10.0.0.1:3260", "iqn.a:v")
	if exec.ExitCode(err) != 8 {
		t.Errorf("err = %v, want the fifth failure", err)
	}
}

// tgtadm 1.0.85's show, captured in the lab with one initiator logged in.
func TestShowReadsSessionsLUNsAccountsAndACLs(t *testing.T) {
	out, err := os.ReadFile("testdata/tgtadm-show-session.txt")
	if err != nil {
		t.Fatal(err)
	}
	f := exectest.New(t, "stor1").Expect(string(out), tgt("--op", "show", "--mode", "target")...)
	infos, err := Target{Run: f}.Show(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := infos["iqn.2026-11.org.example.blk:probe"]
	want := TargetInfo{ID: 98, IQN: "iqn.2026-11.org.example.blk:probe", Sessions: []string{"iqn.2026-11.org.example.lab:compute"},
		LUNs: map[int]string{1: "/tmp/probe.img"}, Accounts: []string{"probeu"}, ACLs: []string{"iqn.2026-11.org.example.lab:compute"}}
	if len(infos) != 1 || !reflect.DeepEqual(got, want) {
		t.Errorf("show = %+v\nwant %+v", infos, want)
	}
}

// An account left by an earlier attach has another password: it is made
// again, never reused.
func TestAddAccountReplacesOneLeftBehind(t *testing.T) {
	f := exectest.New(t, "stor1")
	add := tgt("--op", "new", "--mode", "account", "--user", "u", "--password", "newpass")
	f.ExpectFail(22, "", "tgtadm: this account already exists", add...)
	f.Expect("", tgt("--op", "delete", "--mode", "account", "--user", "u")...)
	f.Expect("", add...)
	f.Expect("", tgt("--op", "bind", "--mode", "account", "--tid", "3", "--user", "u")...)
	if err := (Target{Run: f}).AddAccount(context.Background(), 3, "u", "newpass"); err != nil {
		t.Fatal(err)
	}
}

func fastRetries(t *testing.T) {
	old := transientPolicy
	transientPolicy.Delay, transientPolicy.Max = time.Millisecond, time.Millisecond
	t.Cleanup(func() { transientPolicy = old })
}

// Another iscsiadm holding the node database: iscsiadm gives up after its
// own wait with exit 6, and blk asks again. A lock it can never take (a
// read-only /run/lock) is not asked again.
func TestNodeDatabaseLockIsWaitedOut(t *testing.T) {
	fastRetries(t)
	node := func(a ...string) []string {
		return append([]string{"iscsiadm", "-m", "node", "-T", "iqn.a:v", "-p", "10.0.0.1:3260"}, a...)
	}
	f := exectest.New(t, "comp1")
	f.ExpectFail(6, "", "iscsiadm: Timeout on acquiring lock on DB: /run/lock/iscsi/lock.write, errno: 17 File exists", node("-o", "new")...)
	f.ExpectFail(6, "", "iscsiadm: Could not lock discovery DB: /run/lock/iscsi/lock.write: File exists", node("-o", "new")...)
	f.Expect("", node("-o", "new")...)
	f.ExpectFail(6, "", "iscsiadm: Timeout on acquiring lock on DB: /run/lock/iscsi/lock.write, errno: 17 File exists",
		node("-o", "update", "-n", "node.startup", "-v", "automatic")...)
	f.Expect("", node("-o", "update", "-n", "node.startup", "-v", "automatic")...)
	f.Expect("", node("--login")...)
	if err := (Initiator{Run: f}).Login(context.Background(), "10.0.0.1:3260", "iqn.a:v", nil); err != nil {
		t.Fatal(err)
	}
	g := exectest.New(t, "comp1")
	g.ExpectFail(6, "", "iscsiadm: Maybe you are not root? Could not lock discovery DB: /run/lock/iscsi/lock.write: 30 Read-only file system",
		node("-o", "new")...)
	if err := (Initiator{Run: g}).Login(context.Background(), "10.0.0.1:3260", "iqn.a:v", nil); exec.ExitCode(err) != 6 {
		t.Fatalf("err = %v, want the one exit 6", err)
	}
}

// tgtd serving other tgtadm calls refuses a connection for a moment; a
// tgtd that is not running is said at once.
func TestBusyTgtdIsAskedAgain(t *testing.T) {
	fastRetries(t)
	lun := tgt("--op", "new", "--mode", "logicalunit", "--tid", "3", "--lun", "1", "--backing-store", "/dev/blk/v")
	f := exectest.New(t, "stor1")
	f.ExpectFail(107, "", "tgtadm: can't connect to the tgt daemon, Resource temporarily unavailable", lun...)
	f.ExpectFail(22, "", "tgtadm: this driver is busy", lun...)
	f.Expect("", lun...)
	if err := (Target{Run: f}).AddLUN(context.Background(), 3, 1, "/dev/blk/v"); err != nil {
		t.Fatal(err)
	}
	g := exectest.New(t, "stor1")
	g.ExpectFail(107, "", "tgtadm: can't connect to the tgt daemon, Connection refused", tgt("--op", "show", "--mode", "target")...)
	if _, err := (Target{Run: g}).Targets(context.Background()); err == nil {
		t.Fatal("a tgtd that is not running must fail")
	}
}

// udev makes the by-path link a moment after the login: the wait polls
// until it is there.
func TestWaitDeviceWaitsOutUdevLag(t *testing.T) {
	f := exectest.New(t, "comp1")
	link := "/dev/disk/by-path/ip-10.0.0.1:3260-iscsi-iqn.a:v-lun-1"
	f.ExpectFail(1, "", "", "readlink", "-e", link)
	f.ExpectFail(1, "", "", "readlink", "-e", link)
	f.Expect("/dev/sdc\n", "readlink", "-e", link)
	dev, err := Initiator{Run: f}.WaitDevice(context.Background(), link, 10*time.Second)
	if err != nil || dev != "/dev/sdc" {
		t.Fatalf("dev %q err %v", dev, err)
	}
}

func TestAccountsAndNodesAreListed(t *testing.T) {
	f := exectest.New(t, "stor1").Expect("Account list:\n    blk-0b6f7c1e\n    probeu\n", tgt("--op", "show", "--mode", "account")...)
	users, err := Target{Run: f}.Accounts(context.Background())
	if err != nil || !reflect.DeepEqual(users, []string{"blk-0b6f7c1e", "probeu"}) {
		t.Errorf("accounts %q err %v", users, err)
	}
	g := exectest.New(t, "comp1").Expect("127.0.0.1:3260,1 iqn.a:1\n127.0.0.1:3260,1 iqn.a:2\n", "iscsiadm", "-m", "node")
	nodes, err := Initiator{Run: g}.Nodes(context.Background())
	if err != nil || !reflect.DeepEqual(nodes, []string{"iqn.a:1", "iqn.a:2"}) {
		t.Errorf("nodes %q err %v", nodes, err)
	}
	h := exectest.New(t, "comp1").ExpectFail(21, "", "iscsiadm: No records found", "iscsiadm", "-m", "node")
	if nodes, err := (Initiator{Run: h}).Nodes(context.Background()); err != nil || nodes != nil {
		t.Errorf("no records: %q %v", nodes, err)
	}

}

func TestReopenRescanAndDeviceSizeArgv(t *testing.T) {
	ctx := context.Background()
	stor, comp := exectest.New(t, "stor1"), exectest.New(t, "comp1")
	stor.Expect("", tgt("--op", "update", "--mode", "logicalunit", "--tid", "3", "--lun", "1", "--params", "online=0,path=/dev/blk/volume-x")...)
	if err := (Target{Run: stor}).Reopen(ctx, 3, 1, "/dev/blk/volume-x"); err != nil {
		t.Fatal(err)
	}
	i := Initiator{Run: comp}
	comp.ExpectFail(8, "", "iscsiadm: transport timer", "iscsiadm", "-m", "node", "-T", "iqn.a:v", "-p", "192.0.2.10:3260", "-R")
	comp.Expect("", "iscsiadm", "-m", "node", "-T", "iqn.a:v", "-p", "192.0.2.10:3260", "-R")
	if err := i.Rescan(ctx, "192.0.2.10:3260", "iqn.a:v"); err != nil {
		t.Fatalf("a transient failure was not retried: %v", err)
	}
	comp.Expect("2147483648\n", "blockdev", "--getsize64", "/dev/sdb")
	if n, err := i.DeviceSize(ctx, "/dev/sdb"); err != nil || n != 2<<30 {
		t.Errorf("size = %d, %v", n, err)
	}
	comp.Expect("garbage\n", "blockdev", "--getsize64", "/dev/sdc")
	if _, err := i.DeviceSize(ctx, "/dev/sdc"); err == nil {
		t.Error("garbage read as a size")
	}
}

// As iscsiadm -m session -P 1 prints it in the lab while iscsid has given
// up on a session, and for another target logged in.
func TestParseSessionState(t *testing.T) {
	const out = `Target: iqn.2026-11.org.example.blk:aaa (non-flash)
	Current Portal: 127.0.0.1:3260,1
	Persistent Portal: 127.0.0.1:3260,1
		**********
		Interface:
		**********
		Iface Name: default
		iSCSI Connection State: TRANSPORT WAIT
		iSCSI Session State: FREE
		Internal iscsid Session State: REOPEN
Target: iqn.2026-11.org.example.blk:bbb (non-flash)
	Current Portal: 127.0.0.1:3260,1
		iSCSI Connection State: LOGGED IN
		iSCSI Session State: LOGGED_IN
		Internal iscsid Session State: NO CHANGE
`
	for iqn, want := range map[string]string{"iqn.2026-11.org.example.blk:aaa": "FREE", "iqn.2026-11.org.example.blk:bbb": "LOGGED_IN", "iqn.x:none": ""} {
		if got := parseSessionState(out, iqn); got != want {
			t.Errorf("%s: %q, want %q", iqn, got, want)
		}
	}
}
