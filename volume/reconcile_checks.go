package volume

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/internal/retry"
	"github.com/blk-project/blk/iscsi"
	"github.com/blk-project/blk/lvm"
	"github.com/blk-project/blk/nfs"
	"github.com/blk-project/blk/state"
)

// The checks of reconcile on the hosts, one per kind of object blk makes:
// each reads reality on one host and returns how to compare it with the
// state file (see check).

// needsStorage are the statuses of a volume whose LV or file must exist.
var needsStorage = []string{state.Available, state.InUse, state.Attaching, state.Detaching, state.Extending}

// found is a volume's storage as a host shows it.
type found struct {
	object string // vg/lv or file path
	size   int64
	thin   bool
	name   string // from a blk-name- tag; "" when none
}

// lookLVs lists the LVs tagged blk in each lvm backend's group on host.
// Only volume-<uuid> LVs are volumes: the thin pool carries the tag too,
// and snapshots are another check's.
func lookLVs(ctx context.Context, s *Service, host string) (func(*snapshot) []Drift, error) {
	seen := map[string]map[string]found{} // backend -> uuid -> LV
	for bn, b := range s.backendsOn(host, "lvm") {
		l, err := s.lvm(ctx, b)
		if err != nil {
			return nil, err
		}
		lvs, err := l.Tagged(ctx, lvm.Tag)
		if err != nil {
			return nil, err
		}
		seen[bn] = map[string]found{}
		for _, lv := range lvs {
			u := volumeUUID(lv.Name)
			if u == "" || !slices.Contains(lv.Tags, lvm.VolumeTag(u)) {
				continue
			}
			f := found{object: lv.VG + "/" + lv.Name, size: lv.SizeBytes, thin: lv.Pool != ""}
			for _, t := range lv.Tags {
				if n, ok := strings.CutPrefix(t, "blk-name-"); ok {
					f.name = n
				}
			}
			seen[bn][u] = f
		}
	}
	return func(snap *snapshot) []Drift {
		return s.compareStorage(snap, host, seen, "lvm")
	}, nil
}

// lookFiles lists the volume files of each nfs backend on host.
func lookFiles(ctx context.Context, s *Service, host string) (func(*snapshot) []Drift, error) {
	seen := map[string]map[string]found{}
	for bn, b := range s.backendsOn(host, "nfs") {
		r, err := s.Hosts.Runner(host)
		if err != nil {
			return nil, err
		}
		files, err := nfs.Files{Run: r}.List(ctx, b.Path, "volume-")
		if err != nil {
			return nil, err
		}
		seen[bn] = map[string]found{}
		for _, f := range files {
			if u := volumeUUID(f.Name); u != "" {
				seen[bn][u] = found{object: b.Path + "/" + f.Name, size: f.SizeBytes, thin: f.AllocatedBytes < f.SizeBytes}
			}
		}
	}
	return func(snap *snapshot) []Drift {
		return s.compareStorage(snap, host, seen, "nfs")
	}, nil
}

