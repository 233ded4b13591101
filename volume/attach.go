package volume

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/iscsi"
	"github.com/blk-project/blk/state"
)

type AttachOptions struct {
	Volume   string
	Instance string
	Host     string // compute host; default: search every compute host
	Device   string // vdX or sdX; default: the first free one
	Bus      string // virtio (default) or scsi
	ReadOnly bool
	// Boot makes the volume the domain's first boot device; the domain
	// must be shut off.
	Boot bool
}

var deviceRE = regexp.MustCompile(`^(vd|sd)[b-z]$`)

// Validate checks the options alone, before anything is opened or run.
func (o *AttachOptions) Validate() error {
	if o.Bus == "" {
		o.Bus = "virtio"
	}
	if o.Bus != "virtio" && o.Bus != "scsi" {
		return invalid("--bus %q: want virtio or scsi", o.Bus)
	}
	if o.Instance == "" {
		return invalid("--instance is required")
	}
	if err := CheckText("--instance", o.Instance); err != nil {
		return err
	}
	if o.Device != "" {
		want := map[string]string{"virtio": "vd", "scsi": "sd"}[o.Bus]
		if !deviceRE.MatchString(o.Device) || !strings.HasPrefix(o.Device, want) {
			return invalid("--device %q: want %sb..%sz on the %s bus", o.Device, want, want, o.Bus)
		}
	}
	return nil
}

// lunID is the one LUN of each volume's target (LUN 0 is tgt's controller).
const lunID = 1

// deviceWait bounds how long udev may take to make the by-path link.
var deviceWait = 30 * time.Second

// rollBackKilledAttach undoes what a killed attach of v made, as a detach
// would: its Claim takes the attach over only from a process proven gone
// (an attach journals itself in the transaction that reserves the volume),
// and a step that fails stops it with the volume still held (detaching), so
// it cannot go to a second host while the first may still reach it.
func (s *Service) rollBackKilledAttach(ctx context.Context, v state.Volume) error {
	_, err := s.Detach(ctx, DetachOptions{Volume: v.UUID, killedAttach: true})
	var ce *state.ConflictError
	if err != nil && !errors.As(err, &ce) {
		return fmt.Errorf("roll back the killed attach of volume %q: %w", v.Name, err)
	}
	return err
}

