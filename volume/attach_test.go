package volume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/internal/pgtest"
	"github.com/blk-project/blk/state"
	"libvirt.org/go/libvirtxml"
)

// fakeHV is libvirt with running domains, kept as XML; a domain in
// shutOff has only its persistent definition.
type fakeHV struct {
	domains   map[string]*libvirtxml.Domain
	shutOff   map[string]bool
	paused    map[string]bool
	failOn    string // "attach" or "detach": that call fails; "attach-lost": it plugs the disk, then fails (the answer was lost)
	calls     []string
	stuckLive int   // live detaches the guest ignores before releasing
	freezeErr error // what FSFreeze answers
}

func newFakeHV(domains ...string) *fakeHV {
	h := &fakeHV{domains: map[string]*libvirtxml.Domain{}, shutOff: map[string]bool{}, paused: map[string]bool{}}
	for _, d := range domains {
		h.domains[d] = &libvirtxml.Domain{Type: "qemu", Name: d, Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{{Device: "disk", Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"}}}}}
	}
	return h
}

func (h *fakeHV) DomainXML(_ context.Context, name string, persistent bool) (string, error) {
	d, ok := h.domains[name]
	if !ok {
		return "", fmt.Errorf("fake: %w", hypervisor.ErrNoDomain)
	}
	return d.Marshal()
}

func (h *fakeHV) AttachDevice(_ context.Context, name, xml string, f hypervisor.Flags) error {
	h.calls = append(h.calls, "attach "+name+" "+f.String())
	if f.Live && h.shutOff[name] {
		return errors.New("fake: Requested operation is not valid: domain is not running")
	}
	if h.failOn == "attach" {
		return errors.New("fake: attach refused")
	}
	if h.failOn == "attach-vanish" { // the domain was undefined meanwhile
		delete(h.domains, name)
		return fmt.Errorf("fake: %w", hypervisor.ErrNoDomain)
	}
	var disk libvirtxml.DomainDisk
	if err := disk.Unmarshal(xml); err != nil {
		return err
	}
	h.domains[name].Devices.Disks = append(h.domains[name].Devices.Disks, disk)
	if h.failOn == "attach-lost" {
		return errors.New("fake: connection lost after the attach")
	}
	return nil
}

func (h *fakeHV) DetachDevice(_ context.Context, name, xml string, f hypervisor.Flags) error {
	h.calls = append(h.calls, "detach "+name+" "+f.String())
	if h.failOn == "detach" {
		return errors.New("fake: detach refused")
	}
	if f.Live && h.shutOff[name] {
		return errors.New("fake: Requested operation is not valid: domain is not running")
	}
	if f.Live && h.stuckLive > 0 {
		h.stuckLive--
		return nil
	}
	var disk libvirtxml.DomainDisk
	disk.Unmarshal(xml)
	if f.Live || h.shutOff[name] { // one definition stands for both in this fake
		d := h.domains[name]
		d.Devices.Disks = slices.DeleteFunc(d.Devices.Disks, func(x libvirtxml.DomainDisk) bool { return x.Serial == disk.Serial })
	}
	return nil
}

func (h *fakeHV) FSFreeze(_ context.Context, name string) (int, error) {
	h.calls = append(h.calls, "fsfreeze "+name)
	return 2, h.freezeErr
}

func (h *fakeHV) FSThaw(_ context.Context, name string) (int, error) {
	h.calls = append(h.calls, "fsthaw "+name)
	return 2, nil
}

func (h *fakeHV) Active(_ context.Context, name string) (bool, error) {
	if _, ok := h.domains[name]; !ok {
		return false, fmt.Errorf("fake: %w", hypervisor.ErrNoDomain)
	}
	return !h.shutOff[name], nil
}

func (h *fakeHV) DefineXML(_ context.Context, xml string) error {
	var d libvirtxml.Domain
	if err := d.Unmarshal(xml); err != nil {
		return err
	}
	h.calls = append(h.calls, "define "+d.Name)
	if h.failOn == "define" { // once: the undo's define of the old definition works
		h.failOn = ""
		return errors.New("fake: define refused")
	}
	h.domains[d.Name] = &d
	return nil
}

func (h *fakeHV) Paused(_ context.Context, name string) (bool, error) { return h.paused[name], nil }

func (h *fakeHV) Suspend(_ context.Context, name string) error {
	h.calls = append(h.calls, "suspend "+name)
	h.paused[name] = true
	return nil
}

func (h *fakeHV) Resume(_ context.Context, name string) error {
	h.calls = append(h.calls, "resume "+name)
	if h.failOn == "resume" {
		return errors.New("fake: resume refused")
	}
	h.paused[name] = false
	return nil
}

func (h *fakeHV) BlockResize(_ context.Context, name, disk string, size int64) error {
	h.calls = append(h.calls, fmt.Sprintf("blockresize %s %s %d", name, disk, size))
	if h.failOn == "blockresize" {
		return errors.New("fake: blockresize refused")
	}
	return nil
}

func (h *fakeHV) Close() error { return nil }

// world simulates tgtd and open-iscsi on two hosts, to check that whatever
// fails, nothing an attach made is left behind.
type world struct {
	targets  map[int]string // tid -> iqn
	luns     map[int]bool
	acls     map[int]string
	accounts map[string]bool
	nodes    map[string]bool
	sessions map[string]bool
	failAt   int // fail the n-th mutating command (1-based); 0 never
	count    int
	failed   string
	// failOp fails every tgtadm command of this "--op --mode", e.g.
	// "delete target".
	failOp string
	// exported are initiators logged in to a target, as tgtd sees them.
	exported map[string]string
	// backing and bound are each target's LUN 1 and CHAP account.
	backing map[int]string
	bound   map[int]string
	// down are sessions iscsid gave up on, until it is restarted.
	down      map[string]bool
	restarted int
}

func newWorld() *world {
	return &world{targets: map[int]string{}, luns: map[int]bool{}, acls: map[int]string{}, accounts: map[string]bool{},
		nodes: map[string]bool{}, sessions: map[string]bool{}, backing: map[int]string{}, bound: map[int]string{}}
}

func (w *world) empty() string {
	var left []string
	for what, n := range map[string]int{"targets": len(w.targets), "luns": len(w.luns), "acls": len(w.acls),
		"accounts": len(w.accounts), "nodes": len(w.nodes), "sessions": len(w.sessions)} {
		if n > 0 {
			left = append(left, fmt.Sprintf("%d %s", n, what))
		}
	}
	slices.Sort(left)
	return strings.Join(left, ", ")
}

func arg(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

func (w *world) handle(args []string) (string, string, int, bool) {
	mutating := args[0] == "tgtadm" && arg(args, "--op") != "show" || args[0] == "iscsiadm" && args[2] == "node" ||
		args[0] == "blockdev" || args[0] == "tee"
	if mutating {
		w.count++
		if w.count == w.failAt {
			w.failed = exec.Quote(args)
			return "", "injected failure", 1, true
		}
	}
	tid := 0
	fmt.Sscan(arg(args, "--tid"), &tid)
	if args[0] == "tgtadm" && arg(args, "--op")+" "+arg(args, "--mode") == w.failOp {
		return "", "tgtadm: injected failure", 22, true
	}
	switch args[0] {
	case "cat":
		return "InitiatorName=iqn.2026-11.org.example:comp1\n", "", 0, true
	case "readlink":
		for iqn := range w.sessions {
			if strings.Contains(args[2], iqn) {
				return "/dev/sdb\n", "", 0, true
			}
		}
		return "", "", 1, true
	case "blockdev", "tee":
		return "", "", 0, true
	case "tgtadm":
		switch arg(args, "--op") + " " + arg(args, "--mode") {
		case "show target":
			var b strings.Builder
			for id, iqn := range w.targets {
				fmt.Fprintf(&b, "Target %d: %s\n    System information:\n    I_T nexus information:\n", id, iqn)
				if ini := w.exported[iqn]; ini != "" {
					fmt.Fprintf(&b, "        I_T nexus: 1\n            Initiator: %s alias: x\n", ini)
				}
				if w.luns[id] {
					fmt.Fprintf(&b, "    LUN information:\n        LUN: 0\n            Type: controller\n        LUN: 1\n            Backing store path: %s\n", w.backing[id])
				}
				fmt.Fprintf(&b, "    Account information:\n")
				if u := w.bound[id]; u != "" && w.accounts[u] {
					fmt.Fprintf(&b, "        %s\n", u)
				}
				fmt.Fprintf(&b, "    ACL information:\n")
				if acl := w.acls[id]; acl != "" {
					fmt.Fprintf(&b, "        %s\n", acl)
				}
			}
			return b.String(), "", 0, true
		case "new target":
			if _, ok := w.targets[tid]; ok {
				return "", "tgtadm: this target already exists", 22, true
			}
			w.targets[tid] = arg(args, "--targetname")
		case "new logicalunit":
			w.luns[tid] = true
			w.backing[tid] = arg(args, "--backing-store")
		case "bind target":
			w.acls[tid] = arg(args, "--initiator-name")
		case "unbind target":
			delete(w.acls, tid)
		case "new account":
			if w.accounts[arg(args, "--user")] {
				return "", "tgtadm: this account already exists", 22, true
			}
			w.accounts[arg(args, "--user")] = true
		case "bind account":
			w.bound[tid] = arg(args, "--user")
		case "delete account":
			if !w.accounts[arg(args, "--user")] {
				return "", "tgtadm: can't find the account", 22, true
			}
			delete(w.accounts, arg(args, "--user"))
		case "delete logicalunit":
			delete(w.luns, tid)
		case "delete target":
			if _, ok := w.targets[tid]; !ok {
				return "", "tgtadm: can't find the target", 22, true
			}
			delete(w.targets, tid)
			delete(w.luns, tid)
			delete(w.acls, tid)
		default:
			return "", "", 0, false
		}
		return "", "", 0, true
	case "iscsiadm":
		iqn := arg(args, "-T")
		switch {
		case arg(args, "-o") == "new":
			w.nodes[iqn] = true
		case arg(args, "-o") == "update":
			if !w.nodes[iqn] {
				return "", "no records", 21, true
			}
		case arg(args, "-o") == "delete":
			if !w.nodes[iqn] {
				return "", "no records", 21, true
			}
			delete(w.nodes, iqn)
		case slices.Contains(args, "--login"):
			w.sessions[iqn] = true
		case slices.Contains(args, "--logout"):
			if !w.sessions[iqn] {
				return "", "No matching sessions found", 21, true
			}
			delete(w.sessions, iqn)
		default:
			return "", "", 0, false
		}
		return "", "", 0, true
	}
	return "", "", 0, false
}

func attachService(t *testing.T, w *world, hv *fakeHV) (*Service, *exectest.Fake, *exectest.Fake) {
	t.Helper()
	var handle func([]string) (string, string, int, bool)
	if w != nil {
		handle = w.handle
	}
	s, stor, comp := twoHostService(t, "lvm-1", config.Backend{Type: "lvm", Host: "stor1", VG: "blk",
		Portal: "192.0.2.10:3260", IQNPrefix: "iqn.2026-11.org.example.blk", CHAP: true}, handle, hv)
	addAvailable(t, s, state.Volume{UUID: volUUID, Name: "db1", Backend: "lvm-1", SizeBytes: 1 << 30, Path: "/dev/blk/volume-" + volUUID})
	setGlobal(t, &newSecret, func() string { return "s3cretS3cretXyz9" })
	return s, stor, comp
}

// twoHostService is a Service with one backend on stor1 and libvirt on
// comp1 (the only compute host), both hosts answering from scripted fakes
// that fall back to handle, when given.
func twoHostService(t *testing.T, name string, b config.Backend, handle func([]string) (string, string, int, bool), hv *fakeHV) (*Service, *exectest.Fake, *exectest.Fake) {
	t.Helper()
	cfg := &config.Config{
		State:    pgtest.State(t),
		Hosts:    map[string]config.Host{"stor1": {Address: "192.0.2.10"}, "comp1": {Address: "192.0.2.20"}},
		Backends: map[string]config.Backend{name: b},
		Compute:  []string{"comp1"},
		Defaults: config.Defaults{Backend: name},
	}
	st, err := state.Open(context.Background(), cfg.State, state.ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	stor, comp := exectest.New(t, "stor1"), exectest.New(t, "comp1")
	if handle != nil {
		stor.Handle(handle)
		comp.Handle(handle)
	}
	hs := NewHosts(cfg, nil, nil)
	hs.New = func(name string, _ config.Host) exec.Runner {
		if name == "stor1" {
			return stor
		}
		return comp
	}
	hs.NewHypervisor = func(context.Context, string, exec.Runner) (hypervisor.Hypervisor, error) { return hv, nil }
	setGlobal(t, &detachWait, 200*time.Millisecond)
	return NewService(cfg, "test.yaml", st, hs), stor, comp
}

// addAvailable records v as a volume a finished create made.
func addAvailable(t *testing.T, s *Service, v state.Volume) {
	t.Helper()
	ctx := context.Background()
	v.Status = state.Creating
	op, err := s.State.InsertVolume(ctx, &v)
	if err != nil {
		t.Fatal(err)
	}
	op.End(ctx, nil)
	if _, err := s.State.MoveVolume(ctx, v.UUID, state.Move{From: []string{state.Creating}, To: state.Available}); err != nil {
		t.Fatal(err)
	}
}

// setGlobal sets a package variable for one test.
func setGlobal[T any](t *testing.T, p *T, v T) {
	old := *p
	t.Cleanup(func() { *p = old })
	*p = v
}

const volUUID = "0a0b0c0d-1111-2222-3333-444455556666"

func TestAttachRunsTheSeedSequence(t *testing.T) {
	ctx := context.Background()
	hv := newFakeHV("web1")
	s, stor, comp := attachService(t, nil, hv)
	iqn := "iqn.2026-11.org.example.blk:" + volUUID
	ini := "iqn.2026-11.org.example:comp1"
	tgt := func(args ...string) []string { return append([]string{"tgtadm", "--lld", "iscsi"}, args...) }
	node := func(args ...string) []string {
		return append([]string{"iscsiadm", "-m", "node", "-T", iqn, "-p", "192.0.2.10:3260"}, args...)
	}
	comp.Expect("InitiatorName="+ini+"\n", "cat", "/etc/iscsi/initiatorname.iscsi")
	show, newTarget := tgt("--op", "show", "--mode", "target"), tgt("--op", "new", "--mode", "target", "--tid", "2", "--targetname", iqn)
	addLUN := tgt("--op", "new", "--mode", "logicalunit", "--tid", "2", "--lun", "1", "--backing-store", "/dev/blk/volume-"+volUUID)
	bind := tgt("--op", "bind", "--mode", "target", "--tid", "2", "--initiator-name", ini)
	account := tgt("--op", "new", "--mode", "account", "--user", "blk-0a0b0c0d", "--password", "s3cretS3cretXyz9")
	bindAccount := tgt("--op", "bind", "--mode", "account", "--tid", "2", "--user", "blk-0a0b0c0d")
	stor.Expect("Target 1: iqn.other:x\n", show...).Expect("", newTarget...).Expect("", addLUN...).Expect("", bind...).
		Expect("", account...).Expect("", bindAccount...)
	// The LUN exists before any initiator may log in, and the target
	// before either; the account exists before it is bound.
	stor.InOrder(show, newTarget, addLUN, bind).InOrder(account, bindAccount)
	login := [][]string{node("-o", "new"), node("-o", "update", "-n", "node.startup", "-v", "automatic"),
		node("-o", "update", "-n", "node.session.auth.authmethod", "-v", "CHAP"),
		node("-o", "update", "-n", "node.session.auth.username", "-v", "blk-0a0b0c0d"),
		node("-o", "update", "-n", "node.session.auth.password", "-v", "s3cretS3cretXyz9"), node("--login")}
	for _, argv := range login {
		comp.Expect("", argv...)
	}
	link := "/dev/disk/by-path/ip-192.0.2.10:3260-iscsi-" + iqn + "-lun-1"
	comp.Expect("/dev/sdb\n", "readlink", "-e", link)
	// CHAP is set before the login, and the device looked for after it.
	comp.InOrder(append(login, []string{"readlink", "-e", link})...)

	v, already, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"})
	if err != nil || already {
		t.Fatalf("attach: %v (already=%v)", err, already)
	}
	if v.Status != state.InUse || v.Attachment == nil || v.Attachment.Device != "vdb" || v.Attachment.DevicePath != link || v.Attachment.Host != "comp1" {
		t.Fatalf("volume = %+v, attachment %+v", v, v.Attachment)
	}
	x, _ := hv.DomainXML(ctx, "web1", false)
	for _, want := range []string{"<serial>0a0b0c0d-1111-2222-3</serial>", `cache="none"`, `dev="` + link + `"`, `<target dev="vdb" bus="virtio">`} {
		if !strings.Contains(x, want) {
			t.Errorf("domain XML lacks %s:\n%s", want, x)
		}
	}
	if !slices.Equal(hv.calls, []string{"attach web1 --live --config"}) {
		t.Errorf("libvirt calls = %q", hv.calls)
	}
	rec, _ := s.State.Attachment(ctx, volUUID)
	if rec.Conn.AuthPassword != "s3cretS3cretXyz9" || rec.Conn.TargetID != 2 || rec.Conn.InitiatorIQN != ini {
		t.Errorf("connection info = %+v", rec.Conn)
	}
	// Again to the same instance: success, nothing run.
	if _, already, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil || !already {
		t.Errorf("re-attach: already=%v err=%v", already, err)
	}
	// To another instance: conflict naming the holder.
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web2"}); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "web1 on comp1") {
		t.Errorf("attach elsewhere: %v", err)
	}
}

func TestAttachFailureAtEveryStepLeavesNothing(t *testing.T) {
	ctx := context.Background()
	for step := 1; ; step++ {
		w := newWorld()
		w.failAt = step
		hv := newFakeHV("web1")
		s, _, _ := attachService(t, w, hv)
		_, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Bus: "scsi"})
		if w.failed == "" {
			if err != nil {
				t.Fatalf("no failure injected, yet: %v", err)
			}
			// Past the last step: inject at libvirt instead, then stop.
			w2 := newWorld()
			hv2 := newFakeHV("web1")
			hv2.failOn = "attach"
			s2, _, _ := attachService(t, w2, hv2)
			_, _, err = s2.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"})
			checkRolledBack(t, "libvirt attach", s2, w2, hv2, err)
			// libvirt plugged the disk but its answer was lost: the disk
			// is unplugged too, before the session it reads from goes.
			w3 := newWorld()
			hv3 := newFakeHV("web1")
			hv3.failOn = "attach-lost"
			s3, _, _ := attachService(t, w3, hv3)
			_, _, err = s3.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"})
			checkRolledBack(t, "libvirt attach's answer", s3, w3, hv3, err)
			// The domain went away: nothing to unplug, the rest is undone.
			w4 := newWorld()
			hv4 := newFakeHV("web1")
			hv4.failOn = "attach-vanish"
			s4, _, _ := attachService(t, w4, hv4)
			_, _, err = s4.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"})
			checkRolledBack(t, "libvirt attach to a vanished domain", s4, w4, hv4, err)
			if step < 10 {
				t.Fatalf("only %d mutating steps: the world is not being exercised", step-1)
			}
			return
		}
		checkRolledBack(t, w.failed, s, w, hv, err)
	}
}

func checkRolledBack(t *testing.T, failed string, s *Service, w *world, hv *fakeHV, err error) {
	t.Helper()
	ctx := context.Background()
	if err == nil || !strings.Contains(err.Error(), `attach volume "db1" to "web1"`) {
		t.Errorf("failing %s: err = %v", failed, err)
	}
	if left := w.empty(); left != "" {
		t.Errorf("failing %s left %s behind", failed, left)
	}
	x, _ := hv.DomainXML(ctx, "web1", false)
	if strings.Contains(x, "<serial>") {
		t.Errorf("failing %s left the disk in the domain", failed)
	}
	v, _ := s.State.Volume(ctx, "db1")
	if v.Status != state.Available || v.Attachment != nil {
		t.Errorf("failing %s: volume %s, attachment %+v", failed, v.Status, v.Attachment)
	}
	if _, err := s.State.Attachment(ctx, volUUID); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("failing %s: attachment row left: %v", failed, err)
	}
}

func TestDetachUndoesAttachAndResumesAfterAFailure(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	hv := newFakeHV("web1")
	hv.stuckLive = 1 // the guest ignores the first request
	s, _, _ := attachService(t, w, hv)
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	// Fail the logout: detach stops, the volume stays detaching.
	w.count, w.failAt = 0, 4 // blockdev, tee, logout -> 3 ... node delete is 4
	_, err := s.Detach(ctx, DetachOptions{Volume: "db1"})
	if err == nil || !strings.Contains(err.Error(), "run detach again") {
		t.Fatalf("err = %v", err)
	}
	v, _ := s.State.Volume(ctx, "db1")
	rec, _ := s.State.Attachment(ctx, volUUID)
	if v.Status != state.Detaching || rec.Step != "device-removed" {
		t.Fatalf("after failure: %s, step %q", v.Status, rec.Step)
	}
	// The process that failed has ended its operation: a rerun continues.
	w.failAt = 0
	res, err := s.Detach(ctx, DetachOptions{Volume: "db1"})
	if err != nil || res.Volume.Status != state.Available {
		t.Fatalf("rerun: %+v %v", res.Volume, err)
	}
	if left := w.empty(); left != "" {
		t.Errorf("detach left %s", left)
	}
	x, _ := hv.DomainXML(ctx, "web1", false)
	if strings.Contains(x, "<serial>") {
		t.Error("disk still in domain")
	}
	if res, err := s.Detach(ctx, DetachOptions{Volume: "db1"}); err != nil || res.WasPresent {
		t.Errorf("detach of a detached volume: %+v %v", res, err)
	}
}

func TestForceDetachCleansUpAfterTheDomainIsGone(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	hv := newFakeHV("web1")
	s, _, _ := attachService(t, w, hv)
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	delete(hv.domains, "web1")
	delete(w.sessions, "iqn.2026-11.org.example.blk:"+volUUID) // the session died too
	res, err := s.Detach(ctx, DetachOptions{Volume: "db1", Force: true})
	if err != nil || res.Volume.Status != state.Available {
		t.Fatalf("force: %+v %v", res, err)
	}
	if left := w.empty(); left != "" {
		t.Errorf("force detach left %s", left)
	}
}

func TestAttachRefusesUnknownInstanceAndTakenDevice(t *testing.T) {
	ctx := context.Background()
	s, _, _ := attachService(t, newWorld(), newFakeHV("web1"))
	_, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "nope"})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "comp1") {
		t.Errorf("unknown instance: %v", err)
	}
	_, _, err = s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Device: "vda"})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("vda: %v", err)
	}
	hv := newFakeHV("web2")
	hv.domains["web2"].Devices.Disks = append(hv.domains["web2"].Devices.Disks,
		libvirtxml.DomainDisk{Device: "disk", Target: &libvirtxml.DomainDiskTarget{Dev: "vdb", Bus: "virtio"}})
	s2, _, _ := attachService(t, newWorld(), hv)
	_, _, err = s2.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web2", Device: "vdb"})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "device vdb of web2 is taken") {
		t.Errorf("taken device: %v", err)
	}
	v, _ := s.State.Volume(ctx, "db1")
	if v.Status != state.Available {
		t.Errorf("refused attach moved the volume to %s", v.Status)
	}
}