// compareStorage finds the LVs or files with no row, and the rows with
// none.
func (s *Service) compareStorage(snap *snapshot, host string, seen map[string]map[string]found, typ string) []Drift {
	orphan, missing, what := DriftOrphanLV, DriftMissingLV, "LV"
	if typ == "nfs" {
		orphan, missing, what = DriftOrphanFile, DriftMissingFile, "file"
	}
	var out []Drift
	for _, bn := range slices.Sorted(maps.Keys(seen)) {
		b := s.Config.Backends[bn]
		for _, u := range slices.Sorted(maps.Keys(seen[bn])) {
			f := seen[bn][u]
			if _, ok := snap.vols[u]; ok {
				continue
			}
			v := state.Volume{UUID: u, Name: adoptName(snap, f.name, u), Backend: bn, SizeBytes: f.size, Thin: f.thin,
				Path: f.object, Status: state.Available}
			if typ == "lvm" {
				v.Path = "/dev/" + f.object
			}
			remove := fmt.Sprintf("lvremove %s", f.object)
			if typ == "nfs" {
				remove = "rm " + f.object
			}
			rebuilt := fmt.Sprintf("as volume %q (%s, thin=%v)", v.Name, FormatSize(f.size), f.thin)
			out = append(out, Drift{Host: host, Kind: orphan, Object: f.object, Volume: u, uuid: u, adopt: true,
				Detail: fmt.Sprintf("%s of volume %s on backend %s has no row in the state file; its name says %s", what, u, bn, rebuilt),
				Action: fmt.Sprintf("--fix --adopt records it %s; to drop its data instead, run '%s' on %s", rebuilt, remove, host),
				fix: func(ctx context.Context) error {
					if err := s.State.AdoptVolume(ctx, &v); err != nil {
						return err
					}
					return nil
				}})
		}
		for _, u := range slices.Sorted(maps.Keys(snap.vols)) {
			v := snap.vols[u]
			if v.Backend != bn || !slices.Contains(needsStorage, v.Status) {
				continue
			}
			if _, ok := seen[bn][u]; ok {
				continue
			}
			object := b.VG + "/" + lvName(u)
			if typ == "nfs" {
				object = b.Path + "/" + lvName(u)
			}
			action := fmt.Sprintf("blk cannot bring data back: if it is lost, 'blk volume reset-state %s --to error --force', then 'blk volume delete %s'", v.Name, v.Name)
			if v.Attachment != nil {
				action = fmt.Sprintf("blk cannot bring data back: if it is lost, 'blk volume detach %s --force', then delete it", v.Name)
			}
			out = append(out, Drift{Host: host, Kind: missing, Object: object, Volume: v.Name, uuid: u,
				Detail: fmt.Sprintf("volume %s is %s but its %s is gone", v.Name, v.Status, what), Action: action})
		}
	}
	return out
}

// adoptName is the name a rebuilt row takes: the one its blk-name- tag
// records, if it is a valid name no row has; else recovered-<uuid prefix>.
func adoptName(snap *snapshot, tagged, uuid string) string {
	taken := func(n string) bool {
		for _, v := range snap.vols {
			if v.Name == n {
				return true
			}
		}
		return false
	}
	if tagged != "" && CheckName("volume", tagged) == nil && !taken(tagged) {
		return tagged
	}
	return "recovered-" + uuid[:8]
}

// blkAccount matches the CHAP users blk makes: blk-<first 8 of the UUID>.
var blkAccount = regexp.MustCompile(`^blk-[0-9a-f]{8}$`)

