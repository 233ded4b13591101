package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/blk-project/blk/volume"
)

// statusWriter is stderr for people: log lines and notes, and one live
// status line on a terminal (a progress bar or a spinner) that is cleared
// before any other line is written and drawn again after it, so -v logs
// and progress never share a line.
type statusWriter struct {
	mu     sync.Mutex
	w      io.Writer
	tty    bool
	status string
}

const clearLine = "\r\x1b[K"

func (s *statusWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status != "" {
		io.WriteString(s.w, clearLine)
	}
	n, err := s.w.Write(p)
	if s.status != "" {
		io.WriteString(s.w, s.status)
	}
	return n, err
}

// show replaces the status line; only on a terminal.
func (s *statusWriter) show(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tty {
		return
	}
	s.status = line
	io.WriteString(s.w, clearLine+line)
}

func (s *statusWriter) clear() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status != "" {
		io.WriteString(s.w, clearLine)
	}
	s.status = ""
}

// logEvery is how often progress is printed as a line when stderr is not
// a terminal (cron mail, journald, CI logs).
var logEvery = 5 * time.Second

type progress struct {
	out          *statusWriter
	tty          bool
	label        string
	total, done  int64
	start, shown time.Time
	detail       string // what else the work counts: "read 1GiB, stored 300MiB"
}

// Detail sets what the progress line says after its counts.
func (p *progress) Detail(s string) { p.detail = s }

// newProgress reports long work on stderr, never stdout (results): a bar
// on a terminal, otherwise a plain line every few seconds.
func newProgress(out *statusWriter, tty bool) func(label string, total int64) volume.Progress {
	return func(label string, total int64) volume.Progress {
		now := time.Now()
		return &progress{out: out, tty: tty, label: label, total: total, start: now, shown: now}
	}
}

func (p *progress) Add(n int64) {
	p.done += n
	now := time.Now()
	switch {
	case p.tty && now.Sub(p.shown) >= 100*time.Millisecond:
		p.out.show(p.bar(now))
	case !p.tty && now.Sub(p.shown) >= logEvery:
		fmt.Fprintf(p.out, "blk: %s\n", p.line(now))
	default:
		return
	}
	p.shown = now
}

func (p *progress) Done() {
	if p.tty {
		p.out.clear()
		return
	}
	if p.done > 0 {
		fmt.Fprintf(p.out, "blk: %s: %s done in %s\n", p.label, volume.FormatSize(p.done), time.Since(p.start).Round(time.Second))
	}
}

func (p *progress) percent() int64 {
	if p.total <= 0 {
		return 0
	}
	return p.done * 100 / p.total
}

// line is "wipe db1: 42% (430MiB of 1GiB), 85.00MiB/s, 7s left".
func (p *progress) line(now time.Time) string {
	s := fmt.Sprintf("%s: %d%% (%s of %s)", p.label, p.percent(), volume.FormatSize(p.done), volume.FormatSize(p.total))
	if rate, left := p.rate(now); rate > 0 {
		s += fmt.Sprintf(", %s/s, %s left", volume.FormatSize(rate), left)
	}
	if p.detail != "" {
		s += ", " + p.detail
	}
	return s
}

func (p *progress) bar(now time.Time) string {
	const width = 30
	fill := int(p.percent() * width / 100)
	s := fmt.Sprintf("%s [%s%s] %3d%% %s/%s", p.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
		p.percent(), volume.FormatSize(p.done), volume.FormatSize(p.total))
	if rate, left := p.rate(now); rate > 0 {
		s += fmt.Sprintf(" %s/s %s left", volume.FormatSize(rate), left)
	}
	if p.detail != "" {
		s += " " + p.detail
	}
	return s
}

func (p *progress) rate(now time.Time) (int64, time.Duration) {
	el := now.Sub(p.start)
	if el < time.Second || p.done == 0 {
		return 0, 0
	}
	rate := int64(float64(p.done) / el.Seconds())
	left := time.Duration(float64(p.total-p.done) / float64(rate) * float64(time.Second))
	return rate, left.Round(time.Second)
}

// spin shows, on a terminal, that blk is waiting for something (an iSCSI
// login, a guest releasing a disk) until the returned stop is called.
func (a *App) spin(label string) (stop func()) {
	if !a.tty.err || a.Quiet || a.DryRun {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		t := time.NewTicker(150 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case now := <-t.C:
				a.stderr.show(fmt.Sprintf("%c %s (%s)", `|/-\`[i%4], label, now.Sub(start).Round(time.Second)))
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		a.stderr.clear()
	}
}