// A rollback that cannot remove the target must not free the volume: free,
// it could go to a second host while the first one can still log in.
func TestFailedRollbackKeepsTheVolumeHeld(t *testing.T) {
	ctx := context.Background()
	s, w, hv := failingRollbackService(t)
	_, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Bus: "scsi"})
	if err == nil || !strings.Contains(err.Error(), `volume "db1" stays attaching`) || !strings.Contains(err.Error(), "blk volume detach --force db1") {
		t.Fatalf("err = %v", err)
	}
	v, _ := s.State.Volume(ctx, "db1")
	rec, rerr := s.State.Attachment(ctx, volUUID)
	if v.Status != state.Attaching || rerr != nil || rec.Step != "rollback-incomplete" || rec.Conn.TargetID == 0 {
		t.Fatalf("volume %s, attachment %+v (%v): want attaching with the target recorded", v.Status, rec, rerr)
	}
	if len(w.targets) != 1 {
		t.Fatalf("world: %s", w.empty())
	}
	// Once tgtd lets go, detach --force removes what is left.
	w.failOp, hv.failOn = "", ""
	res, err := s.Detach(ctx, DetachOptions{Volume: "db1", Force: true})
	if err != nil || res.Volume.Status != state.Available {
		t.Fatalf("detach --force: %v (%+v)", err, res)
	}
	if left := w.empty(); left != "" {
		t.Errorf("left behind: %s", left)
	}
}