// lookTargets reads tgtd's targets and accounts on a storage host of lvm
// backends.
func lookTargets(ctx context.Context, s *Service, host string) (func(*snapshot) []Drift, error) {
	backends := s.backendsOn(host, "lvm")
	if len(backends) == 0 {
		return nil, nil
	}
	r, err := s.Hosts.Runner(host)
	if err != nil {
		return nil, err
	}
	t := iscsi.Target{Run: r}
	targets, err := t.Show(ctx)
	if err != nil {
		return nil, err
	}
	accounts, err := t.Accounts(ctx)
	if err != nil {
		return nil, err
	}
	return func(snap *snapshot) []Drift {
		var out []Drift
		// The targets of blk's backends on this host, by volume UUID.
		ours := map[string]iscsi.TargetInfo{}
		for _, iqn := range slices.Sorted(maps.Keys(targets)) {
			for _, b := range backends {
				if u, ok := strings.CutPrefix(iqn, b.IQNPrefix+":"); ok && uuidRE.MatchString(u) {
					ours[u] = targets[iqn]
				}
			}
		}
		for _, u := range slices.Sorted(maps.Keys(ours)) {
			ti := ours[u]
			a, ok := snap.atts[u]
			if !ok || a.Conn.TargetIQN != ti.IQN {
				detail := fmt.Sprintf("tgt target %d exports volume %s, which has no attachment", ti.ID, snap.name(u))
				if len(ti.Sessions) > 0 {
					detail += "; logged in: " + strings.Join(ti.Sessions, ", ")
				}
				out = append(out, Drift{Host: host, Kind: DriftOrphanTarget, Object: ti.IQN, Volume: snap.name(u), uuid: u, Detail: detail,
					Action: "--fix removes the target (its LUN and ACLs with it), once no initiator is logged in",
					fix:    func(ctx context.Context) error { return s.removeOrphanTarget(ctx, t, u, ti.IQN) }})
				continue
			}
			v, vok := snap.vols[u]
			if !vok || a.Status != "attached" || v.Status != state.InUse {
				continue // a workflow's to finish: see stuck-status
			}
			out = append(out, s.compareExport(host, t, v, a, ti, accounts)...)
		}
		for _, u := range slices.Sorted(maps.Keys(snap.atts)) {
			a := snap.atts[u]
			v, ok := snap.vols[u]
			b, bok := backends[v.Backend]
			if !ok || !bok || a.Conn.DriverVolumeType != "iscsi" || a.Status != "attached" || v.Status != state.InUse {
				continue
			}
			if _, exported := ours[u]; exported || !strings.HasPrefix(a.Conn.TargetIQN, b.IQNPrefix+":") {
				continue
			}
			out = append(out, Drift{Host: host, Kind: DriftMissingTarget, Object: a.Conn.TargetIQN, Volume: v.Name, uuid: u,
				Detail: fmt.Sprintf("volume %s is in use by %s on %s but not exported (tgtd restarted, or the host rebooted: tgt keeps targets in memory only)",
					v.Name, a.Instance, a.Host),
				Action: "--fix exports it again as the attachment recorded it (same IQN, LUN, CHAP account, initiator), so the session reconnects",
				fix:    func(ctx context.Context) error { return s.reexport(ctx, t, u) }})
		}
		used := map[string]bool{}
		for _, a := range snap.atts {
			used[a.Conn.AuthUsername] = true
		}
		for _, user := range accounts {
			if !blkAccount.MatchString(user) || used[user] {
				continue
			}
			out = append(out, Drift{Host: host, Kind: DriftOrphanAccount, Object: user,
				Detail: "CHAP account " + user + " is used by no attachment", Action: "--fix deletes the account, unless a target it is bound to has an initiator logged in",
				fix: func(ctx context.Context) error { return s.removeOrphanAccount(ctx, t, user) }})
		}
		return out
	}, nil
}

// compareExport checks the target of an in-use volume has what its
// attachment recorded: LUN 1 on the volume, the one initiator, the account.
func (s *Service) compareExport(host string, t iscsi.Target, v state.Volume, a state.AttachmentRecord, ti iscsi.TargetInfo, accounts []string) []Drift {
	var out []Drift
	var lacks []string
	if ti.LUNs[lunID] != v.Path {
		lacks = append(lacks, fmt.Sprintf("LUN %d on %s", lunID, v.Path))
	}
	if a.Conn.InitiatorIQN != "" && !slices.Contains(ti.ACLs, a.Conn.InitiatorIQN) {
		lacks = append(lacks, "initiator "+a.Conn.InitiatorIQN)
	}
	if a.Conn.AuthUsername != "" && (!slices.Contains(accounts, a.Conn.AuthUsername) || !slices.Contains(ti.Accounts, a.Conn.AuthUsername)) {
		lacks = append(lacks, "CHAP account "+a.Conn.AuthUsername)
	}
	if len(lacks) > 0 {
		out = append(out, Drift{Host: host, Kind: DriftIncompleteTarget, Object: ti.IQN, Volume: v.Name, uuid: v.UUID,
			Detail: fmt.Sprintf("the target of volume %s (in use by %s) lacks %s", v.Name, a.Instance, strings.Join(lacks, ", ")),
			Action: "--fix adds what the attachment recorded", fix: func(ctx context.Context) error { return s.reexport(ctx, t, v.UUID) }})
	}
	for _, acl := range ti.ACLs {
		if acl == a.Conn.InitiatorIQN {
			continue
		}
		out = append(out, Drift{Host: host, Kind: DriftOrphanACL, Object: ti.IQN + " " + acl, Volume: v.Name, uuid: v.UUID,
			Detail: fmt.Sprintf("initiator %s may log in to volume %s, attached to %s on %s only", acl, v.Name, a.Instance, a.Host),
			Action: "--fix unbinds it", fix: func(ctx context.Context) error { return t.Unbind(ctx, ti.ID, acl) }})
	}
	return out
}

