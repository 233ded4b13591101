package main

import (
	"os"

	"github.com/blk-project/blk/internal/cli"
)

func main() { os.Exit(cli.Main()) }
