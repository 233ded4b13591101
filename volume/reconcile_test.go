package volume

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/config"
	blkexec "github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/internal/pgtest"
	"github.com/blk-project/blk/state"
	"libvirt.org/go/libvirtxml"
)

// lvWorld is LVM's view of the blk group: LV name -> tags and size.
type lvWorld map[string]struct {
	tags []string
	size int64
}

// reconWorld answers what reconcile reads on top of the tgt and open-iscsi
// world: LVs, the account and session listings, node records.
func reconWorld(w *world, lvs lvWorld) func(args []string) (string, string, int, bool) {
	return func(args []string) (string, string, int, bool) {
		last := args[len(args)-1]
		switch {
		case args[0] == "lvs":
			var rows []string
			for name, lv := range lvs {
				if strings.Contains(strings.Join(args, " "), "--select") || last == "blk/"+name {
					rows = append(rows, fmt.Sprintf(`{"lv_name":%q,"vg_name":"blk","lv_size":"%d","lv_tags":%q,"pool_lv":"","lv_attr":"-wi-a-----","data_percent":""}`,
						name, lv.size, strings.Join(lv.tags, ",")))
				}
			}
			if len(rows) == 0 && !slices.Contains(args, "--select") {
				return "", `  Failed to find logical volume "` + last + `"`, 5, true
			}
			slices.Sort(rows)
			return `{"report":[{"lv":[` + strings.Join(rows, ",") + `]}]}`, "", 0, true
		case args[0] == "vgs":
			return vgsReport("8589934592"), "", 0, true
		case strings.Join(args, " ") == "iscsiadm -m session -P 1":
			var out string
			for _, iqn := range slices.Sorted(maps.Keys(w.sessions)) {
				st := "LOGGED_IN"
				if w.down[iqn] {
					st = "FREE"
				}
				out += "Target: " + iqn + " (non-flash)\n\t\tiSCSI Session State: " + st + "\n"
			}
			return out, "", 0, true
		case strings.Join(args, " ") == "service iscsid restart":
			w.down = nil
			w.restarted++
			return "", "", 0, true
		case args[0] == "lvcreate":
			var tags []string
			for i, a := range args {
				if a == "--addtag" {
					tags = append(tags, args[i+1])
				}
			}
			size, _ := strconv.ParseInt(strings.TrimSuffix(arg(args, "--size"), "b"), 10, 64)
			lvs[arg(args, "--name")] = struct {
				tags []string
				size int64
			}{tags, size}
			return "", "", 0, true
		case args[0] == "lvremove":
			delete(lvs, strings.TrimPrefix(last, "blk/"))
			return "", "", 0, true
		case args[0] == "tgtadm" && arg(args, "--mode") == "account" && arg(args, "--op") == "show":
			out := "Account list:\n"
			for _, u := range slices.Sorted(maps.Keys(w.accounts)) {
				out += "    " + u + "\n"
			}
			return out, "", 0, true
		case args[0] == "iscsiadm" && len(args) == 3 && args[2] == "session":
			if len(w.sessions) == 0 {
				return "", "iscsiadm: No active sessions.", 21, true
			}
			out := ""
			for _, iqn := range slices.Sorted(maps.Keys(w.sessions)) {
				out += "tcp: [1] 192.0.2.10:3260,1 " + iqn + " (non-flash)\n"
			}
			return out, "", 0, true
		case args[0] == "iscsiadm" && len(args) == 3 && args[2] == "node":
			if len(w.nodes) == 0 {
				return "", "iscsiadm: No records found", 21, true
			}
			out := ""
			for _, iqn := range slices.Sorted(maps.Keys(w.nodes)) {
				out += "192.0.2.10:3260,1 " + iqn + "\n"
			}
			return out, "", 0, true
		}
		return w.handle(args)
	}
}

const (
	prefix    = "iqn.2026-11.org.example.blk:"
	orphanU   = "0f0f0f0f-aaaa-bbbb-cccc-ddddeeeeffff"
	strangerU = "0e0e0e0e-aaaa-bbbb-cccc-ddddeeeeffff"
)