// Attach makes the volume reachable from the compute host (iSCSI export and
// login, or the NFS export's mount) and plugs the disk into the domain, live
// and persistent. Every step made is undone in reverse if a later one fails.
// Attaching a volume already attached to the same instance succeeds with
// already=true.
func (s *Service) Attach(ctx context.Context, o AttachOptions) (_ Volume, already bool, err error) {
	if err = o.Validate(); err != nil {
		return Volume{}, false, err
	}
	v, err := s.State.Volume(ctx, o.Volume)
	if err != nil {
		return Volume{}, false, err
	}
	if v.Status == state.InUse && v.Attachment != nil {
		if v.Attachment.Instance == o.Instance && (o.Host == "" || o.Host == v.Attachment.Host) {
			return volumeOf(v), true, nil
		}
		return volumeOf(v), false, conflict("volume %q is attached to %s on %s: detach it first", v.Name, v.Attachment.Instance, v.Attachment.Host)
	}
	if v.Status == state.Attaching && !s.Hosts.DryRun() {
		// A killed attach, run again: what it made is rolled back as
		// 'detach --force' would (its Claim takes it over only from a
		// process proven gone), then the attach starts afresh.
		if err = s.rollBackKilledAttach(ctx, v); err != nil {
			return volumeOf(v), false, err
		}
		if v, err = s.State.Volume(ctx, v.UUID); err != nil {
			return volumeOf(v), false, err
		}
	}
	if v.Status != state.Available {
		return volumeOf(v), false, &state.ConflictError{Volume: v.Name, Status: v.Status, Holder: s.State.Holder(ctx, v.UUID),
			Reason: "is " + v.Status + ": only an available volume can be attached"}
	}
	b, err := s.backendOf(v)
	if err != nil {
		return volumeOf(v), false, err
	}
	p, err := s.provider(v.Backend, b)
	if err != nil {
		return volumeOf(v), false, err
	}
	host, live, persistent, err := s.findDomain(ctx, o.Instance, o.Host)
	if err != nil {
		return volumeOf(v), false, err
	}
	if o.Boot {
		// What a domain boots from is read when it starts: changing it
		// under a running one would take effect at some later boot.
		hv, herr := s.Hosts.Hypervisor(ctx, host)
		if herr != nil {
			return volumeOf(v), false, herr
		}
		if active, aerr := hv.Active(ctx, o.Instance); aerr != nil || active {
			if aerr != nil {
				return volumeOf(v), false, aerr
			}
			return volumeOf(v), false, conflict("instance %q is running on %s: --boot changes what it boots from, so shut it down first", o.Instance, host)
		}
	}
	// An attach in progress holds its device in the state file only.
	reserved, err := s.State.ReservedDevices(ctx, host, o.Instance)
	if err != nil {
		return volumeOf(v), false, err
	}
	dev, err := pickDevice(o, reserved, live, persistent)
	if err != nil {
		return volumeOf(v), false, err
	}

	// The connection is recorded before anything is made: a detach --force
	// after a killed attach knows from it what to look for.
	conn := p.connection(v, o)
	conn.Boot = o.Boot
	rec := state.AttachmentRecord{Volume: v.UUID, Instance: o.Instance, Host: host, Device: dev, Status: state.Attaching, Conn: conn,
		DevicePath: conn.DevicePath}
	_, op, err := s.State.ReserveOp(ctx, v.UUID, rec, "attach")
	if err != nil {
		return volumeOf(v), false, err
	}
	r := newReverter()
	defer r.fail(ctx, &err)
	uuid := v.UUID // v is reassigned below, and may come back empty
	r.add("reservation", func(ctx context.Context) error {
		if left := r.leftovers(); len(left) > 0 {
			// Released, the volume could be attached elsewhere while this
			// export still lets the first host in: keep it held instead.
			rec.Step = "rollback-incomplete"
			return errors.Join(fmt.Errorf("%s of this attach could not be removed: volume %q stays attaching; "+
				"'blk volume detach --force %s' removes what is left", strings.Join(left, ", "), v.Name, v.Name),
				s.State.UpdateAttachment(ctx, rec))
		}
		_, uerr := s.State.Unreserve(ctx, uuid)
		return uerr
	})
	r.journal(op)
	if err = p.connect(ctx, r, v, &rec); err != nil {
		return volumeOf(v), false, fmt.Errorf("attach volume %q to %q: %w", v.Name, o.Instance, err)
	}
	if v, err = s.State.FinishAttach(ctx, v.UUID); err != nil {
		return volumeOf(v), false, err
	}
	r.success()
	return volumeOf(v), false, nil
}

// pickDevice is the asked device if no disk of the domain takes it, or else
// the first free one.
func pickDevice(o AttachOptions, reserved []string, live, persistent string) (string, error) {
	if o.Device == "" {
		return hypervisor.FreeDevice(o.Bus, reserved, live, persistent)
	}
	taken, err := hypervisor.Taken(o.Device, live, persistent)
	if err == nil && taken {
		err = conflict("device %s of %s is taken", o.Device, o.Instance)
	}
	return o.Device, err
}