// removeOrphanTarget removes a target no attachment has, after looking
// again: an attach may have reserved the volume since, and an initiator
// logged in is cut off by nobody but its host.
func (s *Service) removeOrphanTarget(ctx context.Context, t iscsi.Target, uuid, iqn string) error {
	if _, err := s.State.Attachment(ctx, uuid); err == nil {
		return errors.New("the volume has an attachment now: left alone")
	}
	infos, err := t.Show(ctx)
	if err != nil {
		return err
	}
	ti, ok := infos[iqn]
	if !ok {
		return nil
	}
	if len(ti.Sessions) > 0 {
		return fmt.Errorf("%s is logged in to it: log it out on its host (iscsiadm -m node -T %s --logout), then run --fix again",
			strings.Join(ti.Sessions, ", "), iqn)
	}
	return t.Delete(ctx, ti.ID)
}

func (s *Service) removeOrphanAccount(ctx context.Context, t iscsi.Target, user string) error {
	atts, err := s.State.Attachments(ctx)
	if err != nil {
		return err
	}
	for _, a := range atts {
		if a.Conn.AuthUsername == user {
			return errors.New("an attachment uses it now: left alone")
		}
	}
	// Bound to a target an initiator is logged in to, it is what that
	// initiator logs in again with.
	infos, err := t.Show(ctx)
	if err != nil {
		return err
	}
	for _, ti := range infos {
		if slices.Contains(ti.Accounts, user) && len(ti.Sessions) > 0 {
			return fmt.Errorf("it is bound to target %s, which %s is logged in to: left alone", ti.IQN, strings.Join(ti.Sessions, ", "))
		}
	}
	return t.DeleteAccount(ctx, user)
}

// reexport makes the target of an in-use volume again from its attachment,
// as Cinder's ensure_export: the same IQN, LUN 1 on the volume, the one
// initiator bound and the same CHAP account, so the compute host's session
// logs in again by itself. Each step keeps what is already there.
func (s *Service) reexport(ctx context.Context, t iscsi.Target, uuid string) error {
	v, err := s.State.Volume(ctx, uuid)
	if err != nil {
		return err
	}
	a, err := s.State.Attachment(ctx, uuid)
	if err != nil {
		return err
	}
	if v.Status != state.InUse || a.Status != "attached" {
		return fmt.Errorf("volume %s is %s now: left to its workflow", v.Name, v.Status)
	}
	conn := a.Conn
	tid, _, err := t.Create(ctx, conn.TargetIQN)
	if err != nil {
		return fmt.Errorf("tgtadm new target: %w", err)
	}
	if err = t.AddLUN(ctx, tid, lunID, v.Path); err != nil {
		return fmt.Errorf("tgtadm new logicalunit: %w", err)
	}
	if err = t.Bind(ctx, tid, conn.InitiatorIQN); err != nil {
		return fmt.Errorf("tgtadm bind initiator: %w", err)
	}
	if conn.AuthMethod == "CHAP" {
		if err = t.AddAccount(ctx, tid, conn.AuthUsername, conn.AuthPassword); err != nil {
			return fmt.Errorf("tgtadm account: %w", err)
		}
	}
	if tid != conn.TargetID {
		a.Conn.TargetID = tid
		if err = s.State.UpdateAttachment(ctx, a); err != nil {
			return err
		}
	}
	return s.sessionBack(ctx, a)
}

