package state

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

func BenchmarkListVolumes10k(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "state.db"), ReadWrite)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.tx(ctx, func(t tx) error {
		for i := 0; i < 10000; i++ {
			if _, err := t.ExecContext(ctx, `INSERT INTO volumes (uuid, name, backend, size_bytes, status, created_at, updated_at)
				VALUES (?, ?, 'lvm-1', 1073741824, 'available', ?, ?)`, fmt.Sprint("u", i), fmt.Sprint("v", i), now(), now()); err != nil {
				return err
			}
		}
		return nil
	})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if vols, err := s.ListVolumes(ctx, VolumeFilter{}); err != nil || len(vols) != 10000 {
			b.Fatal(len(vols), err)
		}
	}
}
