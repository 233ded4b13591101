package volume

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
)

// withSocket is a host whose libvirt socket answers (or not).
type withSocket struct {
	*exectest.Fake
	libvirt bool
}

func (w withSocket) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	if !w.libvirt {
		return w.Fake.DialUnix(ctx, path)
	}
	a, b := net.Pipe()
	b.Close()
	return a, nil
}

var (
	poolArgs = append(append([]string{}, lvsArgs...), "blk/pool")
	tgtShow  = []string{"tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "system"}
	lvmconf  = []string{"lvmconfig", "--typeconfig", "full", "devices/global_filter", "devices/filter", "devices/scan_lvs"}
)

const (
	// lvmconfig on Debian 12 as installed: accepts every device.
	lvmDefaults = "global_filter=[\"a|.*|\"]\nfilter=[\"a|.*|\"]\nscan_lvs=0\n"
	lvmFiltered = "global_filter=[\"a|^/dev/vda2$|\",\"r|.*|\"]\nfilter=[\"a|.*|\"]\nscan_lvs=0\n"
	vgsJSON     = `{"report":[{"vg":[{"vg_name":"blk","vg_size":"8585740288","vg_free":"3208642560","lv_count":"3"}]}]}`
	poolJSON    = `{"report":[{"lv":[{"lv_name":"pool","vg_name":"blk","lv_size":"4294967296","lv_tags":"","pool_lv":"","lv_attr":"twi-aotz--","data_percent":"12.50"}]}]}`
)

// checkService has one host, stor1, that is both lvm-1's host and a
// compute host.
func checkService(t *testing.T, f *exectest.Fake, libvirt bool) *Service {
	s := newService(t, f, nil)
	s.Config.Compute = []string{"stor1"}
	s.Hosts.New = func(string, config.Host) exec.Runner { return withSocket{f, libvirt} }
	return s
}

func healthyStorage(f *exectest.Fake) {
	f.Expect("", "true")
	f.Expect("  LVM version:     2.03.16(2) (2022-05-18)\n", "lvm", "version")
	f.Expect(vgsJSON, vgsArgs...)
	f.Expect(poolJSON, poolArgs...)
	f.Expect("thin-pool        v1.23.0\nsnapshot         v1.16.0\nlinear           v1.4.0\n", "dmsetup", "targets")
	f.Expect("System:\n    State: ready\n", tgtShow...)
}

func healthyCompute(f *exectest.Fake) {
	f.Expect("iscsiadm version 2.1.8\n", "iscsiadm", "--version")
	f.Expect("1234\n", "pidof", "iscsid")
	f.Expect("## DO NOT EDIT\nInitiatorName=iqn.1993-08.org.debian:01:5e1f0a2b3c4d\n", "cat", "/etc/iscsi/initiatorname.iscsi")
}

func TestHostCheckPassesAHealthyHost(t *testing.T) {
	f := exectest.New(t, "stor1")
	healthyStorage(f)
	healthyCompute(f)
	f.Expect(lvmFiltered, lvmconf...)
	reps, err := checkService(t, f, true).CheckHosts(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(reps[0].Warnings) != 0 {
		t.Errorf("warnings %q", reps[0].Warnings)
	}
	var got []string
	for _, c := range reps[0].Checks {
		if !c.OK {
			t.Errorf("%+v failed", c)
		}
		got = append(got, c.Check+"="+c.Detail)
	}
	want := "lvm2=2.03.16(2) volume group blk=2.99GiB free of 8.00GiB thin pool blk/pool=12% used of 4GiB dm target thin-pool=loaded " +
		"dm target snapshot=loaded tgtd=running iscsiadm=2.1.8 iscsid=running initiator name=iqn.1993-08.org.debian:01:5e1f0a2b3c4d " +
		"libvirt=/var/run/libvirt/libvirt-sock"
	if strings.Join(got, " ") != want {
		t.Errorf("checks:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

func TestHostCheckNamesWhatToCreateInstallOrStart(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect("", "true")
	f.Expect("  LVM version:     2.03.16(2) (2022-05-18)\n", "lvm", "version")
	f.ExpectFail(5, "", `  Volume group "blk" not found`+"\n  Cannot process volume group blk\n", vgsArgs...)
	f.Expect("linear           v1.4.0\n", "dmsetup", "targets")
	f.ExpectFail(1, "", "modprobe: FATAL: Module dm_thin_pool not found", "modprobe", "--dry-run", "dm_thin_pool")
	f.Expect("", "modprobe", "--dry-run", "dm_snapshot")
	f.ExpectFail(107, "", "tgtadm: can't send the request to the tgt daemon, Transport endpoint is not connected", tgtShow...)
	f.Expect("iscsiadm version 2.1.8\n", "iscsiadm", "--version")
	f.ExpectFail(1, "", "", "pidof", "iscsid")
	f.ExpectFail(3, "", "", "systemctl", "is-active", "--quiet", "iscsid.socket")
	f.ExpectFail(1, "", "cat: /etc/iscsi/initiatorname.iscsi: No such file or directory", "cat", "/etc/iscsi/initiatorname.iscsi")
	f.Expect(lvmFiltered, lvmconf...)
	reps, err := checkService(t, f, false).CheckHosts(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), `host "stor1": 6 checks failed (volume group blk, dm target thin-pool, tgtd, iscsid, initiator name, libvirt)`) {
		t.Errorf("error: %v", err)
	}
	err = failures(reps)
	for _, want := range []string{
		"volume group blk: not found (create it: blk backend init lvm-1 --device DEVICE...)",
		"dm target thin-pool: not in the kernel (use a kernel with dm_thin_pool",
		"tgtd: not running: tgtadm: can't send the request to the tgt daemon",
		"(start it: systemctl enable --now tgt)",
		"iscsid: not running (start it: systemctl enable --now iscsid.socket)",
		"initiator name: /etc/iscsi/initiatorname.iscsi not readable",
		"libvirt: /var/run/libvirt/libvirt-sock not reachable",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}
	if strings.Contains(err.Error(), "dm target snapshot") {
		t.Errorf("a snapshot module that loads on first use failed the check: %s", err)
	}
}

func TestHostCheckToolsMissingAndPoolFull(t *testing.T) {
	f := exectest.New(t, "stor1")
	f.Expect("", "true")
	f.Expect("  LVM version:     2.03.16(2) (2022-05-18)\n", "lvm", "version")
	f.Expect(vgsJSON, vgsArgs...)
	f.Expect(strings.Replace(poolJSON, "12.50", "97.00", 1), poolArgs...)
	f.ExpectFail(127, "", "", "dmsetup", "targets")
	f.ExpectFail(127, "", "", tgtShow...)
	f.ExpectFail(127, "", "", "iscsiadm", "--version")
	f.Expect(lvmFiltered, lvmconf...)
	reps, _ := checkService(t, f, true).CheckHosts(context.Background(), nil)
	err := failures(reps)
	for _, want := range []string{
		"thin pool blk/pool: 97% used of 4GiB (almost full: lvextend -L +SIZE blk/pool)",
		"device-mapper: dmsetup not installed (install dmsetup)",
		"tgtd: tgtadm not installed (install tgt)",
		"iscsiadm: not installed (install open-iscsi)",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// failures is every failed check as "check: detail (fix)".
func failures(reps []HostReport) error {
	var s []string
	for _, r := range reps {
		for _, c := range r.Checks {
			if !c.OK {
				s = append(s, fmt.Sprintf("%s: %s (%s)", c.Check, c.Detail, c.Fix))
			}
		}
	}
	if s == nil {
		return nil
	}
	return errors.New(strings.Join(s, "; "))
}

func TestHostCheckErrorWithOneFailureSaysTheFix(t *testing.T) {
	err := checkError("stor1", []Check{{Check: "lvm2", OK: true}, {Check: "tgtd", Detail: "not running", Fix: "start it"}})
	if err == nil || err.Error() != `host "stor1": tgtd: not running (start it)` {
		t.Errorf("%v", err)
	}
}

// With an nfs backend, a compute host needs mount.nfs, and the export's
// host exportfs.
func TestHostCheckWantsMountNFSOnComputeHostsWithAnNFSBackend(t *testing.T) {
	f := exectest.New(t, "stor1")
	healthyStorage(f)
	healthyCompute(f)
	f.Expect(lvmFiltered, lvmconf...)
	f.Expect("", "/usr/sbin/exportfs", "-s")
	f.ExpectFail(127, "", "", "/sbin/mount.nfs", "-V")
	s := checkService(t, f, true)
	s.Config.Backends["nfs-1"] = config.Backend{Type: "nfs", Host: "stor1", Export: "192.0.2.10:/srv/blk", Path: "/srv/blk"}
	reps, err := s.CheckHosts(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "mount.nfs") {
		t.Fatalf("err = %v", err)
	}
	for _, c := range reps[0].Checks {
		if c.Check == "mount.nfs" && (c.OK || c.Fix != "install nfs-common") {
			t.Errorf("mount.nfs check = %+v", c)
		}
	}
}
