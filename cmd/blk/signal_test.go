package main

import (
	"bytes"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blk-project/blk/internal/pgtest"
)

// TestMain lets a test run this binary as blk itself, to signal it.
func TestMain(m *testing.M) {
	if os.Getenv("BLK_TEST_RUN_MAIN") == "1" {
		os.Exit(Main())
	}
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// The first Ctrl-C undoes; a second one, while an undo step hangs, ends
// blk at once (the rerun finishes what is left), and blk says so.
func TestSecondInterruptEndsBlkAtOnce(t *testing.T) {
	dir := writeConfig(t, `
state: STATE
hosts:
  here: {local: true}
backends:
  lvm-1: {type: lvm, host: here, vg: blk, portal: "127.0.0.1:3260", iqn_prefix: iqn.2026-11.org.example.blk}
defaults: {backend: lvm-1}
`)
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	tools := map[string]string{
		// No LV, then room, then an lvcreate that waits to be interrupted
		// and an lvremove (the undo) that hangs.
		"lvs":      `echo '  Failed to find logical volume "x"' >&2; exit 5`,
		"vgs":      `echo '{"report":[{"vg":[{"vg_name":"blk","vg_size":"8589934592","vg_free":"8589934592","lv_count":"0"}]}]}'`,
		"lvcreate": `touch "$BLK_TEST_DIR/created"; exec sleep 60`,
		"lvremove": `touch "$BLK_TEST_DIR/undoing"; exec sleep 60`,
	}
	for name, body := range tools {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Make the lvs after lvcreate see the LV, so the undo runs lvremove.
	os.WriteFile(filepath.Join(bin, "lvs"), []byte(`#!/bin/sh
if [ -e "$BLK_TEST_DIR/created" ]; then
  echo '{"report":[{"lv":[{"lv_name":"x","vg_name":"blk","lv_size":"1073741824","lv_tags":"blk","pool_lv":"","lv_attr":"-wi-a-----","data_percent":""}]}]}'
  exit 0
fi
echo '  Failed to find logical volume "x"' >&2; exit 5
`), 0o755)
	cmd := osexec.Command(os.Args[0], "volume", "create", "db1", "--size", "1GiB")
	cmd.Env = append(os.Environ(), "BLK_TEST_RUN_MAIN=1", "BLK_TEST_DIR="+dir, "BLK_CONFIG="+filepath.Join(dir, "blk.yaml"),
		"PATH="+bin+":"+os.Getenv("PATH"))
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(dir, "created")); return err == nil })
	cmd.Process.Signal(syscall.SIGINT)
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(dir, "undoing")); return err == nil })
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("blk still ran 10s after a second interrupt; stderr %q", stderr.String())
	}
	if !strings.Contains(stderr.String(), "interrupt again to stop at once") {
		t.Errorf("stderr %q does not say what a second interrupt does", stderr.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatal("timed out waiting")
}