func lvTags(name, uuid string) []string {
	return []string{"blk", "blk-name-" + name, "blk-vol-" + uuid}
}

// reconService is attachService with LVM, and db1's LV.
func reconService(t *testing.T) (*Service, *world, lvWorld, *fakeHV) {
	t.Helper()
	w, hv := newWorld(), newFakeHV("web1")
	lvs := lvWorld{"volume-" + volUUID: {lvTags("db1", volUUID), 1 << 30}, "pool": {[]string{"blk"}, 4 << 30}}
	s, stor, comp := twoHostService(t, "lvm-1", config.Backend{Type: "lvm", Host: "stor1", VG: "blk",
		Portal: "192.0.2.10:3260", IQNPrefix: "iqn.2026-11.org.example.blk", CHAP: true}, nil, hv)
	stor.Handle(reconWorld(w, lvs))
	comp.Handle(reconWorld(w, lvs))
	addAvailable(t, s, state.Volume{UUID: volUUID, Name: "db1", Backend: "lvm-1", SizeBytes: 1 << 30, Path: "/dev/blk/volume-" + volUUID})
	setGlobal(t, &newSecret, func() string { return "s3cretS3cretXyz9" })
	return s, w, lvs, hv
}

// kinds lists the drift found as "host kind object", sorted.
func kinds(reports []HostDrift) []string {
	var out []string
	for _, r := range reports {
		for _, d := range r.Drift {
			out = append(out, r.Host+" "+d.Kind+" "+d.Object)
		}
	}
	slices.Sort(out)
	return out
}

func reconcile(t *testing.T, s *Service, o ReconcileOptions) []HostDrift {
	t.Helper()
	reports, err := s.Reconcile(context.Background(), o)
	if err != nil {
		t.Fatalf("reconcile %+v: %v", o, err)
	}
	return reports
}

func TestReconcileIsCleanAroundAnAttachAndADetach(t *testing.T) {
	ctx := context.Background()
	s, w, _, _ := reconService(t)
	if got := kinds(reconcile(t, s, ReconcileOptions{})); len(got) != 0 {
		t.Fatalf("before attach: %q", got)
	}
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	reports := reconcile(t, s, ReconcileOptions{})
	if got := kinds(reports); len(got) != 0 {
		t.Fatalf("in use: %q", got)
	}
	if len(reports) != 2 || !slices.Equal(reports[0].Roles, []string{"compute"}) || !slices.Equal(reports[1].Roles, []string{"storage"}) {
		t.Errorf("reports = %+v", reports)
	}
	if _, err := s.Detach(ctx, DetachOptions{Volume: "db1"}); err != nil {
		t.Fatal(err)
	}
	if got := kinds(reconcile(t, s, ReconcileOptions{})); len(got) != 0 || w.empty() != "" {
		t.Fatalf("after detach: %q, world %s", got, w.empty())
	}
}