// connect does the external steps of an iSCSI attach, registering each undo.
func (s *Service) connect(ctx context.Context, r *reverter, b config.Backend, v state.Volume, rec *state.AttachmentRecord) error {
	storage, err := s.Hosts.Runner(b.Host)
	if err != nil {
		return err
	}
	compute, err := s.Hosts.Runner(rec.Host)
	if err != nil {
		return err
	}
	hv, err := s.Hosts.Hypervisor(ctx, rec.Host)
	if err != nil {
		return err
	}
	target, initiator := iscsi.Target{Run: storage}, iscsi.Initiator{Run: compute}
	conn := &rec.Conn
	step := func(name string) error {
		rec.Step = name
		return s.State.UpdateAttachment(ctx, *rec)
	}

	if conn.InitiatorIQN, err = initiator.Name(ctx); err != nil {
		return fmt.Errorf("read initiator name: %w", err)
	}
	// It becomes the target's only ACL: a garbled file must not bind
	// something else, or nothing.
	if err = config.CheckIQN(conn.InitiatorIQN); err != nil {
		return fmt.Errorf("%s: initiator name in /etc/iscsi/initiatorname.iscsi: %w", rec.Host, err)
	}
	tid, created, err := target.Create(ctx, conn.TargetIQN)
	if err != nil {
		return fmt.Errorf("tgtadm new target: %w", err)
	}
	if !created {
		if tid, err = s.replaceLeftoverTarget(ctx, target, v, conn.TargetIQN); err != nil {
			return err
		}
	}
	conn.TargetID = tid
	// Deleting the target (forced) also drops its LUN and bindings.
	r.add("target", func(ctx context.Context) error { return target.Delete(ctx, tid) })
	if err = step("target"); err != nil {
		return err
	}
	if err = target.AddLUN(ctx, tid, lunID, v.Path); err != nil {
		return fmt.Errorf("tgtadm new logicalunit: %w", err)
	}
	if err = target.Bind(ctx, tid, conn.InitiatorIQN); err != nil {
		return fmt.Errorf("tgtadm bind initiator: %w", err)
	}
	var chap *iscsi.CHAP
	if conn.AuthMethod == "CHAP" {
		chap = &iscsi.CHAP{User: conn.AuthUsername, Password: conn.AuthPassword}
		r.add("chap account", func(ctx context.Context) error { return target.DeleteAccount(ctx, chap.User) })
		if err = target.AddAccount(ctx, tid, chap.User, chap.Password); err != nil {
			return fmt.Errorf("tgtadm account: %w", err)
		}
	}

	r.add("iscsi session", func(ctx context.Context) error {
		return initiator.Logout(ctx, conn.TargetPortal, conn.TargetIQN)
	})
	if err = initiator.Login(ctx, conn.TargetPortal, conn.TargetIQN, chap); err != nil {
		return err
	}
	link := iscsi.ByPath(conn.TargetPortal, conn.TargetIQN, lunID)
	conn.DevicePath, rec.DevicePath = link, link
	if _, err = initiator.WaitDevice(ctx, link, deviceWait); err != nil {
		return err
	}
	r.add("scsi device", func(ctx context.Context) error { return initiator.RemoveDevice(ctx, link) })
	if err = step("logged-in"); err != nil {
		return err
	}

	if err = s.plug(ctx, r, hv, rec, hypervisor.Disk{Source: link}); err != nil {
		return err
	}
	return step("libvirt-attached")
}

// plug adds disk (its source set by the provider) to the domain of rec,
// with the volume's serial, and registers its undo: live and persistent, or
// to the persistent definition only when the domain is shut off (the
// session or mount is there, so the domain can start with it). As the boot
// disk it takes boot order 1, which the definition frees first.
func (s *Service) plug(ctx context.Context, r *reverter, hv hypervisor.Hypervisor, rec *state.AttachmentRecord, disk hypervisor.Disk) error {
	disk.Target, disk.Bus, disk.Serial, disk.ReadOnly = rec.Device, rec.Conn.Bus, hypervisor.SerialOf(rec.Volume), rec.Conn.ReadOnly
	active, err := hv.Active(ctx, rec.Instance)
	if err != nil {
		return err
	}
	if rec.Conn.Boot {
		disk.BootOrder = 1
	}
	xml, err := disk.XML()
	if err != nil {
		return err
	}
	if rec.Conn.Boot {
		if active {
			// Started since the attach looked: the define would not
			// reach the running domain, which would go on without the disk.
			return conflict("instance %q was started on %s during the attach: --boot changes what it boots from, so shut it down first",
				rec.Instance, rec.Host)
		}
		return s.defineBootDisk(ctx, r, hv, rec, xml)
	}
	// Registered first: a failed call (a lost connection) may still have
	// plugged the disk, and unplug finds it by serial or does nothing. A
	// domain that is gone holds no disk.
	r.add("libvirt disk", func(ctx context.Context) error {
		// Asked again: after Ctrl-C the call's connection was closed.
		uhv, herr := s.Hosts.Hypervisor(ctx, rec.Host)
		if herr != nil {
			return herr
		}
		if uerr := s.unplug(ctx, uhv, rec.Instance, disk.Serial); !errors.Is(uerr, hypervisor.ErrNoDomain) {
			return uerr
		}
		return nil
	})
	return hv.AttachDevice(ctx, rec.Instance, xml, hypervisor.Flags{Live: active, Persistent: true})
}

