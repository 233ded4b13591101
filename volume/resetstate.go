package volume

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/blk-project/blk/hypervisor"
	"github.com/blk-project/blk/iscsi"
	"github.com/blk-project/blk/lvm"
	"github.com/blk-project/blk/nfs"
	"github.com/blk-project/blk/state"
)

// ResetStates are the statuses reset-state sets: the stable ones. error
// is the operator's "I do not know", and reality never contradicts it.
var ResetStates = []string{state.Available, state.InUse, state.Error}

type ResetOptions struct {
	Volume string
	To     string
	// Force sets the status even when reality contradicts it.
	Force bool
}

// ResetResult is what reset-state did and what it found.
type ResetResult struct {
	Volume Volume `json:"volume" yaml:"volume"`
	From   string `json:"from" yaml:"from"`
	// Found are the facts that contradict the status asked for: with
	// Force, set anyway.
	Found []string `json:"found" yaml:"found"`
}

// Validate checks the options alone, before anything is opened.
func (o ResetOptions) Validate() error {
	if !slices.Contains(ResetStates, o.To) {
		return invalid("--to %q: want one of %s", Truncate(o.To), strings.Join(ResetStates, ", "))
	}
	return nil
}

// sighting is what hosts show of one volume.
type sighting struct {
	storage  bool     // its LV or file exists
	target   []string // exports of it
	sessions []string // hosts logged in to it
	disks    map[string]string
	unknown  []string // what could not be looked at
}

// ResetState sets a volume's status, the admin's escape hatch for a volume
// stuck in a status nothing will move it from. It looks at the hosts first
// and refuses, saying what it found, when they contradict the status asked
// for (available while a target, a session or a disk in a domain still
// has it; in-use with no attachment, or with its disk not in its domain),
// unless Force. A running operation whose owner may be alive is never
// overridden. Reset to available drops the attachment row (only with
// Force can one be there): 'blk reconcile --fix' then removes what is
// left of the export.
func (s *Service) ResetState(ctx context.Context, o ResetOptions) (ResetResult, error) {
	var res ResetResult
	if err := o.Validate(); err != nil {
		return res, err
	}
	v, err := s.State.Volume(ctx, o.Volume)
	if err != nil {
		return res, err
	}
	res.Volume, res.From, res.Found = volumeOf(v), v.Status, []string{}
	if !s.State.Stale(ctx, v.UUID) {
		return res, &state.ConflictError{Volume: v.Name, Status: v.Status, Holder: s.State.Holder(ctx, v.UUID)}
	}
	b, err := s.backendOf(v)
	if err != nil {
		return res, err
	}
	att, aerr := s.State.Attachment(ctx, v.UUID)
	hasAtt := aerr == nil
	if aerr != nil && !errors.Is(aerr, state.ErrNotFound) {
		return res, aerr
	}
	var found []string
	if o.To != state.Error {
		seen := s.sight(ctx, v, b.Type)
		found = append(found, seen.unknown...)
		what := map[string]string{"lvm": "LV", "nfs": "file"}[b.Type]
		if !seen.storage && len(seen.unknown) == 0 {
			found = append(found, fmt.Sprintf("its %s is gone on %s", what, b.Host))
		}
		switch o.To {
		case state.Available:
			if hasAtt {
				found = append(found, fmt.Sprintf("it has an attachment to %s on %s (%s)", att.Instance, att.Host, att.Status))
			}
			found = append(found, seen.target...)
			for _, h := range seen.sessions {
				found = append(found, fmt.Sprintf("%s is logged in to it", h))
			}
			for _, where := range slices.Sorted(maps.Keys(seen.disks)) {
				found = append(found, fmt.Sprintf("domain %s has its disk (%s)", where, seen.disks[where]))
			}
		case state.InUse:
			if !hasAtt {
				found = append(found, "it has no attachment")
				break
			}
			if _, ok := seen.disks[att.Instance+" on "+att.Host]; !ok {
				found = append(found, fmt.Sprintf("domain %s on %s has no disk with its serial", att.Instance, att.Host))
			}
		}
	}
	res.Found = append(res.Found, found...)
	if len(found) > 0 && !o.Force {
		return res, conflict("volume %q: reality contradicts %s: %s; set it anyway with --force", v.Name, o.To, strings.Join(found, "; "))
	}
	reason := ""
	switch {
	case o.To == state.Error:
		reason = "reset to error by the operator (was " + v.Status + ")"
	case len(found) > 0:
		reason = "reset to " + o.To + " with --force despite: " + strings.Join(found, "; ")
	}
	nv, err := s.State.ResetVolume(ctx, v.UUID, state.Reset{To: o.To, DropAttachment: o.To == state.Available && hasAtt,
		Attached: o.To == state.InUse && hasAtt, Reason: reason, From: v.Status})
	res.Volume = volumeOf(nv)
	return res, err
}