// Everything an interrupted or hand-made change can leave, found and, where
// it is safe, removed; an LV is never removed, only adopted.
func TestReconcileFindsOrphansAndFixesWhatIsSafe(t *testing.T) {
	ctx := context.Background()
	s, w, lvs, _ := reconService(t)
	// An export of a volume with no attachment, its account, a session and
	// node record on comp1, and a node record alone.
	w.targets[7], w.luns[7], w.acls[7], w.backing[7] = prefix+orphanU, true, "iqn.2026-11.org.example:comp1", "/dev/blk/volume-"+orphanU
	w.accounts["blk-0f0f0f0f"], w.bound[7] = true, "blk-0f0f0f0f"
	w.sessions[prefix+orphanU], w.nodes[prefix+orphanU] = true, true
	w.nodes[prefix+strangerU] = true
	// Not blk's: another prefix, another account name.
	w.targets[8], w.accounts["admin"], w.sessions["iqn.other:disk"] = "iqn.other:disk", true, true
	// An LV whose row is gone, and a row whose LV is gone.
	lvs["volume-"+orphanU] = struct {
		tags []string
		size int64
	}{lvTags("lost1", orphanU), 8 << 20}
	addAvailable(t, s, state.Volume{UUID: vol2UUID, Name: "db2", Backend: "lvm-1", SizeBytes: 1 << 30, Path: "/dev/blk/volume-" + vol2UUID})

	want := []string{
		"comp1 orphan-node " + prefix + strangerU,
		"comp1 orphan-session " + prefix + orphanU,
		"stor1 missing-lv blk/volume-" + vol2UUID,
		"stor1 orphan-account blk-0f0f0f0f",
		"stor1 orphan-lv blk/volume-" + orphanU,
		"stor1 orphan-target " + prefix + orphanU,
	}
	reports := reconcile(t, s, ReconcileOptions{})
	if got := kinds(reports); !slices.Equal(got, want) {
		t.Fatalf("drift:\n got %q\nwant %q", got, want)
	}
	if Unfixed(reports) != len(want) {
		t.Errorf("unfixed = %d", Unfixed(reports))
	}
	for _, d := range reports[1].Drift {
		if d.Kind == DriftOrphanLV && (d.Fixable || !strings.Contains(d.Action, "lvremove blk/volume-"+orphanU) || !strings.Contains(d.Action, `"lost1"`)) {
			t.Errorf("orphan LV without --adopt: %+v", d)
		}
	}

	reports = reconcile(t, s, ReconcileOptions{Fix: true})
	var unfixed []string
	for _, r := range reports {
		for _, d := range r.Drift {
			if !d.Fixed {
				unfixed = append(unfixed, d.Kind)
			}
			if d.FixError != "" {
				t.Errorf("%s %s: %s", d.Kind, d.Object, d.FixError)
			}
		}
	}
	slices.Sort(unfixed)
	if !slices.Equal(unfixed, []string{DriftMissingLV, DriftOrphanLV}) {
		t.Errorf("left unfixed: %q", unfixed)
	}
	if _, ok := lvs["volume-"+orphanU]; !ok {
		t.Fatal("--fix removed an LV")
	}
	if len(w.targets) != 1 || w.targets[8] != "iqn.other:disk" || w.accounts["blk-0f0f0f0f"] || !w.accounts["admin"] ||
		w.sessions[prefix+orphanU] || w.nodes[prefix+orphanU] || w.nodes[prefix+strangerU] || !w.sessions["iqn.other:disk"] {
		t.Errorf("after --fix: targets %v accounts %v sessions %v nodes %v", w.targets, w.accounts, w.sessions, w.nodes)
	}

	reports = reconcile(t, s, ReconcileOptions{Fix: true, Adopt: true})
	if got := kinds(reports); !slices.Equal(got, []string{"stor1 missing-lv blk/volume-" + vol2UUID, "stor1 orphan-lv blk/volume-" + orphanU}) {
		t.Fatalf("with --adopt: %q", got)
	}
	v, err := s.State.Volume(ctx, "lost1")
	if err != nil || v.UUID != orphanU || v.SizeBytes != 8<<20 || v.Status != state.Available || v.Path != "/dev/blk/volume-"+orphanU {
		t.Fatalf("adopted: %+v %v", v, err)
	}
	if got := kinds(reconcile(t, s, ReconcileOptions{})); !slices.Equal(got, []string{"stor1 missing-lv blk/volume-" + vol2UUID}) {
		t.Errorf("after adopting: %q", got)
	}
}

// A row rebuilt for an LV whose tags name no free name takes one from its
// UUID.
func TestAdoptedLVWithoutAFreeNameIsRecovered(t *testing.T) {
	ctx := context.Background()
	s, _, lvs, _ := reconService(t)
	lvs["volume-"+orphanU] = struct {
		tags []string
		size int64
	}{lvTags("db1", orphanU), 8 << 20}
	lvs["volume-"+strangerU] = struct {
		tags []string
		size int64
	}{[]string{"blk", "blk-vol-" + strangerU}, 8 << 20}
	reconcile(t, s, ReconcileOptions{Fix: true, Adopt: true})
	for _, u := range []string{orphanU, strangerU} {
		if v, err := s.State.Volume(ctx, "recovered-"+u[:8]); err != nil || v.UUID != u {
			t.Errorf("recovered-%s: %+v %v", u[:8], v, err)
		}
	}
}

