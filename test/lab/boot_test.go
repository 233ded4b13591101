//go:build lab

package lab

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestBootFromVolume boots lab-boot, a domain with no disk and no kernel,
// from a volume made from the lab's boot image, whose MBR alone prints
// BLK-BOOTED-FROM-VOLUME to the serial console: the marker proves that the
// guest ran the volume's code. Over iSCSI (LVM) and from an NFS file.
func TestBootFromVolume(t *testing.T) {
	const domain, marker = "lab-boot", "BLK-BOOTED-FROM-VOLUME"
	console := "/run/" + domain + ".console"
	for _, backend := range []string{"lvm-1", "nfs-1"} {
		t.Run(backend, func(t *testing.T) {
			sh(t, "sh", "-c", "virsh -c qemu:///system destroy "+domain+" >/dev/null 2>&1; true")
			name := uniq("boot")
			v := decode[volume](t, ok(t, "volume", "create", name, "--backend", backend,
				"--from-image", "/run/blk-images/boot.qcow2", "-o", "json"))
			defer blk(t, "volume", "delete", name, "--yes")
			// The image's virtual size, 1 MiB, rounded up to whole extents.
			if v.SizeBytes < 1<<20 || v.SizeBytes > 4<<20 {
				t.Errorf("size = %d, want the image's 1 MiB (rounded up by LVM)", v.SizeBytes)
			}

			ok(t, "volume", "attach", name, "--instance", domain, "--boot")
			x := sh(t, "virsh", "-c", "qemu:///system", "dumpxml", "--inactive", domain)
			disk := regexp.MustCompile(`(?s)<disk .*?</disk>`).FindString(x)
			if !strings.Contains(disk, v.UUID[:20]) || !regexp.MustCompile(`<boot order=.1./>`).MatchString(disk) {
				t.Fatalf("the volume is not the first boot device:\n%s", x)
			}

			sh(t, "sh", "-c", ": > "+console)
			sh(t, "virsh", "-c", "qemu:///system", "start", domain)
			defer sh(t, "sh", "-c", "virsh -c qemu:///system destroy "+domain+" >/dev/null 2>&1; true")
			deadline := time.Now().Add(2 * time.Minute)
			for !strings.Contains(sh(t, "cat", console), marker) {
				if time.Now().After(deadline) {
					t.Fatalf("%s did not boot from the volume; console:\n%s", domain, sh(t, "cat", console))
				}
				time.Sleep(time.Second)
			}

			// The guest only halts: power it off, then detach from the
			// shut-off domain.
			sh(t, "virsh", "-c", "qemu:///system", "destroy", domain)
			ok(t, "volume", "detach", name)
			if strings.Contains(sh(t, "virsh", "-c", "qemu:///system", "dumpxml", "--inactive", domain), v.UUID[:20]) {
				t.Error("detach left the disk in the domain's definition")
			}
			if backend == "lvm-1" {
				if left := leftovers(t, v.UUID, domain); len(left) > 0 {
					t.Errorf("detach left: %v", left)
				}
			} else if left := nfsLeftovers(t, v.UUID, domain); len(left) > 0 {
				t.Errorf("detach left: %v", left)
			}
		})
	}
}