// defineBootDisk redefines the shut-off domain of rec with the disk as
// its first boot device, in one definition: boot order 1 freed (see
// hypervisor.FreeFirstBoot) and the disk added. Attaching the disk after a
// define would not do: a definition left with no boot element at all gets
// libvirt's default <os><boot dev='hd'/>, which refuses any per-device
// order. The old definition is registered for the undo.
func (s *Service) defineBootDisk(ctx context.Context, r *reverter, hv hypervisor.Hypervisor, rec *state.AttachmentRecord, diskXML string) error {
	old, err := hv.DomainXML(ctx, rec.Instance, true)
	if err != nil {
		return err
	}
	withDisk, err := hypervisor.WithBootDisk(old, diskXML)
	if err != nil {
		return err
	}
	r.add("boot order", func(ctx context.Context) error {
		uhv, herr := s.Hosts.Hypervisor(ctx, rec.Host)
		if herr != nil {
			return herr
		}
		return uhv.DefineXML(ctx, old)
	})
	if err := hv.DefineXML(ctx, withDisk); err != nil {
		return fmt.Errorf("define %s with the volume as its first boot disk: %w", rec.Instance, err)
	}
	return nil
}

// replaceLeftoverTarget deals with a target of this volume that this attach
// did not make: the volume is reserved by this attach, so it is what a killed
// or failed attach left. Its ACLs and account may let another host in, so it
// is never reused: with nobody logged in it is removed and made again; in use,
// the attach is refused.
func (s *Service) replaceLeftoverTarget(ctx context.Context, target iscsi.Target, v state.Volume, iqn string) (int, error) {
	infos, err := target.Show(ctx)
	if err != nil {
		return 0, err
	}
	old, ok := infos[iqn]
	if !ok { // gone meanwhile
		tid, _, cerr := target.Create(ctx, iqn)
		return tid, cerr
	}
	if len(old.Sessions) > 0 {
		return 0, conflict("volume %q is still exported by a target an earlier attach left (tid %d on %s), and %s is logged in to it: "+
			"blk will not give a volume to two hosts; log that initiator out, then remove the target "+
			"(tgtadm --lld iscsi --op delete --mode target --force --tid %d on %s)",
			v.Name, old.ID, target.Run.Host(), strings.Join(old.Sessions, ", "), old.ID, target.Run.Host())
	}
	if err = target.Delete(ctx, old.ID); err != nil {
		return 0, fmt.Errorf("remove the target an earlier attach left: %w", err)
	}
	tid, _, err := target.Create(ctx, iqn)
	if err != nil {
		return 0, fmt.Errorf("tgtadm new target: %w", err)
	}
	return tid, nil
}

// findDomain looks for the instance on the compute hosts (or the one named)
// and returns where it runs with its live and persistent XML.
func (s *Service) findDomain(ctx context.Context, instance, only string) (host, live, persistent string, err error) {
	hosts := s.Config.Compute
	if len(hosts) == 0 {
		hosts = slices.Sorted(maps.Keys(s.Config.Hosts))
	}
	if only != "" {
		if _, ok := s.Config.Hosts[only]; !ok {
			return "", "", "", fmt.Errorf("host %q: %w", only, ErrNotFound)
		}
		hosts = []string{only}
	}
	for _, h := range hosts {
		hv, err := s.Hosts.Hypervisor(ctx, h)
		if err != nil {
			return "", "", "", err
		}
		live, err := hv.DomainXML(ctx, instance, false)
		if errors.Is(err, hypervisor.ErrNoDomain) {
			continue
		}
		if err != nil {
			return "", "", "", err
		}
		persistent, err := hv.DomainXML(ctx, instance, true)
		if err != nil {
			return "", "", "", err
		}
		return h, live, persistent, nil
	}
	return "", "", "", fmt.Errorf("instance %q: %w on hosts %s", instance, ErrNotFound, strings.Join(hosts, ", "))
}

// newSecret is replaced by tests, which must know the password.
var newSecret = secret

// secret makes a CHAP password: 16 characters (the most some initiators
// take) from an alphabet that needs no quoting anywhere.
func secret() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 16)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