// tgtd restarted on the storage host (or the host rebooted): the target of
// an in-use volume is gone. --fix makes it again as the attachment
// recorded it, so the compute host's session logs in again by itself.
func TestReconcileReexportsAfterAStorageHostReboot(t *testing.T) {
	ctx := context.Background()
	s, w, _, _ := reconService(t)
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	w.targets, w.luns, w.acls, w.backing, w.bound, w.accounts = map[int]string{}, map[int]bool{}, map[int]string{}, map[int]string{},
		map[int]string{}, map[string]bool{}
	w.targets[1] = "iqn.other:disk" // tid 1 is taken now: the target comes back as another

	reports := reconcile(t, s, ReconcileOptions{})
	if got := kinds(reports); !slices.Equal(got, []string{"stor1 missing-target " + prefix + volUUID}) {
		t.Fatalf("drift: %q", got)
	}
	// iscsid gave up on the session while tgtd answered "no such target".
	w.down = map[string]bool{prefix + volUUID: true}
	defer func(a, b time.Duration) { sessionReturns, sessionRestarts = a, b }(sessionReturns, sessionRestarts)
	sessionReturns, sessionRestarts = 10*time.Millisecond, time.Second
	reports = reconcile(t, s, ReconcileOptions{Fix: true})
	if Unfixed(reports) != 0 {
		t.Fatalf("not fixed: %+v", reports)
	}
	if w.restarted != 1 || len(w.down) != 0 {
		t.Errorf("iscsid restarted %d times, sessions down %v; want once, none", w.restarted, w.down)
	}
	tid := 2
	if w.targets[tid] != prefix+volUUID || w.backing[tid] != "/dev/blk/volume-"+volUUID || w.acls[tid] != "iqn.2026-11.org.example:comp1" ||
		w.bound[tid] != "blk-0a0b0c0d" || !w.accounts["blk-0a0b0c0d"] {
		t.Fatalf("re-export: targets %v backing %v acls %v bound %v accounts %v", w.targets, w.backing, w.acls, w.bound, w.accounts)
	}
	if rec, _ := s.State.Attachment(ctx, volUUID); rec.Conn.TargetID != tid {
		t.Errorf("attachment records tid %d, want %d", rec.Conn.TargetID, tid)
	}
	if got := kinds(reconcile(t, s, ReconcileOptions{})); len(got) != 0 {
		t.Errorf("after --fix: %q", got)
	}
	// Half an export (the account lost, another initiator let in) is
	// completed, and the stranger unbound.
	delete(w.accounts, "blk-0a0b0c0d")
	w.acls[tid] = "iqn.stranger:host"
	got := kinds(reconcile(t, s, ReconcileOptions{}))
	if want := []string{"stor1 incomplete-target " + prefix + volUUID, "stor1 orphan-acl " + prefix + volUUID + " iqn.stranger:host"}; !slices.Equal(got, want) {
		t.Fatalf("half an export: %q, want %q", got, want)
	}
	if Unfixed(reconcile(t, s, ReconcileOptions{Fix: true})) != 0 || w.acls[tid] != "iqn.2026-11.org.example:comp1" || !w.accounts["blk-0a0b0c0d"] {
		t.Errorf("after --fix: acls %v accounts %v", w.acls, w.accounts)
	}
}

// deadOwner is an owner string of this host whose process is gone.
func deadOwner(t *testing.T) string {
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	p := strings.Split(state.Owner, ":")
	p[3] = strconv.Itoa(c.Process.Pid)
	return strings.Join(p, ":")
}

// asDeadProcess runs fn as a process that has since died: what it journals
// is owned by nobody alive.
func asDeadProcess(t *testing.T, fn func()) {
	old := state.Owner
	state.Owner = deadOwner(t)
	defer func() { state.Owner = old }()
	fn()
}

