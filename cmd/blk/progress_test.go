package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestProgressInLogsIsPlainLinesInBinaryUnits(t *testing.T) {
	defer func(d time.Duration) { logEvery = d }(logEvery)
	logEvery = 0
	var buf bytes.Buffer
	p := newProgress(&statusWriter{w: &buf}, false)("wipe db1", 1<<30)
	p.Add(256 << 20)
	p.Add(256 << 20)
	p.Done()
	out := buf.String()
	if !strings.Contains(out, "blk: wipe db1: 25% (256MiB of 1GiB)") || !strings.Contains(out, "blk: wipe db1: 50% (512MiB of 1GiB)") {
		t.Errorf("progress lines: %q", out)
	}
	if strings.Contains(out, "\r") || strings.Contains(out, "\x1b") || strings.Contains(out, "MB") {
		t.Errorf("terminal codes or decimal units in a log: %q", out)
	}
}

func TestStatusLineAndLogLinesDoNotShareALine(t *testing.T) {
	var buf bytes.Buffer
	sw := &statusWriter{w: &buf, tty: true}
	sw.show("wipe db1 [===   ]")
	slog.New(slog.NewTextHandler(sw, nil)).Info("exec", "argv", "dd")
	sw.clear()
	// Each log line starts on a cleared line, and the bar comes back after.
	want := clearLine + "wipe db1 [===   ]" + clearLine + "time="
	if !strings.HasPrefix(buf.String(), want) {
		t.Errorf("got %q", buf.String())
	}
	if !strings.Contains(buf.String(), "argv=dd\n"+"wipe db1 [===   ]"+clearLine) {
		t.Errorf("bar not redrawn after the log line, then cleared: %q", buf.String())
	}
}

func TestSpinnerOnlyOnATerminal(t *testing.T) {
	var buf bytes.Buffer
	a := &App{tty: &ttys{err: true}, stderr: &statusWriter{w: &buf, tty: true}}
	stop := a.spin("attaching db1 to web1")
	time.Sleep(400 * time.Millisecond)
	stop()
	if !strings.Contains(buf.String(), "attaching db1 to web1") || !strings.HasSuffix(buf.String(), clearLine) {
		t.Errorf("spinner: %q", buf.String())
	}
	buf.Reset()
	a = &App{tty: &ttys{}, stderr: &statusWriter{w: &buf}}
	stop = a.spin("x")
	time.Sleep(200 * time.Millisecond)
	stop()
	if buf.Len() != 0 {
		t.Errorf("spinner without a terminal: %q", fmt.Sprint(buf.String()))
	}
}

// A backup's progress says what it read and stored, as a line in logs and
// on the bar.
func TestBackupProgressSaysReadAndStored(t *testing.T) {
	defer func(d time.Duration) { logEvery = d }(logEvery)
	logEvery = 0
	var buf bytes.Buffer
	p := newProgress(&statusWriter{w: &buf}, false)("backup db1", 1<<30)
	p.(interface{ Detail(string) }).Detail("read 256MiB, stored 100MiB")
	p.Add(512 << 20)
	if !strings.Contains(buf.String(), "50% (512MiB of 1GiB), read 256MiB, stored 100MiB") {
		t.Errorf("log line: %q", buf.String())
	}
	if bar := p.(*progress).bar(time.Now()); !strings.HasSuffix(bar, " read 256MiB, stored 100MiB") {
		t.Errorf("bar: %q", bar)
	}
}
