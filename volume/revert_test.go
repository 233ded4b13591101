package volume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/state"
)

type endRecorder struct{ ended *[]string }

func (e endRecorder) Step(context.Context, string) error { return nil }

func (e endRecorder) End(_ context.Context, err error) error {
	*e.ended = append(*e.ended, "end "+undoErrText(err))
	return nil
}

func undoErrText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func TestReverterUndoesInReverseJoinsErrorsThenEndsTheOperation(t *testing.T) {
	var log []string
	run := func(succeed bool) error {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // Ctrl-C: undo must run all the same, but bounded
		err := func() (err error) {
			r := newReverter()
			defer r.fail(ctx, &err)
			r.journal(endRecorder{&log})
			r.add("a", func(ctx context.Context) error {
				dl, ok := ctx.Deadline()
				if ctx.Err() != nil || !ok || time.Until(dl) > undoTimeout {
					t.Errorf("undo context: err %v, deadline %v %v", ctx.Err(), dl, ok)
				}
				log = append(log, "undo a")
				return nil
			})
			r.add("b", func(context.Context) error { log = append(log, "undo b"); return errors.New("b stuck") })
			if succeed {
				r.success()
				return nil
			}
			return errors.New("step c failed")
		}()
		return err
	}
	err := run(false)
	if err == nil || err.Error() != "step c failed\nrollback b: b stuck" {
		t.Errorf("err = %q", err)
	}
	if want := []string{"undo b", "undo a", "end step c failed\nrollback b: b stuck"}; !slices.Equal(log, want) {
		t.Errorf("log = %q, want %q", log, want)
	}
	log = nil
	if err := run(true); err != nil || !slices.Equal(log, []string{"end ok"}) {
		t.Errorf("success: err %v, log %q", err, log)
	}
}

func TestReverterTreatsAReturnWithoutSuccessAsFailure(t *testing.T) {
	undone := false
	err := func() (err error) {
		r := newReverter()
		defer r.fail(context.Background(), &err)
		// Undo steps may read the workflow's error (delete records it).
		r.add("a", func(context.Context) error { undone = err != nil; return nil })
		return nil
	}()
	if !undone || err == nil {
		t.Errorf("undone %v, err %v", undone, err)
	}
}

// spyStore journals operations in memory, and can refuse to begin one.
type spyStore struct {
	Store
	ended     []string
	failBegin bool
	failLast  bool // the last status move fails as a broken database does: no row back
}

func (s *spyStore) FinishAttach(ctx context.Context, uuid string) (state.Volume, error) {
	if s.failLast {
		return state.Volume{}, errors.New("disk I/O error")
	}
	return s.Store.FinishAttach(ctx, uuid)
}

func (s *spyStore) MoveVolume(ctx context.Context, uuid string, m state.Move) (state.Volume, error) {
	if s.failLast && m.To == state.Available {
		return state.Volume{}, errors.New("disk I/O error")
	}
	return s.Store.MoveVolume(ctx, uuid, m)
}

func (s *spyStore) BeginOp(ctx context.Context, op, object string) (Op, error) {
	if s.failBegin {
		return nil, errors.New("database is locked")
	}
	return endRecorder{&s.ended}, nil
}

// ReserveOp reserves as the state file does, then journals in memory; a
// journal that cannot be written fails the reservation with it (one
// transaction).
func (s *spyStore) ReserveOp(ctx context.Context, uuid string, a state.AttachmentRecord, op string) (state.Volume, Op, error) {
	if s.failBegin {
		return state.Volume{}, nil, errors.New("database is locked")
	}
	v, o, err := s.Store.ReserveOp(ctx, uuid, a, op)
	if err != nil {
		return v, nil, err
	}
	return v, endRecorder{&s.ended}, o.End(ctx, nil)
}

func TestAttachJournalsItsOutcome(t *testing.T) {
	ctx := context.Background()
	hv := newFakeHV("web1")
	hv.failOn = "attach"
	s, _, _ := attachService(t, newWorld(), hv)
	spy := &spyStore{Store: s.State}
	s.State = spy
	_, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"})
	if err == nil || len(spy.ended) != 1 || !strings.Contains(spy.ended[0], "attach refused") {
		t.Errorf("failed attach: err %v, journal %q", err, spy.ended)
	}
	hv.failOn, spy.ended = "", nil
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err != nil || !slices.Equal(spy.ended, []string{"end ok"}) {
		t.Errorf("attach: err %v, journal %q", err, spy.ended)
	}
}

func TestAttachThatCannotJournalReleasesTheVolume(t *testing.T) {
	ctx := context.Background()
	s, _, _ := attachService(t, newWorld(), newFakeHV("web1"))
	s.State = &spyStore{Store: s.State, failBegin: true}
	if _, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"}); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("err = %v", err)
	}
	v, _ := s.State.Volume(ctx, "db1")
	if v.Status != state.Available {
		t.Errorf("volume left %s", v.Status)
	}
	if _, err := s.State.Attachment(ctx, volUUID); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("attachment row left: %v", err)
	}
}

func TestAFailedLastStepUndoesTheVolumeItStarted(t *testing.T) {
	ctx := context.Background()
	w := newWorld()
	hv := newFakeHV("web1")
	s, _, _ := attachService(t, w, hv)
	s.State = &spyStore{Store: s.State, failLast: true}
	_, _, err := s.Attach(ctx, AttachOptions{Volume: "db1", Instance: "web1"})
	if err == nil || strings.Contains(err.Error(), "rollback") {
		t.Errorf("attach: %v", err)
	}
	checkRolledBack(t, "finish attach", s, w, hv, fmt.Errorf(`attach volume "db1" to "web1": %w`, err))

	f := exectest.New(t, "stor1")
	c := newService(t, f, nil)
	c.State = &spyStore{Store: c.State, failLast: true}
	u := "cccccccc-2222-3333-4444-555555555555"
	c.testHookUUID = u
	f.ExpectFail(5, "", notFound, lvsOf(u)...)
	f.Expect(vgsReport("3208642560"), vgsArgs...)
	f.Expect("", "lvcreate", "--yes", "--name", "volume-"+u, "--size", "1073741824b", "--wipesignatures", "y", "--zero", "y",
		"--addtag", "blk", "--addtag", "blk-name-db1", "--addtag", "blk-vol-"+u, "blk")
	f.Expect(lvsReport(u, "1073741824"), lvsOf(u)...)
	f.Expect(lvsReport(u, "1073741824"), lvsOf(u)...)
	f.Expect("", "lvremove", "--yes", "blk/volume-"+u)
	if _, err := c.Create(ctx, CreateOptions{Name: "db1", Size: "1GiB"}); err == nil || strings.Contains(err.Error(), "rollback") {
		t.Errorf("create: %v", err)
	}
	if _, err := c.Show(ctx, "db1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("row left behind: %v", err)
	}
}