func TestReconcileFinishesOrRollsBackStuckWorkflows(t *testing.T) {
	ctx := context.Background()
	s, w, lvs, hv := reconService(t)
	// An attach killed between its reservation and its journal entry:
	// attaching, no operation at all.
	rec := state.AttachmentRecord{Volume: volUUID, Instance: "web1", Host: "comp1", Device: "vdb", Status: state.Attaching,
		Conn: state.ConnectionInfo{DriverVolumeType: "iscsi", TargetPortal: "192.0.2.10:3260", TargetIQN: prefix + volUUID, TargetLUN: 1}}
	if _, err := s.State.Reserve(ctx, volUUID, rec); err != nil {
		t.Fatal(err)
	}
	w.targets[3] = prefix + volUUID // it had made the target
	// A create killed before lvcreate, and an operation left running on an
	// available volume by a process that died.
	asDeadProcess(t, func() {
		if _, err := s.State.InsertVolume(ctx, &state.Volume{UUID: vol2UUID, Name: "db2", Backend: "lvm-1", SizeBytes: 1 << 30, Status: state.Creating}); err != nil {
			t.Fatal(err)
		}
	})
	addAvailable(t, s, state.Volume{UUID: orphanU, Name: "db3", Backend: "lvm-1", SizeBytes: 1 << 30, Path: "/dev/blk/volume-" + orphanU})
	lvs["volume-"+orphanU] = struct {
		tags []string
		size int64
	}{lvTags("db3", orphanU), 1 << 30}
	asDeadProcess(t, func() {
		if _, err := s.State.BeginOp(ctx, "extend", orphanU); err != nil {
			t.Fatal(err)
		}
	})
	// A volume a live process holds is work in progress, not drift.
	addAvailable(t, s, state.Volume{UUID: strangerU, Name: "busy", Backend: "lvm-1", SizeBytes: 1 << 30, Path: "/dev/blk/volume-" + strangerU})
	if _, err := s.State.Claim(ctx, "delete", strangerU, []string{state.Available}, state.Deleting); err != nil {
		t.Fatal(err)
	}

	reports := reconcile(t, s, ReconcileOptions{})
	got := kinds(reports)
	var ops []string
	for _, r := range reports {
		for _, d := range r.Drift {
			if d.Kind == DriftStaleOperation {
				ops = append(ops, r.Host)
			}
		}
	}
	want := []string{"comp1 stuck-status volume db1", "stor1 stuck-status volume db2"}
	if len(ops) != 1 || !slices.Equal(slices.DeleteFunc(got, func(k string) bool { return strings.Contains(k, DriftStaleOperation) }), want) {
		t.Fatalf("drift: %q (stale operations on %q)", kinds(reports), ops)
	}
	reports = reconcile(t, s, ReconcileOptions{Fix: true})
	if n := Unfixed(reports); n != 0 {
		t.Fatalf("%d not fixed: %+v", n, reports)
	}
	for name, st := range map[string]string{"db1": state.Available, "db2": state.Available, "db3": state.Available, "busy": state.Deleting} {
		if v, _ := s.State.Volume(ctx, name); v.Status != st {
			t.Errorf("%s is %s, want %s", name, v.Status, st)
		}
	}
	if _, ok := lvs["volume-"+vol2UUID]; !ok {
		t.Error("the create was not finished")
	}
	if len(w.targets) != 0 || strings.Contains(must(hv.DomainXML(ctx, "web1", false)), "<serial>") {
		t.Errorf("the attach was not rolled back: targets %v", w.targets)
	}
	if got := kinds(reconcile(t, s, ReconcileOptions{})); len(got) != 0 {
		t.Errorf("after --fix: %q", got)
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

// The disk of an attachment removed from the domain by hand, and a disk
// with a volume's serial in a domain it is not attached to: reported,
// never changed.
func TestReconcileReportsDisksItDoesNotTouch(t *testing.T) {
	ctx := context.Background()
	s, _, _, hv := reconService(t)
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	d := hv.domains["web1"]
	d.Devices.Disks = d.Devices.Disks[:1]
	hv.domains["web2"] = &libvirtxml.Domain{Type: "qemu", Name: "web2", Devices: &libvirtxml.DomainDeviceList{Disks: []libvirtxml.DomainDisk{
		{Device: "disk", Serial: volUUID[:20], Target: &libvirtxml.DomainDiskTarget{Dev: "vdc", Bus: "virtio"}}}}}
	reports := reconcile(t, s, ReconcileOptions{Fix: true})
	if got := kinds(reports); !slices.Equal(got, []string{"comp1 missing-disk web1 vdb", "comp1 orphan-disk web2 vdc"}) {
		t.Fatalf("drift: %q", got)
	}
	if Unfixed(reports) != 2 || len(hv.calls) != 1 {
		t.Errorf("--fix changed a domain: calls %q", hv.calls)
	}
}

func TestReconcileOnNFSMountsAndFiles(t *testing.T) {
	ctx := context.Background()
	w := newNFSWorld()
	hv := newFakeHV("web1", "web2")
	s, stor, comp := nfsService(t, w, hv)
	list := func(args []string) (string, string, int, bool) {
		switch {
		case args[0] == "find":
			out := ""
			for _, f := range slices.Sorted(maps.Keys(w.files)) {
				out += fmt.Sprintf("%s\t%d\t8\n", strings.TrimPrefix(f, "/srv/blk/"), w.files[f])
			}
			return out, "", 0, true
		case args[0] == "findmnt" && slices.Contains(args, "--list"):
			if len(w.mounts) == 0 {
				return "", "", 1, true
			}
			var fs []string
			for _, mp := range slices.Sorted(maps.Keys(w.mounts)) {
				fs = append(fs, fmt.Sprintf(`{"target": %q, "source": %q, "fstype": "nfs4", "options": "rw"}`, mp, w.mounts[mp]))
			}
			return `{"filesystems": [` + strings.Join(fs, ",") + `]}`, "", 0, true
		}
		return w.handle(args)
	}
	stor.Handle(list)
	comp.Handle(list)
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	if got := kinds(reconcile(t, s, ReconcileOptions{})); len(got) != 0 {
		t.Fatalf("in use: %q", got)
	}
	// The mount went (a reboot without fstab), another was left, and a
	// file lost its row.
	delete(w.mounts, mnt)
	w.mounts["/var/lib/blk/mnt/0123"] = "192.0.2.10:/srv/old"
	w.files["/srv/blk/volume-"+orphanU] = 4 << 20
	want := []string{"comp1 missing-mount " + mnt, "comp1 orphan-mount /var/lib/blk/mnt/0123", "stor1 orphan-file /srv/blk/volume-" + orphanU}
	if got := kinds(reconcile(t, s, ReconcileOptions{})); !slices.Equal(got, want) {
		t.Fatalf("drift: %q, want %q", got, want)
	}
	reports := reconcile(t, s, ReconcileOptions{Fix: true, Adopt: true})
	if Unfixed(reports) != 0 || w.mounts[mnt] != export || w.mounts["/var/lib/blk/mnt/0123"] != "" {
		t.Fatalf("after --fix: %+v, mounts %v", reports, w.mounts)
	}
	if v, err := s.State.Volume(ctx, "recovered-0f0f0f0f"); err != nil || v.SizeBytes != 4<<20 || v.Path != "/srv/blk/volume-"+orphanU {
		t.Errorf("adopted file: %+v %v", v, err)
	}
}

// A host that cannot be looked at fails reconcile, after the others are
// reported; --host looks at one.
func TestReconcileNamesAHostItCouldNotLookAt(t *testing.T) {
	s, w, _, _ := reconService(t)
	w.nodes[prefix+orphanU] = true
	s.Hosts.New = func(name string, _ config.Host) blkexec.Runner {
		if name == "stor1" {
			return exectest.New(t, "stor1").Handle(func(args []string) (string, string, int, bool) {
				return "", "ssh: connect to host 192.0.2.10 port 22: Connection refused", 255, true
			})
		}
		return exectest.New(t, name).Handle(reconWorld(w, lvWorld{}))
	}
	reports, err := s.Reconcile(context.Background(), ReconcileOptions{})
	if err == nil || !strings.Contains(err.Error(), "stor1: lvm volumes:") {
		t.Fatalf("err = %v", err)
	}
	if got := kinds(reports); !slices.Equal(got, []string{"comp1 orphan-node " + prefix + orphanU}) || reports[1].Error == "" {
		t.Errorf("reports: %+v", reports)
	}
	reports, err = s.Reconcile(context.Background(), ReconcileOptions{Host: "comp1"})
	if err != nil || len(reports) != 1 || reports[0].Host != "comp1" {
		t.Errorf("--host comp1: %+v %v", reports, err)
	}
	if _, err := s.Reconcile(context.Background(), ReconcileOptions{Host: "nosuch"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("--host nosuch: %v", err)
	}
}

// A state file made anew (the old one lost) knows no attachment: every
// export looks orphaned, so only adopting is done.
func TestAdoptOnlyLeavesExportsAlone(t *testing.T) {
	s, w, lvs, _ := reconService(t)
	w.targets[7] = prefix + orphanU
	lvs["volume-"+orphanU] = struct {
		tags []string
		size int64
	}{lvTags("lost1", orphanU), 8 << 20}
	reports := reconcile(t, s, ReconcileOptions{Fix: true, Adopt: true, AdoptOnly: true})
	if w.targets[7] == "" || Unfixed(reports) != 1 {
		t.Fatalf("adopt only: targets %v, reports %+v", w.targets, reports)
	}
	if _, err := s.State.Volume(context.Background(), "lost1"); err != nil {
		t.Error(err)
	}
}

// An account bound to a target someone is logged in to is what they log in
// again with: --fix leaves it, and says why.
func TestOrphanAccountOfATargetInUseIsLeft(t *testing.T) {
	s, w, _, _ := reconService(t)
	w.targets[7], w.luns[7], w.backing[7] = prefix+orphanU, true, "/dev/blk/volume-"+orphanU
	w.accounts["blk-0f0f0f0f"], w.bound[7] = true, "blk-0f0f0f0f"
	w.exported = map[string]string{prefix + orphanU: "iqn.elsewhere:host"}
	reports := reconcile(t, s, ReconcileOptions{Fix: true})
	var errs []string
	for _, d := range reports[1].Drift {
		errs = append(errs, d.Kind+": "+d.FixError)
	}
	if !w.accounts["blk-0f0f0f0f"] || w.targets[7] == "" || len(errs) != 2 ||
		!strings.Contains(errs[0], "bound to target "+prefix+orphanU+", which iqn.elsewhere:host is logged in to") ||
		!strings.Contains(errs[1], "iqn.elsewhere:host is logged in to it") {
		t.Errorf("fix errors %q, accounts %v targets %v", errs, w.accounts, w.targets)
	}
}

// slowHV is a libvirt that takes a while to list its domains, counting
// how many hosts are asked at once.
type slowHV struct {
	*fakeHV
	mu        *sync.Mutex
	now, most *int
}

func (h slowHV) Domains(context.Context) ([]string, error) {
	h.mu.Lock()
	*h.now++
	*h.most = max(*h.most, *h.now)
	h.mu.Unlock()
	time.Sleep(30 * time.Millisecond)
	h.mu.Lock()
	*h.now--
	h.mu.Unlock()
	return nil, nil
}

// 200 compute hosts are looked at together, DefaultParallel at a time.
func TestReconcileLooksAtHostsConcurrentlyBounded(t *testing.T) {
	cfg := &config.Config{State: pgtest.State(t), Hosts: map[string]config.Host{}}
	for i := range 200 {
		h := fmt.Sprintf("comp%d", i)
		cfg.Hosts[h] = config.Host{Address: "192.0.2.1"}
		cfg.Compute = append(cfg.Compute, h)
	}
	st, err := state.Open(context.Background(), cfg.State, state.ReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hs := NewHosts(cfg, nil, nil)
	hs.New = func(name string, _ config.Host) blkexec.Runner { return exectest.New(t, name) }
	var mu sync.Mutex
	var now, most int
	hs.NewHypervisor = func(context.Context, string, blkexec.Runner) (hypervisor.Hypervisor, error) {
		return slowHV{fakeHV: newFakeHV(), mu: &mu, now: &now, most: &most}, nil
	}
	s := NewService(cfg, "test.yaml", st, hs)
	start := time.Now()
	reports := reconcile(t, s, ReconcileOptions{})
	if len(reports) != 200 || most != DefaultParallel {
		t.Errorf("%d reports, at most %d hosts at once; want 200 and %d", len(reports), most, DefaultParallel)
	}
	if d := time.Since(start); d > 200*30*time.Millisecond/4 {
		t.Errorf("200 hosts took %v: not looked at together", d)
	}
}

// Snapshot workflows killed part-way: a snapshot create (volume
// snapshotting, snapshot creating), a snapshot delete (snapshot deleting),
// a revert killed before it held its snapshot (volume reverting). Each is
// reported, --fix finishes or rolls it back, and reconcile is then clean.
func TestReconcileFinishesKilledSnapshotWorkflows(t *testing.T) {
	ctx := context.Background()
	s, _, lvs, _ := reconService(t)
	addAvailable(t, s, state.Volume{UUID: vol2UUID, Name: "db2", Backend: "lvm-1", SizeBytes: 1 << 30, Path: "/dev/blk/volume-" + vol2UUID})
	addAvailable(t, s, state.Volume{UUID: orphanU, Name: "db3", Backend: "lvm-1", SizeBytes: 1 << 30, Path: "/dev/blk/volume-" + orphanU})
	for _, u := range []string{vol2UUID, orphanU} {
		lvs["volume-"+u] = struct {
			tags []string
			size int64
		}{lvTags(map[string]string{vol2UUID: "db2", orphanU: "db3"}[u], u), 1 << 30}
	}
	const s2 = "5b5b5b5b-1111-2222-3333-444455556666"
	op, err := s.State.InsertSnapshot(ctx, &state.Snapshot{UUID: s2, Name: "s2", Volume: vol2UUID, SizeBytes: 1 << 30, Status: state.Creating})
	if err != nil {
		t.Fatal(err)
	}
	op.End(ctx, nil)
	if _, err = s.State.MoveSnapshot(ctx, s2, state.SnapshotMove{From: []string{state.Creating}, To: state.Available}); err != nil {
		t.Fatal(err)
	}
	asDeadProcess(t, func() {
		if _, err := s.State.Claim(ctx, "snapshot", volUUID, []string{state.Available}, state.Snapshotting); err != nil {
			t.Fatal(err)
		}
		if _, err := s.State.InsertSnapshot(ctx, &state.Snapshot{UUID: snapUUID, Name: "s1", Volume: volUUID, SizeBytes: 1 << 30, Status: state.Creating}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.State.ClaimSnapshot(ctx, "snapshot delete", s2, []string{state.Available}, state.Deleting); err != nil {
			t.Fatal(err)
		}
		if _, err := s.State.Claim(ctx, "revert", orphanU, []string{state.Available}, state.Reverting); err != nil {
			t.Fatal(err)
		}
	})
	want := []string{"stor1 stuck-status snapshot s2", "stor1 stuck-status volume db1", "stor1 stuck-status volume db3"}
	if got := kinds(reconcile(t, s, ReconcileOptions{})); !slices.Equal(got, want) {
		t.Fatalf("drift: %q, want %q", got, want)
	}
	if n := Unfixed(reconcile(t, s, ReconcileOptions{Fix: true})); n != 0 {
		t.Fatalf("%d not fixed", n)
	}
	for name, st := range map[string]string{"db1": state.Available, "db2": state.Available, "db3": state.Available} {
		if v, _ := s.State.Volume(ctx, name); v.Status != st {
			t.Errorf("%s is %s, want %s", name, v.Status, st)
		}
	}
	if sn, err := s.State.Snapshot(ctx, "s1"); err != nil || sn.Status != state.Available {
		t.Errorf("the killed snapshot create was not finished: %+v %v", sn, err)
	}
	if _, ok := lvs["_snapshot-"+snapUUID]; !ok {
		t.Error("no snapshot LV was made")
	}
	if _, err := s.State.Snapshot(ctx, "s2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the killed snapshot delete was not finished: %v", err)
	}
	if got := kinds(reconcile(t, s, ReconcileOptions{})); len(got) != 0 {
		t.Errorf("after --fix: %q", got)
	}
}