// A target this attach did not make (a killed attach's) is never reused:
// its ACL and account may let another host in.
func TestLeftoverTargetIsMadeAgainNotReused(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	iqn := "iqn.2026-11.org.example.blk:" + volUUID
	w.targets[5], w.luns[5], w.acls[5], w.accounts["blk-0a0b0c0d"] = iqn, true, "iqn.2026-11.org.example:intruder", true
	s, _, _ := attachService(t, w, newFakeHV("web1"))
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Bus: "scsi"}); err != nil {
		t.Fatal(err)
	}
	rec, _ := s.State.Attachment(ctx, volUUID)
	if _, ok := w.targets[5]; ok || w.targets[rec.Conn.TargetID] != iqn {
		t.Errorf("targets %v, recorded tid %d: the leftover target was reused", w.targets, rec.Conn.TargetID)
	}
	if acl := w.acls[rec.Conn.TargetID]; acl != "iqn.2026-11.org.example:comp1" || len(w.acls) != 1 {
		t.Errorf("ACLs %v: want only comp1 bound", w.acls)
	}
}

func TestLeftoverTargetInUseIsRefused(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	iqn := "iqn.2026-11.org.example.blk:" + volUUID
	w.targets[5], w.luns[5], w.acls[5] = iqn, true, "iqn.2026-11.org.example:comp9"
	w.exported = map[string]string{iqn: "iqn.2026-11.org.example:comp9"}
	s, _, _ := attachService(t, w, newFakeHV("web1"))
	_, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Bus: "scsi"})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "comp9 is logged in") {
		t.Fatalf("err = %v", err)
	}
	if v, _ := s.State.Volume(ctx, "db1"); v.Status != state.Available || w.targets[5] != iqn || len(w.sessions) != 0 {
		t.Errorf("volume %s, targets %v, sessions %v: a refused attach changed something", v.Status, w.targets, w.sessions)
	}
}

