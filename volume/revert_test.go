package volume

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blk-project/blk/state"
)

type endRecorder struct{ ended *[]string }

func (e endRecorder) End(_ context.Context, err error) {
	*e.ended = append(*e.ended, "end "+errText(err))
}

func errText(err error) string {
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
		r.add("a", func(context.Context) error { undone = true; return nil })
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
}

func (s *spyStore) BeginOp(ctx context.Context, op, object string) (Op, error) {
	if s.failBegin {
		return nil, errors.New("database is locked")
	}
	return endRecorder{&s.ended}, nil
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