// sight looks at the hosts for a volume: its storage, exports, sessions
// and disks. What cannot be looked at is said, not guessed.
func (s *Service) sight(ctx context.Context, v state.Volume, typ string) sighting {
	seen := sighting{disks: map[string]string{}}
	b := s.Config.Backends[v.Backend]
	storage, err := s.Hosts.Runner(b.Host)
	if err != nil {
		seen.unknown = append(seen.unknown, fmt.Sprintf("could not look at %s: %v", b.Host, err))
		return seen
	}
	switch typ {
	case "lvm":
		_, err = lvm.LVM{Run: storage, VG: b.VG}.LV(ctx, lvName(v.UUID))
	case "nfs":
		_, err = nfs.Files{Run: storage}.Stat(ctx, nfsProvider{s, v.Backend, b}.file(v.UUID))
	}
	seen.storage = err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		seen.unknown = append(seen.unknown, fmt.Sprintf("could not look for its storage on %s: %v", b.Host, err))
	}
	iqn := b.IQNPrefix + ":" + v.UUID
	if typ == "lvm" {
		infos, terr := iscsi.Target{Run: storage}.Show(ctx)
		if terr != nil {
			seen.unknown = append(seen.unknown, fmt.Sprintf("could not read the targets of %s: %v", b.Host, terr))
		} else if ti, ok := infos[iqn]; ok {
			seen.target = append(seen.target, fmt.Sprintf("target %d on %s exports it", ti.ID, b.Host))
		}
	}
	atts, err := s.State.Attachments(ctx)
	if err != nil {
		seen.unknown = append(seen.unknown, err.Error())
		return seen
	}
	roles := s.reconcileRoles(atts)
	for _, h := range slices.Sorted(maps.Keys(roles)) {
		if !slices.Contains(roles[h], string(roleCompute)) {
			continue
		}
		if typ == "lvm" {
			r, err := s.Hosts.Runner(h)
			if err == nil {
				var sessions []string
				if sessions, err = (iscsi.Initiator{Run: r}).Sessions(ctx); err == nil && slices.Contains(sessions, iqn) {
					seen.sessions = append(seen.sessions, h)
				}
			}
			if err != nil {
				seen.unknown = append(seen.unknown, fmt.Sprintf("could not read the iSCSI sessions of %s: %v", h, err))
			}
		}
		if err := s.sightDisks(ctx, h, hypervisor.SerialOf(v.UUID), seen.disks); err != nil {
			seen.unknown = append(seen.unknown, fmt.Sprintf("could not read the domains of %s: %v", h, err))
		}
	}
	return seen
}

// sightDisks records the domains of host with a disk of serial, as
// "domain on host" -> device.
func (s *Service) sightDisks(ctx context.Context, host, serial string, into map[string]string) error {
	disks, _, err := s.domainDisks(ctx, host)
	for d, serials := range disks {
		if dev, ok := serials[serial]; ok {
			into[d+" on "+host] = dev
		}
	}
	return err
}