// A backend that left the configuration stops attach, detach and delete
// before anything runs: a detach half run against an unknown host would
// leave the export behind and the volume stuck.
func TestVolumeOfARemovedBackendIsRefusedUpFront(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	s, _, _ := attachService(t, w, newFakeHV("web1"))
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Bus: "scsi"}); err != nil {
		t.Fatal(err)
	}
	before := w.count
	delete(s.Config.Backends, "lvm-1")
	for what, err := range map[string]error{
		"detach": func() error { _, err := s.Detach(ctx, DetachOptions{Volume: "db1", Force: true}); return err }(),
		"delete": func() error { _, err := s.Delete(ctx, DeleteOptions{Refs: []string{"db1"}}); return err }(),
	} {
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `backend "lvm-1"`) || !strings.Contains(err.Error(), "test.yaml") {
			t.Errorf("%s: err = %v", what, err)
		}
	}
	if v, _ := s.State.Volume(ctx, "db1"); v.Status != state.InUse || w.count != before {
		t.Errorf("volume %s, %d commands run: a refused command changed something", v.Status, w.count-before)
	}
}

// tgtadm quotes its own argv when it fails, password included: the error
// blk prints must not.
func TestFailedToolsStderrHasTheSecretMasked(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	s, stor, _ := attachService(t, w, newFakeHV("web1"))
	stor.Handle(func(args []string) (string, string, int, bool) {
		if arg(args, "--mode") == "account" && arg(args, "--op") == "new" {
			return "", "tgtadm: can't create account: tgtadm --op new --mode account --user blk-0a0b0c0d --password s3cretS3cretXyz9", 22, true
		}
		return w.handle(args)
	})
	_, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Bus: "scsi"})
	if err == nil || strings.Contains(err.Error(), "s3cretS3cretXyz9") || !strings.Contains(err.Error(), "--password ***") {
		t.Fatalf("err = %v", err)
	}
}