// Waits for a re-exported target's session, bounded; tests shorten them.
var (
	sessionReturns  = 10 * time.Second
	sessionRestarts = 45 * time.Second
)

// sessionBack waits for the compute host's session to the re-exported
// target to log in again. open-iscsi stops retrying a login the target
// rejected (a restarted tgtd rejects every target it does not have yet),
// so a session still down after a few seconds is handed to a restarted
// iscsid, which takes over the kernel's sessions and logs them in.
func (s *Service) sessionBack(ctx context.Context, a state.AttachmentRecord) error {
	r, err := s.Hosts.Runner(a.Host)
	if err != nil {
		return err
	}
	in := iscsi.Initiator{Run: r}
	loggedIn := func(within time.Duration) error {
		return retry.Do(ctx, retry.Policy{Within: within, Delay: time.Second, Retry: func(err error) bool { return errors.Is(err, errNotLoggedIn) }},
			func() error {
				st, serr := in.SessionState(ctx, a.Conn.TargetIQN)
				if serr == nil && st != "LOGGED_IN" {
					return fmt.Errorf("%w (%q)", errNotLoggedIn, st)
				}
				return serr
			})
	}
	if s.Hosts.DryRun() || loggedIn(sessionReturns) == nil {
		return nil
	}
	if err = in.RestartDaemon(ctx); err != nil {
		return fmt.Errorf("the session of %s on %s stays down, and restarting iscsid failed: %w", a.Conn.TargetIQN, a.Host, err)
	}
	if err = loggedIn(sessionRestarts); err != nil {
		return fmt.Errorf("%s: the session to %s did not log in again: %w", a.Host, a.Conn.TargetIQN, err)
	}
	return nil
}

var errNotLoggedIn = errors.New("not logged in")

// blkPortal is the portal of the lvm backend whose targets iqn belongs
// to, or "" when none does.
func (s *Service) blkPortal(iqn string) string {
	for _, b := range s.Config.Backends {
		if b.Type == "lvm" && b.IQNPrefix != "" && strings.HasPrefix(iqn, b.IQNPrefix+":") && uuidRE.MatchString(strings.TrimPrefix(iqn, b.IQNPrefix+":")) {
			return b.Portal
		}
	}
	return ""
}

