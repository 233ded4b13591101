// Command blk is the command line: it parses flags and configuration, calls
// the workflows of package volume, and prints their results. Only this
// package knows about cobra, viper and tablewriter.
package main

import "os"

func main() { os.Exit(Main()) }