// The compute host's InitiatorName becomes the target's only ACL: a
// garbled one is refused before anything is made.
func TestAttachRefusesAGarbledInitiatorName(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	s, _, comp := attachService(t, w, newFakeHV("web1"))
	comp.Handle(func(args []string) (string, string, int, bool) {
		if args[0] == "cat" {
			return "InitiatorName=ALL ; $(reboot)\n", "", 0, true
		}
		return w.handle(args)
	})
	_, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Bus: "scsi"})
	if err == nil || !strings.Contains(err.Error(), "is not an IQN") {
		t.Fatalf("err = %v", err)
	}
	if v, _ := s.State.Volume(ctx, "db1"); v.Status != state.Available || w.empty() != "" || w.count != 0 {
		t.Errorf("volume %s, world %q, %d commands: a refused attach changed something", v.Status, w.empty(), w.count)
	}
}

// dyingHV is a libvirt connection that can be given up on.
type dyingHV struct {
	*fakeHV
	dead bool
}

func (d *dyingHV) Dead() bool { return d.dead }

// A connection given up on (a call outlived Ctrl-C) is dialled again, so the
// undo of the interrupted attach can still unplug.
func TestADeadLibvirtConnectionIsDialledAgain(t *testing.T) {
	cfg := &config.Config{Hosts: map[string]config.Host{"comp1": {Address: "192.0.2.20"}}}
	hs := NewHosts(cfg, nil, nil)
	hs.New = func(string, config.Host) exec.Runner { return exectest.New(t, "comp1") }
	var dials []*dyingHV
	hs.NewHypervisor = func(context.Context, string, exec.Runner) (hypervisor.Hypervisor, error) {
		h := &dyingHV{fakeHV: newFakeHV("web1")}
		dials = append(dials, h)
		return h, nil
	}
	ctx := context.Background()
	a, _ := hs.Hypervisor(ctx, "comp1")
	if b, _ := hs.Hypervisor(ctx, "comp1"); a != b || len(dials) != 1 {
		t.Fatalf("a live connection was not reused: %d dials", len(dials))
	}
	dials[0].dead = true
	if c, _ := hs.Hypervisor(ctx, "comp1"); c == a || len(dials) != 2 {
		t.Fatalf("a dead connection was reused: %d dials", len(dials))
	}
}