// lookSessions reads the iSCSI sessions and node records of a compute host.
func lookSessions(ctx context.Context, s *Service, host string) (func(*snapshot) []Drift, error) {
	if !s.hasBackend("lvm") {
		return nil, nil // no iSCSI here: iscsiadm need not be installed
	}
	r, err := s.Hosts.Runner(host)
	if err != nil {
		return nil, err
	}
	in := iscsi.Initiator{Run: r}
	sessions, err := in.Sessions(ctx)
	if err != nil {
		return nil, err
	}
	nodes, err := in.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	return func(snap *snapshot) []Drift {
		mine := map[string]state.AttachmentRecord{} // by target IQN
		for _, a := range snap.atts {
			if a.Host == host && a.Conn.DriverVolumeType == "iscsi" {
				mine[a.Conn.TargetIQN] = a
			}
		}
		var out []Drift
		for _, iqn := range slices.Compact(slices.Sorted(slices.Values(sessions))) {
			portal := s.blkPortal(iqn)
			if _, ok := mine[iqn]; ok || portal == "" {
				continue
			}
			u := iqn[strings.LastIndexByte(iqn, ':')+1:]
			out = append(out, Drift{Host: host, Kind: DriftOrphanSession, Object: iqn, Volume: snap.name(u), uuid: u,
				Detail: fmt.Sprintf("logged in to volume %s, which has no attachment on %s", snap.name(u), host),
				Action: "--fix removes the SCSI device, logs out and deletes the node record, unless a domain has a disk on it",
				fix:    func(ctx context.Context) error { return s.removeOrphanSession(ctx, host, portal, iqn, u) }})
		}
		for _, iqn := range slices.Compact(slices.Sorted(slices.Values(nodes))) {
			portal := s.blkPortal(iqn)
			if _, ok := mine[iqn]; ok || portal == "" || slices.Contains(sessions, iqn) {
				continue
			}
			u := iqn[strings.LastIndexByte(iqn, ':')+1:]
			out = append(out, Drift{Host: host, Kind: DriftOrphanNode, Object: iqn, Volume: snap.name(u), uuid: u,
				Detail: fmt.Sprintf("node record of volume %s, which has no attachment on %s (node.startup would log in at boot)", snap.name(u), host),
				Action: "--fix deletes the node record",
				fix: func(ctx context.Context) error {
					if err := s.stillUnattached(ctx, host, u); err != nil {
						return err
					}
					return in.Logout(ctx, portal, iqn)
				}})
		}
		for _, iqn := range slices.Sorted(maps.Keys(mine)) {
			a := mine[iqn]
			v, ok := snap.vols[a.Volume]
			if !ok || a.Status != "attached" || v.Status != state.InUse || slices.Contains(sessions, iqn) {
				continue
			}
			out = append(out, Drift{Host: host, Kind: DriftMissingSession, Object: iqn, Volume: v.Name, uuid: a.Volume,
				Detail: fmt.Sprintf("volume %s is in use by %s but %s is not logged in to it", v.Name, a.Instance, host),
				Action: "--fix logs in again with the recorded node settings and CHAP account",
				fix:    func(ctx context.Context) error { return s.relogin(ctx, in, a.Volume) }})
		}
		return out
	}, nil
}

// stillUnattached refuses to clean up after a volume that has an
// attachment on host now.
func (s *Service) stillUnattached(ctx context.Context, host, uuid string) error {
	if a, err := s.State.Attachment(ctx, uuid); err == nil && a.Host == host {
		return errors.New("the volume has an attachment on this host now: left alone")
	}
	return nil
}

func (s *Service) removeOrphanSession(ctx context.Context, host, portal, iqn, uuid string) error {
	if err := s.stillUnattached(ctx, host, uuid); err != nil {
		return err
	}
	hv, err := s.Hosts.Hypervisor(ctx, host)
	if err != nil {
		return err
	}
	link := iscsi.ByPath(portal, iqn, lunID)
	if user, derr := domainOnSource(ctx, hv, func(src string) bool { return src == link }); derr != nil || user != "" {
		if derr != nil {
			return fmt.Errorf("cannot tell whether a domain uses it, so it stays: %w", derr)
		}
		return fmt.Errorf("domain %s has a disk on %s: detach it from the domain first", user, link)
	}
	r, err := s.Hosts.Runner(host)
	if err != nil {
		return err
	}
	in := iscsi.Initiator{Run: r}
	if err = in.RemoveDevice(ctx, link); err != nil {
		return err
	}
	return in.Logout(ctx, portal, iqn)
}

func (s *Service) relogin(ctx context.Context, in iscsi.Initiator, uuid string) error {
	a, err := s.State.Attachment(ctx, uuid)
	if err != nil {
		return err
	}
	var chap *iscsi.CHAP
	if a.Conn.AuthMethod == "CHAP" {
		chap = &iscsi.CHAP{User: a.Conn.AuthUsername, Password: a.Conn.AuthPassword}
	}
	if err = in.Login(ctx, a.Conn.TargetPortal, a.Conn.TargetIQN, chap); err != nil {
		return err
	}
	_, err = in.WaitDevice(ctx, iscsi.ByPath(a.Conn.TargetPortal, a.Conn.TargetIQN, lunID), deviceWait)
	return err
}

