// Command backupfile drives the backup engine over a plain file, for
// bench/backup.sh: the engine alone, without volumes, snapshots or SSH.
//
//	backupfile backup  -repo DIR [-parent UUID [-unchanged]] FILE
//	backupfile restore -repo DIR -id UUID FILE
//
// With -s3 ENDPOINT (bench/s3.sh), -repo is BUCKET/PREFIX of an S3
// repository, its keys in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
//
// backup prints the manifest's summary as JSON. -unchanged passes an empty
// list of changed ranges, as thin_delta would answer for an untouched volume.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/blk-project/blk/backup"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "backupfile:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: backupfile backup|restore -repo DIR ... FILE")
	}
	fl := flag.NewFlagSet(args[0], flag.ExitOnError)
	repo := fl.String("repo", "", "repository directory")
	parent := fl.String("parent", "", "parent backup uuid")
	unchanged := fl.Bool("unchanged", false, "nothing changed since -parent: read nothing")
	id := fl.String("id", "", "backup to restore")
	prof := fl.String("cpuprofile", "", "write a CPU profile to this file")
	s3 := fl.String("s3", "", "S3 endpoint: -repo is then BUCKET/PREFIX")
	fl.Parse(args[1:])
	if *prof != "" {
		f, err := os.Create(*prof)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if fl.NArg() != 1 || *repo == "" {
		return fmt.Errorf("usage: backupfile backup|restore -repo DIR ... FILE")
	}
	ctx := context.Background()
	var fsys backup.FS = backup.OS{}
	root := *repo
	if *s3 != "" {
		bucket, prefix, _ := strings.Cut(*repo, "/")
		k, err := backup.LoadS3Keys("", "", "", os.Getenv)
		if err != nil {
			return err
		}
		if fsys, err = backup.NewS3(ctx, backup.S3Config{Endpoint: *s3, Bucket: bucket, AccessKey: k.AccessKey, SecretKey: k.SecretKey}); err != nil {
			return err
		}
		root = prefix
	}
	r, err := backup.Init(fsys, root)
	if err != nil {
		return err
	}
	l, err := r.Lock(backup.Shared, args[0])
	if err != nil {
		return err
	}
	defer l.Unlock()
	switch args[0] {
	case "backup":
		f, err := os.Open(fl.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		var opt backup.Options
		if *parent != "" {
			if opt.Parent, err = r.Manifest(*parent); err != nil {
				return err
			}
			if *unchanged {
				opt.Changed = []backup.Range{}
			}
		}
		m, err := r.Backup(ctx, f, fi.Size(), opt)
		if err != nil {
			return err
		}
		m.Chunks = nil
		return json.NewEncoder(os.Stdout).Encode(m)
	case "restore":
		m, err := r.Manifest(*id)
		if err != nil {
			return err
		}
		f, err := os.OpenFile(fl.Arg(0), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if err := f.Truncate(m.SizeBytes); err != nil {
			return err
		}
		if err := r.Restore(ctx, m, f, true, nil); err != nil {
			return err
		}
		// No fsync here: the bench syncs after each restore, blk's and restic's alike.
		return f.Close()
	}
	return fmt.Errorf("unknown command %q", args[0])
}