// The same attach, run again after one that was left attaching (killed, or
// with a rollback that could not finish): what the first made is rolled
// back, and the volume is attached afresh. While a step of that rollback
// still fails, the new attach does not start.
func TestAttachRunAgainRollsBackTheOneLeftAndAttaches(t *testing.T) {
	ctx := context.Background()
	s, w, hv := failingRollbackService(t)
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Bus: "scsi"}); err == nil {
		t.Fatal("the first attach did not fail")
	}
	hv.failOn = ""
	_, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Bus: "scsi"})
	if err == nil || !strings.Contains(err.Error(), "roll back the killed attach") {
		t.Fatalf("rerun while tgtd holds the target: %v", err)
	}
	// The failed rollback keeps the volume held, and says how to go on.
	if v, _ := s.State.Volume(ctx, "db1"); v.Status != state.Detaching || !strings.Contains(err.Error(), "run detach again") {
		t.Fatalf("after a failed rollback the volume is %s: %v", v.Status, err)
	}
	w.failOp = ""
	if _, err = s.Detach(ctx, DetachOptions{Volume: "db1"}); err != nil {
		t.Fatal(err)
	}
	v, already, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1", Bus: "scsi"})
	if err != nil || already || v.Status != state.InUse || v.Attachment == nil {
		t.Fatalf("rerun: %+v, %v, %v", v, already, err)
	}
	if len(w.targets) != 1 || len(w.sessions) != 1 {
		t.Errorf("after the rerun: targets %v sessions %v", w.targets, w.sessions)
	}
	if _, err = s.Detach(ctx, DetachOptions{Volume: "db1"}); err != nil {
		t.Fatal(err)
	}
	if left := w.empty(); left != "" {
		t.Errorf("left behind: %s", left)
	}
}