// lookMounts reads the NFS mounts under blk's mount root on a compute host.
func lookMounts(ctx context.Context, s *Service, host string) (func(*snapshot) []Drift, error) {
	if !s.hasBackend("nfs") {
		return nil, nil
	}
	r, err := s.Hosts.Runner(host)
	if err != nil {
		return nil, err
	}
	m := nfs.Mounts{Run: r}
	mounts, err := m.Under(ctx, nfs.MountRoot)
	if err != nil {
		return nil, err
	}
	return func(snap *snapshot) []Drift {
		using := map[string][]state.AttachmentRecord{} // by mount point
		for _, a := range snap.atts {
			if a.Host == host && a.Conn.DriverVolumeType == "nfs" {
				using[a.Conn.MountPoint] = append(using[a.Conn.MountPoint], a)
			}
		}
		mounted := map[string]nfs.Mount{}
		var out []Drift
		for _, mnt := range mounts {
			mounted[mnt.Target] = mnt
			if len(using[mnt.Target]) > 0 {
				continue
			}
			out = append(out, Drift{Host: host, Kind: DriftOrphanMount, Object: mnt.Target,
				Detail: fmt.Sprintf("%s is mounted there and no attachment on %s uses it", mnt.Source, host),
				Action: "--fix unmounts it, unless a domain has a disk on a file under it",
				fix: func(ctx context.Context) error {
					hv, err := s.Hosts.Hypervisor(ctx, host)
					if err != nil {
						return err
					}
					if err := s.releaseMount(ctx, m, hv, state.ConnectionInfo{MountPoint: mnt.Target, Export: mnt.Source}, ""); err != nil {
						return err
					}
					if _, err := m.At(ctx, mnt.Target); !errors.Is(err, nfs.ErrNotMounted) {
						return errors.New("still mounted: an attachment or a domain uses it now")
					}
					return nil
				}})
		}
		for _, mp := range slices.Sorted(maps.Keys(using)) {
			if _, ok := mounted[mp]; ok {
				continue
			}
			for _, a := range using[mp] {
				v, ok := snap.vols[a.Volume]
				if !ok || a.Status != "attached" || v.Status != state.InUse {
					continue
				}
				out = append(out, Drift{Host: host, Kind: DriftMissingMount, Object: mp, Volume: v.Name, uuid: a.Volume,
					Detail: fmt.Sprintf("volume %s is in use by %s but %s is not mounted at %s", v.Name, a.Instance, a.Conn.Export, mp),
					Action: "--fix mounts the export again",
					fix: func(ctx context.Context) error {
						if _, err := m.At(ctx, mp); err == nil {
							return nil
						}
						b, err := s.backendOf(v)
						if err != nil {
							return err
						}
						return m.Mount(ctx, a.Conn.Export, mp, nfsProvider{s, v.Backend, b}.mountOptions())
					}})
				break
			}
		}
		return out
	}, nil
}

// domainDisks reads the disks of every domain on host by serial: the
// target device in either definition, and whether the live one has it
// (what the guest sees; a domain shut off shows its persistent one there).
func (s *Service) domainDisks(ctx context.Context, host string) (disks map[string]map[string]string, live map[string]map[string]bool, err error) {
	hv, err := s.Hosts.Hypervisor(ctx, host)
	if err != nil {
		return nil, nil, err
	}
	lister, ok := hv.(interface {
		Domains(context.Context) ([]string, error)
	})
	if !ok {
		return nil, nil, errors.New("libvirt connection cannot list domains")
	}
	doms, err := lister.Domains(ctx)
	if err != nil {
		return nil, nil, err
	}
	disks, live = map[string]map[string]string{}, map[string]map[string]bool{}
	for _, d := range doms {
		disks[d], live[d] = map[string]string{}, map[string]bool{}
		for _, persistent := range []bool{false, true} {
			x, xerr := hv.DomainXML(ctx, d, persistent)
			if errors.Is(xerr, hypervisor.ErrNoDomain) {
				break // gone meanwhile
			}
			if xerr != nil {
				return nil, nil, xerr
			}
			ds, xerr := hypervisor.Disks(x)
			if xerr != nil {
				return nil, nil, xerr
			}
			for _, disk := range ds {
				if disk.Serial != "" && disk.Target != nil {
					disks[d][disk.Serial] = disk.Target.Dev
					live[d][disk.Serial] = live[d][disk.Serial] || !persistent
				}
			}
		}
	}
	return disks, live, nil
}

