package volume

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/state"
)

// lvmWorld simulates LVM's LVs for workflows that run concurrently.
func lvmWorld() func(args []string) (string, string, int, bool) {
	lvs := map[string]string{} // VG/LV -> size
	return func(args []string) (string, string, int, bool) {
		last := args[len(args)-1]
		switch args[0] {
		case "lvcreate":
			var name, size string
			for i, a := range args {
				switch a {
				case "--name":
					name = args[i+1]
				case "--size":
					size = strings.TrimSuffix(args[i+1], "b")
				}
			}
			if _, ok := lvs[last+"/"+name]; ok {
				return "", `  Logical Volume "` + name + `" already exists in volume group "` + last + `"`, 5, true
			}
			lvs[last+"/"+name] = size
			return "", "", 0, true
		case "lvs":
			size, ok := lvs[last]
			if !ok {
				return "", `  Failed to find logical volume "` + last + `"`, 5, true
			}
			vg, lv, _ := strings.Cut(last, "/")
			return `{"report":[{"lv":[{"lv_name":"` + lv + `","vg_name":"` + vg + `","lv_size":"` + size +
				`","lv_tags":"blk","pool_lv":"","lv_attr":"-wi-a-----","data_percent":""}]}]}`, "", 0, true
		case "lvremove":
			delete(lvs, last)
			return "", "", 0, true
		case "vgs":
			return vgsReport("8589934592"), "", 0, true
		}
		return "", "", 0, false
	}
}

// rivalStore runs rival once, just before the workflow journals that it
// takes the volume over: a second blk doing the same at the same moment.
type rivalStore struct {
	Store
	rival func()
	// after runs once, right after the workflow moved the volume to
	// deleting or detaching: a second blk looking at it at that moment.
	after func()
}

func (r *rivalStore) race() {
	if f := r.rival; f != nil {
		r.rival = nil
		f()
	}
}

func (r *rivalStore) BeginOp(ctx context.Context, op, object string) (Op, error) {
	r.race()
	return r.Store.BeginOp(ctx, op, object)
}

func (r *rivalStore) Claim(ctx context.Context, op, uuid string, from []string, to string) (Op, error) {
	r.race()
	o, err := r.Store.Claim(ctx, op, uuid, from, to)
	r.moved(to)
	return o, err
}

func (r *rivalStore) MoveVolume(ctx context.Context, uuid string, m state.Move) (state.Volume, error) {
	v, err := r.Store.MoveVolume(ctx, uuid, m)
	r.moved(m.To)
	return v, err
}

func (r *rivalStore) moved(to string) {
	if f := r.after; f != nil && (to == state.Deleting || to == state.Detaching) {
		r.after = nil
		f()
	}
}

// Two reruns of a killed create (or delete) at once: one finishes it, the
// other must not take it over too, or its rollback removes the LV of a
// volume the first has just made available.
func TestTwoRerunsOfAKilledCreateLeaveOneVolumeWithItsLV(t *testing.T) {
	ctx := context.Background()
	f := exectest.New(t, "stor1").Handle(lvmWorld())
	s := newService(t, f, nil)
	u := "11111111-2222-3333-4444-555555555555"
	// A create that died before lvcreate: its row is creating, its
	// operation no longer running.
	op, err := s.State.InsertVolume(ctx, &state.Volume{UUID: u, Name: "db1", Backend: "lvm-1", SizeBytes: 1 << 30, Status: state.Creating})
	if err != nil {
		t.Fatal(err)
	}
	op.End(ctx, errors.New("killed"))
	real := s.State
	rs := &rivalStore{Store: real}
	s.State = rs
	rival := *s
	rival.State = real
	var rivalErr error
	rs.rival = func() { _, rivalErr = rival.Create(ctx, CreateOptions{Name: "db1", Size: "1GiB"}) }
	_, err = s.Create(ctx, CreateOptions{Name: "db1", Size: "1GiB"})
	if rivalErr != nil {
		t.Fatalf("rival create: %v", rivalErr)
	}
	if !errors.Is(err, ErrConflict) {
		t.Errorf("second rerun: err = %v, want a conflict", err)
	}
	v, verr := real.Volume(ctx, "db1")
	if verr != nil || v.Status != state.Available {
		t.Fatalf("volume %+v, %v", v, verr)
	}
	l, _ := s.lvm(ctx, s.Config.Backends["lvm-1"])
	if _, lerr := l.LV(ctx, lvName(u)); lerr != nil {
		t.Errorf("volume db1 is available, its LV: %v", lerr)
	}
}

// A delete --wipe that has moved the volume to deleting holds it: another
// delete at that moment (without --wipe) must not take it over as
// abandoned and remove the LV unwiped.
func TestADeleteJustStartedIsNotTakenOver(t *testing.T) {
	ctx := context.Background()
	var ran []string
	world := lvmWorld()
	f := exectest.New(t, "stor1").Handle(func(args []string) (string, string, int, bool) {
		ran = append(ran, args[0])
		if args[0] == "dd" {
			return "", "", 0, true
		}
		return world(args)
	})
	s := newService(t, f, nil)
	if _, err := s.Create(ctx, CreateOptions{Name: "db1", Size: "1MiB"}); err != nil {
		t.Fatal(err)
	}
	real := s.State
	rs := &rivalStore{Store: real}
	s.State = rs
	rival := *s
	rival.State = real
	var rivalErr error
	rs.after = func() { _, rivalErr = rival.Delete(ctx, DeleteOptions{Refs: []string{"db1"}}) }
	ran = nil
	if _, err := s.Delete(ctx, DeleteOptions{Refs: []string{"db1"}, Wipe: true}); err != nil {
		t.Errorf("delete --wipe: %v", err)
	}
	if !errors.Is(rivalErr, ErrConflict) {
		t.Errorf("the other delete: err = %v, want a conflict", rivalErr)
	}
	if i, j := slices.Index(ran, "dd"), slices.Index(ran, "lvremove"); i < 0 || i > j {
		t.Errorf("commands run: %q, want the wipe before the LV is removed", ran)
	}
}

// Likewise a detach that has just moved the volume to detaching holds it.
func TestADetachJustStartedIsNotTakenOver(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	hv := newFakeHV("web1")
	s, _, _ := attachService(t, w, hv)
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil {
		t.Fatal(err)
	}
	real := s.State
	rs := &rivalStore{Store: real}
	s.State = rs
	rival := *s
	rival.State = real
	var rivalErr error
	rs.after = func() { _, rivalErr = rival.Detach(ctx, DetachOptions{Volume: "db1"}) }
	res, err := s.Detach(ctx, DetachOptions{Volume: "db1"})
	if err != nil || res.Volume.Status != state.Available {
		t.Errorf("detach: %+v, %v", res.Volume, err)
	}
	if !errors.Is(rivalErr, ErrConflict) {
		t.Errorf("the other detach: err = %v, want a conflict", rivalErr)
	}
}