// failingRollbackService fails an attach at its libvirt step, and the
// rollback at deleting the target.
func failingRollbackService(t *testing.T) (*Service, *world, *fakeHV) {
	t.Helper()
	w := newWorld()
	w.failOp = "delete target"
	hv := newFakeHV("web1")
	hv.failOn = "attach"
	s, _, _ := attachService(t, w, hv)
	return s, w, hv
}

// An attach in progress is journaled from the moment it reserves the
// volume: a second attach is refused, never taken for a rerun of a killed
// one.
func TestAttachNeverTakesOverALiveAttach(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	s, _, _ := attachService(t, w, newFakeHV("web1", "web2"))
	if _, _, err := s.State.ReserveOp(ctx, volUUID, state.AttachmentRecord{Volume: volUUID, Instance: "web1",
		Host: "comp1", Device: "sdb", Status: state.Attaching}, "attach"); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web2", Bus: "scsi"})
	if !errors.Is(err, ErrConflict) || strings.Contains(err.Error(), "roll back") {
		t.Fatalf("attach beside a live one: %v", err)
	}
	if rec, _ := s.State.Attachment(ctx, volUUID); rec.Instance != "web1" || len(w.targets) != 0 {
		t.Errorf("the live attach's reservation changed: %+v, targets %v", rec, w.targets)
	}
}
