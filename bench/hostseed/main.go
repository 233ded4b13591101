// Command hostseed fills a state file for bench/hosts.sh: -per available
// thin volumes on each of the backends b001..bN, with the UUIDs and names
// the simulated hosts' stand-in lvs reports (HostVolume), so that blk
// reconcile finds real work and no drift.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"

	"github.com/blk-project/blk/state"
)

func main() {
	path := flag.String("state", "", "state file to fill")
	backends := flag.Int("backends", 1, "backends b001..bN")
	per := flag.Int("per", 3, "volumes per backend")
	flag.Parse()
	ctx := context.Background()
	st, err := state.Open(ctx, *path, state.ReadWrite)
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	for b := 1; b <= *backends; b++ {
		for j := 1; j <= *per; j++ {
			// As bench/hosts.sh's tool.c prints them.
			u := fmt.Sprintf("%08x-0000-4000-8000-%012x", b, j)
			v := &state.Volume{UUID: u, Name: fmt.Sprintf("b%03d-v%d", b, j), Backend: fmt.Sprintf("b%03d", b),
				SizeBytes: 1 << 30, Thin: true, Status: state.Creating, Path: "/dev/blk/volume-" + u}
			op, err := st.InsertVolume(ctx, v)
			if err != nil {
				log.Fatal(err)
			}
			if _, err := st.MoveVolume(ctx, u, state.Move{From: []string{state.Creating}, To: state.Available}); err != nil {
				log.Fatal(err)
			}
			if err := op.End(ctx, nil); err != nil {
				log.Fatal(err)
			}
		}
	}
}
