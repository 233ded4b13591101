package backup

import (
	"bytes"
	"context"
	"os"
	osexec "os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// slowReader hands out data slowly, so the test can kill a backup mid-way.
type slowReader struct{ *bytes.Reader }

func (s slowReader) ReadAt(p []byte, off int64) (int, error) {
	time.Sleep(50 * time.Millisecond)
	return s.Reader.ReadAt(p, off)
}

// killData is 40 chunks: kill_test's child backs it up slowly.
func killData() []byte {
	var b []byte
	for i := range 8 {
		b = append(b, volumeData(int64(100 + i))[:5*ChunkSize]...)
	}
	return b
}

// TestMain lets the test binary be a backup to kill.
func TestMain(m *testing.M) {
	if root := os.Getenv("BLK_BACKUP_TEST_CHILD"); root != "" {
		r, err := Open(OS{}, root)
		if err == nil {
			_, err = r.Lock(Shared, "backup")
		}
		if err == nil {
			data := killData()
			_, err = r.Backup(context.Background(), slowReader{bytes.NewReader(data)}, int64(len(data)), Options{})
		}
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A backup killed with SIGKILL leaves no manifest; its lock is stale, so
// prune can run; the next backup reuses the chunks it stored.
func TestKill9DuringBackup(t *testing.T) {
	r := newRepo(t)
	c := osexec.Command(os.Args[0], "-test.run=^$")
	c.Env = append(os.Environ(), "BLK_BACKUP_TEST_CHILD="+r.root)
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(chunkFiles(t, r)) < 5 {
		if time.Now().After(deadline) {
			c.Process.Kill()
			t.Fatal("the child stored no chunks in 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.Process.Signal(syscall.SIGKILL)
	c.Wait()
	stored := len(chunkFiles(t, r))
	if ms, bad, _ := r.List(); len(ms)+len(bad) != 0 || stored >= 40 {
		t.Fatalf("after kill -9: %d manifests, %d of 40 chunks", len(ms)+len(bad), stored)
	}
	if fis, _ := os.ReadDir(filepath.Join(r.root, "locks")); len(fis) != 1 {
		t.Fatalf("the killed backup left %d lock files, want its own", len(fis))
	}
	l, err := r.Lock(Exclusive, "prune")
	if err != nil {
		t.Fatalf("exclusive lock over the killed backup's: %v", err)
	}
	l.Unlock()
	data := killData()
	m := backup(t, r, data, Options{})
	if want := int64(40 - stored); m.StoredBytes == 0 || m.StoredBytes > want*(ChunkSize+ChunkSize/64) {
		t.Errorf("the rerun stored %d bytes, want about %d chunks' worth: the killed run's chunks are reused", m.StoredBytes, want)
	}
	if err := r.Verify(context.Background(), m, true); err != nil {
		t.Error(err)
	}
}
