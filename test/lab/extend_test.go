//go:build lab

package lab

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// guestExec runs argv inside a domain through its QEMU guest agent
// (guest-exec, then guest-exec-status until it exits) and returns what it
// printed and its exit code. lab-vm2 runs qemu-guest-agent.
func guestExec(t *testing.T, domain string, argv ...string) (string, int) {
	t.Helper()
	req, _ := json.Marshal(map[string]any{"execute": "guest-exec", "arguments": map[string]any{
		"path": argv[0], "arg": argv[1:], "capture-output": true}})
	var started struct {
		Return struct {
			PID int `json:"pid"`
		} `json:"return"`
	}
	// The nested guest answers its agent late while it takes a new disk
	// in ("Guest agent not available for now"): ask again for a minute.
	var out string
	for i := 0; ; i++ {
		var err error
		if out, err = guestRun("virsh", "-c", "qemu:///system", "qemu-agent-command", domain, string(req)); err == nil {
			break
		} else if i == 30 || !strings.Contains(err.Error(), "agent") {
			t.Fatalf("guest-exec %q: %v", argv, err)
		}
		time.Sleep(2 * time.Second)
	}
	if err := json.Unmarshal([]byte(out), &started); err != nil {
		t.Fatalf("guest-exec %q: %v", argv, err)
	}
	status := fmt.Sprintf(`{"execute":"guest-exec-status","arguments":{"pid":%d}}`, started.Return.PID)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var st struct {
			Return struct {
				Exited   bool   `json:"exited"`
				ExitCode int    `json:"exitcode"`
				OutData  string `json:"out-data"`
				ErrData  string `json:"err-data"`
			} `json:"return"`
		}
		if err := json.Unmarshal([]byte(sh(t, "virsh", "-c", "qemu:///system", "qemu-agent-command", domain, status)), &st); err != nil {
			t.Fatalf("guest-exec-status: %v", err)
		}
		if st.Return.Exited {
			out, _ := base64.StdEncoding.DecodeString(st.Return.OutData)
			errOut, _ := base64.StdEncoding.DecodeString(st.Return.ErrData)
			if st.Return.ExitCode != 0 {
				t.Logf("guest %q: exit %d: %s", argv, st.Return.ExitCode, errOut)
			}
			return string(out), st.Return.ExitCode
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest %q still runs after 2m", argv)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// inGuest runs a shell script in the domain and fails the test unless it
// exits 0.
func inGuest(t *testing.T, domain, script string) string {
	t.Helper()
	out, code := guestExec(t, domain, "/bin/sh", "-c", script)
	if code != 0 {
		t.Fatalf("guest script exited %d: %s\n%s", code, script, out)
	}
	return strings.TrimSpace(out)
}

// waitForAgent waits until the guest agent answers guest-ping.
func waitForAgent(t *testing.T, domain string) {
	t.Helper()
	deadline := time.Now().Add(4 * time.Minute)
	for {
		out := sh(t, "sh", "-c", "virsh -c qemu:///system qemu-agent-command "+domain+` '{"execute":"guest-ping"}' 2>/dev/null; true`)
		if strings.Contains(out, `"return"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest agent of %s does not answer", domain)
		}
		time.Sleep(2 * time.Second)
	}
}

// Online extend while the guest writes (2 MiB at a time: /dev/urandom and
// dd are slow in the nested guest): the guest's kernel sees the new
// size, the data written before and during the extend is intact, and the
// new space takes data. iSCSI (tgtd reopens the LUN's store in place,
// the initiator rescans) and NFS (truncate), then blockresize.
func TestExtendInUseGuestSeesTheNewSize(t *testing.T) {
	const domain = "lab-vm2"
	waitForKernel(t, domain)
	waitForAgent(t, domain)
	for _, backend := range []string{"lvm-1", "nfs-1"} {
		t.Run(backend, func(t *testing.T) {
			name := uniq("ext")
			v := decode[volume](t, ok(t, "volume", "create", name, "--size", "64MiB", "--backend", backend, "-o", "json"))
			defer blk(t, "volume", "delete", name, "--yes")
			ok(t, "volume", "attach", name, "--instance", domain)
			defer blk(t, "volume", "detach", name)

			// The guest names disks by probe order: find it by serial.
			inGuest(t, domain, "mkdir -p /tmp")
			dev := inGuest(t, domain, `for d in /sys/block/vd*; do [ "$(cat $d/serial 2>/dev/null)" = "`+v.UUID[:20]+`" ] && echo /dev/${d##*/}; done; true`)
			if dev == "" {
				t.Fatalf("no disk with serial %s in the guest", v.UUID[:20])
			}
			before := inGuest(t, domain, "head -c 2097152 /dev/urandom > /tmp/a && dd if=/tmp/a of="+dev+
				" bs=1M conv=fsync 2>/dev/null && sha256sum < /tmp/a")
			// A writer keeps rewriting MiB 16..17 with the same bytes
			// through the extend; every dd that fails is counted.
			inGuest(t, domain, "head -c 2097152 /dev/urandom > /tmp/b; rm -f /tmp/stop /tmp/stopped /tmp/errors /tmp/writes; "+
				"( while [ ! -e /tmp/stop ]; do dd if=/tmp/b of="+dev+" bs=1M seek=16 conv=fsync 2>/dev/null && echo >> /tmp/writes || echo >> /tmp/errors; done; "+
				"touch /tmp/stopped ) > /dev/null 2>&1 &")
			defer guestExec(t, domain, "/bin/sh", "-c", "touch /tmp/stop") // before the detach, if the test stops early
			time.Sleep(2 * time.Second)

			e := decode[volume](t, ok(t, "volume", "extend", name, "--size", "128MiB", "-o", "json"))
			if e.Status != "in-use" || e.SizeBytes < 128<<20 {
				t.Errorf("after extend: %+v", e)
			}
			var size string
			for i := 0; i < 50; i++ {
				if size = inGuest(t, domain, "blockdev --getsize64 "+dev); size == strconv.Itoa(128<<20) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if size != strconv.Itoa(128<<20) {
				t.Errorf("the guest sees %s bytes, want %d", size, 128<<20)
			}
			time.Sleep(2 * time.Second)
			inGuest(t, domain, "touch /tmp/stop; while [ ! -e /tmp/stopped ]; do sleep 1; done; rm -f /tmp/stop /tmp/stopped")
			if errs := inGuest(t, domain, "wc -l < /tmp/errors 2>/dev/null || echo 0"); errs != "0" {
				t.Errorf("the guest's writer saw %s failed writes during the extend", errs)
			}
			if n := inGuest(t, domain, "wc -l < /tmp/writes"); n == "0" {
				t.Error("the writer wrote nothing: the test proves nothing")
			}
			// Read from the disk, not the guest's page cache.
			inGuest(t, domain, "sync; echo 3 > /proc/sys/vm/drop_caches")
			if got := inGuest(t, domain, "dd if="+dev+" bs=1M count=2 2>/dev/null | sha256sum"); got != before {
				t.Errorf("data written before the extend changed")
			}
			want := inGuest(t, domain, "sha256sum < /tmp/b")
			if got := inGuest(t, domain, "dd if="+dev+" bs=1M skip=16 count=2 2>/dev/null | sha256sum"); got != want {
				t.Errorf("data written during the extend differs")
			}
			// The new space takes data.
			after := inGuest(t, domain, "dd if=/tmp/a of="+dev+" bs=1M seek=100 conv=fsync 2>/dev/null && "+
				"echo 3 > /proc/sys/vm/drop_caches && dd if="+dev+" bs=1M skip=100 count=2 2>/dev/null | sha256sum")
			if after != before {
				t.Errorf("data written past the old end reads back differently")
			}
			// A second extend to the same size is refused: nothing to do.
			if r := blk(t, "volume", "extend", name, "--size", "128MiB"); r.code != 2 {
				t.Errorf("extend to the same size: exit %d %s", r.code, r.errOut)
			}
		})
	}
}

// An offline domain (defined, never started) for attach tests; removed
// when the test ends.
func shutOffDomain(t *testing.T, osBoot string) string {
	t.Helper()
	name := uniq("off")
	xml := "<domain type='qemu'><name>" + name + "</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>" +
		"<os><type arch='x86_64' machine='q35'>hvm</type>" + osBoot + "</os>" +
		"<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>" +
		"<disk type='file' device='cdrom'><target dev='sda' bus='sata'/></disk>" +
		"<controller type='scsi' index='0' model='virtio-scsi'/><memballoon model='none'/></devices></domain>"
	sh(t, "sh", "-c", "cat > /tmp/"+name+".xml <<'XML'\n"+xml+"\nXML\nvirsh -c qemu:///system define /tmp/"+name+".xml >/dev/null && rm /tmp/"+name+".xml")
	t.Cleanup(func() { sh(t, "virsh", "-c", "qemu:///system", "undefine", name) })
	return name
}

// diskWithSerial is the <disk> element of x with that serial ("": the one
// with none, the CD-ROM here).
func diskWithSerial(x, serial string) string {
	for _, d := range strings.Split(x, "<disk ")[1:] {
		d = d[:strings.Index(d, "</disk>")]
		if serial == "" && !strings.Contains(d, "<serial>") || serial != "" && strings.Contains(d, "<serial>"+serial+"</serial>") {
			return d
		}
	}
	return ""
}

// A shut-off domain gets the disk in its persistent definition only, the
// session is made so it can start; --boot gives the disk boot order 1 and
// turns <os><boot dev=...> into per-device orders after it; detach is
// config-only.
func TestAttachDetachShutOffDomainAndBoot(t *testing.T) {
	for _, boot := range []bool{false, true} {
		t.Run(fmt.Sprintf("boot=%v", boot), func(t *testing.T) {
			domain := shutOffDomain(t, "<boot dev='cdrom'/><boot dev='hd'/>")
			name := uniq("offv")
			v := decode[volume](t, ok(t, "volume", "create", name, "--size", "16MiB", "-o", "json"))
			defer blk(t, "volume", "delete", name, "--yes")
			args := []string{"volume", "attach", name, "--instance", domain, "-o", "json"}
			if boot {
				args = append(args, "--boot")
			}
			a := decode[attached](t, ok(t, args...))
			if a.Status != "in-use" || a.Attachment == nil {
				t.Fatalf("attach: %+v", a)
			}
			if state := strings.TrimSpace(sh(t, "virsh", "-c", "qemu:///system", "domstate", domain)); state != "shut off" {
				t.Errorf("domain is %q", state)
			}
			x := sh(t, "virsh", "-c", "qemu:///system", "dumpxml", "--inactive", domain)
			if !strings.Contains(x, "<serial>"+v.UUID[:20]+"</serial>") {
				t.Fatalf("the persistent definition lacks the disk:\n%s", x)
			}
			if !strings.Contains(sh(t, "sh", "-c", "iscsiadm -m session 2>/dev/null; true"), v.UUID) {
				t.Error("no iSCSI session for the domain to start with")
			}
			if boot {
				// The volume first; the CD-ROM, first in <os><boot>, second.
				if disk := diskWithSerial(x, v.UUID[:20]); !strings.Contains(disk, "<boot order='1'/>") ||
					!strings.Contains(diskWithSerial(x, ""), "<boot order='2'/>") || strings.Contains(x, "<boot dev=") {
					t.Errorf("boot orders wrong:\n%s", x)
				}
			} else if strings.Contains(x, "<boot order=") || !strings.Contains(x, "<boot dev='cdrom'/>") {
				t.Errorf("a plain attach changed the boot order:\n%s", x)
			}
			d := decode[attached](t, ok(t, "volume", "detach", name, "-o", "json"))
			if d.Status != "available" {
				t.Errorf("after detach: %+v", d)
			}
			if left := leftovers(t, v.UUID, domain); len(left) > 0 {
				t.Errorf("detach left: %v", left)
			}
		})
	}
}

// A volume made from a raw or qcow2 image holds the bytes qemu-img convert
// writes to a file: on thick and thin LVs and on NFS.
func TestCreateFromImageGivesQemuImgsBytes(t *testing.T) {
	dir := "/tmp/" + uniq("img")
	// 40MiB: random data, a zero hole, random data, so zero skipping is
	// exercised too; not a whole number of extents.
	sh(t, "sh", "-c", "mkdir -p "+dir+" && cd "+dir+" && head -c 16777216 /dev/urandom > img.raw && "+
		"truncate -s 33554432 img.raw && head -c 8388608 /dev/urandom >> img.raw && truncate -s 41943040 img.raw && "+
		"qemu-img convert -f raw -O qcow2 img.raw img.qcow2 && qemu-img convert -f qcow2 -O raw img.qcow2 ref.raw")
	defer sh(t, "rm", "-rf", dir)
	want := strings.Fields(sh(t, "sha256sum", dir+"/ref.raw"))[0]
	for _, c := range []struct{ format, backend, thin string }{
		{"raw", "lvm-1", ""}, {"qcow2", "lvm-1", ""}, {"qcow2", "lvm-1", "--thin"}, {"raw", "nfs-1", ""}, {"qcow2", "nfs-1", ""},
	} {
		t.Run(c.format+"/"+c.backend+c.thin, func(t *testing.T) {
			name := uniq("fromimg")
			args := []string{"volume", "create", name, "--from-image", dir + "/img." + c.format, "--backend", c.backend, "-o", "json"}
			if c.thin != "" {
				args = append(args, c.thin)
			}
			if c.format == "raw" {
				args = append(args, "--image-format", "raw")
			}
			v := decode[struct {
				volume
				Source string `json:"source"`
			}](t, ok(t, args...))
			defer blk(t, "volume", "delete", name, "--yes")
			if v.SizeBytes < 40<<20 || v.Source != "image:"+dir+"/img."+c.format || v.Status != "available" {
				t.Errorf("volume = %+v", v)
			}
			got := strings.Fields(sh(t, "sh", "-c", "head -c 41943040 "+v.Path+" | sha256sum"))[0]
			if got != want {
				t.Errorf("volume holds %s, qemu-img convert wrote %s", got, want)
			}
		})
	}
	// Refused: a smaller --size, a relative path, a backing file.
	sh(t, "sh", "-c", "cd "+dir+" && qemu-img create -f qcow2 -b img.qcow2 -F qcow2 over.qcow2 >/dev/null")
	for _, args := range [][]string{
		{"--from-image", dir + "/img.qcow2", "--size", "8MiB"},
		{"--from-image", "img.qcow2"},
		{"--from-image", dir + "/over.qcow2"},
		{"--from-image", dir},
	} {
		name := uniq("bad")
		if r := blk(t, append([]string{"volume", "create", name}, args...)...); r.code != 2 {
			t.Errorf("%v: exit %d %s", args, r.code, r.errOut)
		}
		if r := blk(t, "volume", "show", name); r.code != 4 {
			t.Errorf("%v left a row", args)
		}
	}
}