// lookDisks reads the disks of every domain on a compute host, by serial.
func lookDisks(ctx context.Context, s *Service, host string) (func(*snapshot) []Drift, error) {
	disks, live, err := s.domainDisks(ctx, host)
	if err != nil {
		return nil, err
	}
	return func(snap *snapshot) []Drift {
		var out []Drift
		for _, u := range slices.Sorted(maps.Keys(snap.atts)) {
			a := snap.atts[u]
			v, ok := snap.vols[u]
			if a.Host != host || !ok || a.Status != "attached" || v.Status != state.InUse {
				continue
			}
			serials, defined := live[a.Instance]
			if defined && serials[hypervisor.SerialOf(u)] {
				continue
			}
			why := fmt.Sprintf("domain %s has no disk with serial %s", a.Instance, hypervisor.SerialOf(u))
			if defined && disks[a.Instance][hypervisor.SerialOf(u)] != "" {
				why += " in its live definition (only in its persistent one)"
			}
			if !defined {
				why = fmt.Sprintf("domain %s is no longer defined on %s", a.Instance, host)
			}
			out = append(out, Drift{Host: host, Kind: DriftMissingDisk, Object: a.Instance + " " + a.Device, Volume: v.Name, uuid: u,
				Detail: fmt.Sprintf("volume %s is attached to %s as %s, but %s", v.Name, a.Instance, a.Device, why),
				Action: fmt.Sprintf("'blk volume detach %s' ends the attachment (its export and session with it); or attach the disk back by hand", v.Name)})
		}
		bySerial := map[string]string{}
		for u := range snap.vols {
			bySerial[hypervisor.SerialOf(u)] = u
		}
		for _, d := range slices.Sorted(maps.Keys(disks)) {
			for _, serial := range slices.Sorted(maps.Keys(disks[d])) {
				u, ok := bySerial[serial]
				if !ok {
					continue
				}
				if a, att := snap.atts[u]; att && a.Host == host && a.Instance == d {
					continue
				}
				out = append(out, Drift{Host: host, Kind: DriftOrphanDisk, Object: d + " " + disks[d][serial], Volume: snap.vols[u].Name, uuid: u,
					Detail: fmt.Sprintf("domain %s has a disk with the serial of volume %s, which is not attached to it", d, snap.vols[u].Name),
					Action: fmt.Sprintf("remove it from the domain by hand (virsh detach-disk %s %s --live --config) if nothing uses it", d, disks[d][serial])})
			}
		}
		return out
	}, nil
}

// domainOnSource names a domain with a disk whose source matches, or "".
func domainOnSource(ctx context.Context, hv hypervisor.Hypervisor, match func(src string) bool) (string, error) {
	lister, ok := hv.(interface {
		Domains(context.Context) ([]string, error)
	})
	if !ok {
		return "", errors.New("libvirt connection cannot list domains")
	}
	doms, err := lister.Domains(ctx)
	if err != nil {
		return "", err
	}
	for _, d := range doms {
		for _, persistent := range []bool{false, true} {
			x, err := hv.DomainXML(ctx, d, persistent)
			if errors.Is(err, hypervisor.ErrNoDomain) {
				break
			}
			if err != nil {
				return "", err
			}
			disks, err := hypervisor.Disks(x)
			if err != nil {
				return "", err
			}
			for _, disk := range disks {
				if src := disk.Source; src != nil && (src.Block != nil && match(src.Block.Dev) || src.File != nil && match(src.File.File)) {
					return d, nil
				}
			}
		}
	}
	return "", nil
}
