// Command seed fills a state file with N available volumes for benchmarks.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"

	"github.com/blk-project/blk/state"
	"github.com/google/uuid"
)

func main() {
	path := flag.String("state", "", "state file to fill")
	n := flag.Int("n", 10000, "volumes")
	flag.Parse()
	ctx := context.Background()
	st, err := state.Open(ctx, *path, state.ReadWrite)
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	for i := 0; i < *n; i++ {
		v := &state.Volume{UUID: uuid.NewString(), Name: fmt.Sprintf("bench-%05d", i), Backend: "lvm-1",
			SizeBytes: 1 << 30, Status: state.Creating, Path: "/dev/blk/volume-x"}
		op, err := st.InsertVolume(ctx, v)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := st.MoveVolume(ctx, v.UUID, state.Move{From: []string{state.Creating}, To: state.Available}); err != nil {
			log.Fatal(err)
		}
		if err := op.End(ctx, nil); err != nil {
			log.Fatal(err)
		}
	}
}
