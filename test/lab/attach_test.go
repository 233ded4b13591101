//go:build lab

package lab

import (
	"os"
	osexec "os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

type attached struct {
	volume
	Attachment *struct {
		Instance   string `json:"instance"`
		Host       string `json:"host"`
		Device     string `json:"device"`
		DevicePath string `json:"device_path"`
	} `json:"attachment"`
}

// clean reports what of a volume's export is left anywhere: target,
// session, node record, disk in either domain definition.
func leftovers(t *testing.T, uuid, domain string) []string {
	t.Helper()
	var left []string
	if strings.Contains(sh(t, "tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "target"), uuid) {
		left = append(left, "tgt target")
	}
	if strings.Contains(sh(t, "sh", "-c", "iscsiadm -m session 2>/dev/null; true"), uuid) {
		left = append(left, "iscsi session")
	}
	if strings.Contains(sh(t, "sh", "-c", "iscsiadm -m node 2>/dev/null; true"), uuid) {
		left = append(left, "iscsi node record")
	}
	serial := uuid[:20]
	if strings.Contains(sh(t, "virsh", "-c", "qemu:///system", "dumpxml", domain), serial) {
		left = append(left, "disk in live domain")
	}
	if strings.Contains(sh(t, "virsh", "-c", "qemu:///system", "dumpxml", "--inactive", domain), serial) {
		left = append(left, "disk in persistent domain")
	}
	return left
}

// waitForKernel waits until lab-vm2, which boots a real kernel under nested
// emulation (about a minute), can answer hot-unplug.
func waitForKernel(t *testing.T, domain string) {
	t.Helper()
	deadline := time.Now().Add(4 * time.Minute)
	for !strings.Contains(sh(t, "sh", "-c", "cat /run/"+domain+".console 2>/dev/null; true"), "BLK-VM-READY") {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not boot its kernel in time", domain)
		}
		time.Sleep(2 * time.Second)
	}
}

// scsi on lab-vm1 (no OS: virtio-scsi unplug needs no guest), virtio on
// lab-vm2 (a kernel that answers virtio-blk unplug, see LAB.md).
func TestAttachWriteReadDetach(t *testing.T) {
	for _, c := range []struct{ bus, domain, other string }{{"scsi", "lab-vm1", "lab-vm2"}, {"virtio", "lab-vm2", "lab-vm1"}} {
		bus, domain := c.bus, c.domain
		t.Run(bus, func(t *testing.T) {
			if bus == "virtio" {
				waitForKernel(t, domain)
			}
			name := uniq("att")
			v := decode[volume](t, ok(t, "volume", "create", name, "--size", "32MiB", "-o", "json"))
			defer blk(t, "volume", "delete", name, "--yes")

			a := decode[attached](t, ok(t, "volume", "attach", name, "--instance", domain, "--bus", bus, "-o", "json"))
			if a.Status != "in-use" || a.Attachment == nil || a.Attachment.Instance != domain || !strings.Contains(a.Attachment.DevicePath, v.UUID) {
				t.Fatalf("attached volume = %+v %+v", a.volume, a.Attachment)
			}
			serial := v.UUID[:20]
			for _, flag := range []string{"", "--inactive"} {
				args := []string{"virsh", "-c", "qemu:///system", "dumpxml", domain}
				if flag != "" {
					args = append(args, flag)
				}
				x := sh(t, args...)
				if !strings.Contains(x, "<serial>"+serial+"</serial>") || !strings.Contains(x, a.Attachment.DevicePath) {
					t.Errorf("domain XML %s lacks the disk:\n%s", flag, x)
				}
			}
			// The target is bound to the compute host's initiator only.
			show := sh(t, "tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "target")
			if !strings.Contains(show, "iqn.2026-11.org.example.lab:compute") || strings.Contains(show, "ALL") {
				t.Errorf("target ACL is not the one initiator:\n%s", show)
			}
			// Bytes written through the compute host's iSCSI device come back from the LV.
			sum := sh(t, "sh", "-c", "head -c 16777216 /dev/urandom > /tmp/"+name+" && dd if=/tmp/"+name+" of="+a.Attachment.DevicePath+
				" bs=1M oflag=direct status=none && sha256sum < /tmp/"+name+" && rm /tmp/"+name)
			back := sh(t, "sh", "-c", "dd if="+v.Path+" bs=1M count=16 iflag=direct status=none | sha256sum")
			if sum != back {
				t.Errorf("LV holds %q, wrote %q", back, sum)
			}

			// Again to the same instance: success, says so.
			if r := blk(t, "volume", "attach", name, "--instance", domain, "--bus", bus); r.code != 0 || !strings.Contains(r.errOut, "already attached") {
				t.Errorf("re-attach: %d %q", r.code, r.errOut)
			}
			// To another instance: refused, naming the holder.
			if r := blk(t, "volume", "attach", name, "--instance", c.other); r.code != 3 || !strings.Contains(r.errOut, domain) {
				t.Errorf("attach to %s: %d %q", c.other, r.code, r.errOut)
			}

			d := decode[attached](t, ok(t, "volume", "detach", name, "-o", "json"))
			if d.Status != "available" || d.Attachment != nil {
				t.Errorf("after detach: %+v", d)
			}
			if left := leftovers(t, v.UUID, domain); len(left) > 0 {
				t.Errorf("detach left: %v", left)
			}
		})
	}
}

func TestAttachDryRunPrintsThePlan(t *testing.T) {
	name := uniq("plan")
	v := decode[volume](t, ok(t, "volume", "create", name, "--size", "8MiB", "-o", "json"))
	defer blk(t, "volume", "delete", name, "--yes")
	out := ok(t, "--dry-run", "volume", "attach", name, "--instance", "lab-vm1", "--bus", "scsi")
	for _, want := range []string{"lab: tgtadm --lld iscsi --op new --mode target", "--op bind --mode target", "--password '***'",
		"lab: iscsiadm -m node", "--login", "lab: libvirt attach-device lab-vm1 --live --config"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	if left := leftovers(t, v.UUID, "lab-vm1"); len(left) > 0 {
		t.Errorf("dry run made: %v", left)
	}
	if got := decode[volume](t, ok(t, "volume", "show", name, "-o", "json")); got.Status != "available" {
		t.Errorf("dry run moved the volume to %s", got.Status)
	}
}

// killedAttach starts an attach of a new volume to lab-vm1 and SIGKILLs it
// once its export exists, before it finishes.
func killedAttach(t *testing.T, name string) volume {
	t.Helper()
	v := decode[volume](t, ok(t, "volume", "create", name, "--size", "8MiB", "-o", "json"))
	cmd := osexec.Command(os.Getenv("BLK_BIN"), "volume", "attach", name, "--instance", "lab-vm1", "--bus", "scsi")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(sh(t, "tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "target"), v.UUID) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	return v
}

// An attach killed with SIGKILL part-way, run again: it rolls back what the
// killed one made, says it took it over, and attaches; the detach then
// leaves nothing.
func TestKilledAttachRunAgainAttaches(t *testing.T) {
	name := uniq("rekill")
	v := killedAttach(t, name)
	r := blk(t, "volume", "attach", name, "--instance", "lab-vm1", "--bus", "scsi")
	if r.code != 0 || !strings.Contains(r.errOut, "is taken over") {
		t.Fatalf("attach run again: exit %d %s", r.code, r.errOut)
	}
	got := decode[attached](t, ok(t, "volume", "show", name, "-o", "json"))
	if got.Status != "in-use" || got.Attachment == nil || got.Attachment.Instance != "lab-vm1" {
		t.Fatalf("volume = %+v", got)
	}
	targets := 0
	for _, l := range strings.Split(sh(t, "tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "target"), "\n") {
		if strings.HasPrefix(l, "Target ") && strings.Contains(l, v.UUID) {
			targets++
		}
	}
	if targets != 1 {
		t.Errorf("%d targets of the volume", targets)
	}
	ok(t, "volume", "detach", name)
	if left := leftovers(t, v.UUID, "lab-vm1"); len(left) > 0 {
		t.Errorf("after the detach: %v", left)
	}
	ok(t, "volume", "delete", name, "--yes")
}

// An attach killed with SIGKILL part-way, then detach --force: nothing left.
func TestKilledAttachIsCleanedByForceDetach(t *testing.T) {
	name := uniq("kill")
	v := killedAttach(t, name)
	if r := blk(t, "volume", "delete", name, "--yes"); r.code != 3 {
		t.Errorf("delete of a half-attached volume: exit %d %s", r.code, r.errOut)
	}
	r := blk(t, "volume", "detach", name, "--force")
	if r.code != 0 {
		t.Fatalf("detach --force: %d %s", r.code, r.errOut)
	}
	if left := leftovers(t, v.UUID, "lab-vm1"); len(left) > 0 {
		t.Errorf("after kill and detach --force: %v\ndetach said: %s", left, r.errOut)
	}
	if got := decode[attached](t, ok(t, "volume", "show", name, "-o", "json")); got.Status != "available" || got.Attachment != nil {
		t.Errorf("volume = %+v", got)
	}
	ok(t, "volume", "delete", name, "--yes")
}

func TestAttachUnknownInstance(t *testing.T) {
	name := uniq("nodom")
	ok(t, "volume", "create", name, "--size", "8MiB")
	defer blk(t, "volume", "delete", name, "--yes")
	r := blk(t, "volume", "attach", name, "--instance", "no-such-vm")
	if r.code != 4 || !strings.Contains(r.errOut, "lab") {
		t.Errorf("exit %d %q: want 4 naming the hosts searched", r.code, r.errOut)
	}
}

// Two attaches of one volume to different instances, started together:
// exactly one wins, the other exits 3.
func TestAttachRaceHasOneWinner(t *testing.T) {
	name := uniq("race")
	v := decode[volume](t, ok(t, "volume", "create", name, "--size", "8MiB", "-o", "json"))
	defer blk(t, "volume", "delete", name, "--yes")
	results := make(chan result, 2)
	for _, vm := range []string{"lab-vm1", "lab-vm2"} {
		go func() { results <- blk(t, "volume", "attach", name, "--instance", vm, "--bus", "scsi") }()
	}
	wins := 0
	for range 2 {
		r := <-results
		switch r.code {
		case 0:
			wins++
		case 3:
		default:
			t.Errorf("exit %d: %s", r.code, r.errOut)
		}
	}
	if wins != 1 {
		t.Errorf("%d attaches won, want 1", wins)
	}
	a := decode[attached](t, ok(t, "volume", "show", name, "-o", "json"))
	if a.Attachment == nil {
		t.Fatal("nobody holds the volume")
	}
	ok(t, "volume", "detach", name)
	for _, vm := range []string{"lab-vm1", "lab-vm2"} {
		if left := leftovers(t, v.UUID, vm); len(left) > 0 {
			t.Errorf("%s: %v", vm, left)
		}
	}
}
