package exec

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/pkg/sftp"
)

// File is a file or block device on a host, read and written at offsets:
// what a copy between volumes streams through, without a shell command per
// block.
type File interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Close() error
}

// FileOpener is a runner that opens files on its host.
type FileOpener interface {
	// OpenFile opens path, for reading and writing when write is set. It
	// never creates or truncates: what is written to exists already (an
	// LV, a volume file made to size).
	OpenFile(ctx context.Context, path string, write bool) (File, error)
}

// OpenFile opens path on r's host, if r can open files.
func OpenFile(ctx context.Context, r Runner, path string, write bool) (File, error) {
	o, ok := r.(FileOpener)
	if !ok {
		return nil, fmt.Errorf("%s: cannot open %s: this runner has no file access", r.Host(), path)
	}
	return o.OpenFile(ctx, path, write)
}

func openFlag(write bool) int {
	if write {
		return os.O_RDWR
	}
	return os.O_RDONLY
}

func (l *Local) OpenFile(_ context.Context, path string, write bool) (File, error) {
	f, err := os.OpenFile(path, openFlag(write), 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.Name, err)
	}
	return f, nil
}

// OpenFile opens path over SFTP, in a subsystem channel of the runner's one
// SSH connection (sshd's "Subsystem sftp internal-sftp", or sftp-server).
func (s *SSH) OpenFile(ctx context.Context, path string, write bool) (File, error) {
	sc, err := s.SFTP(ctx)
	if err != nil {
		return nil, err
	}
	type opened struct {
		f   *sftp.File
		err error
	}
	// An open takes no context either.
	ch := make(chan opened, 1)
	go func() {
		f, err := sc.OpenFile(path, openFlag(write))
		ch <- opened{f, err}
	}()
	select {
	case o := <-ch:
		if o.err != nil {
			sc.Close()
			return nil, fmt.Errorf("ssh %s: sftp open %s: %w", s.cfg.Name, path, o.err)
		}
		return sftpFile{o.f, sc}, nil
	case <-ctx.Done():
		sc.Close() // ends the open waiting on it
		return nil, fmt.Errorf("ssh %s: sftp open %s: %w", s.cfg.Name, path, ctx.Err())
	}
}

// SFTPOpener is a runner that starts SFTP sessions on its host.
type SFTPOpener interface {
	// SFTP starts a session the caller closes.
	SFTP(ctx context.Context) (*sftp.Client, error)
}

// SFTP starts an SFTP session on r's host, if r can.
func SFTP(ctx context.Context, r Runner) (*sftp.Client, error) {
	o, ok := r.(SFTPOpener)
	if !ok {
		return nil, fmt.Errorf("%s: this runner has no SFTP", r.Host())
	}
	return o.SFTP(ctx)
}

// SFTP starts an SFTP session in a subsystem channel of the runner's one
// SSH connection. Writes are pipelined: a repository's chunk file or a
// copy's block crosses in one round trip, not one per 32 KiB packet.
func (s *SSH) SFTP(ctx context.Context) (*sftp.Client, error) {
	c, err := s.Client(ctx)
	if err != nil {
		return nil, err
	}
	type started struct {
		c   *sftp.Client
		err error
	}
	// The SFTP handshake takes no context: wait for it only as long as ctx.
	ch := make(chan started, 1)
	go func() {
		sc, err := sftp.NewClient(c, sftp.UseConcurrentWrites(true))
		ch <- started{sc, err}
	}()
	select {
	case st := <-ch:
		if st.err != nil {
			return nil, fmt.Errorf("ssh %s: sftp: %w", s.cfg.Name, st.err)
		}
		return st.c, nil
	case <-ctx.Done():
		go func() {
			if st := <-ch; st.c != nil {
				st.c.Close()
			}
		}()
		return nil, fmt.Errorf("ssh %s: sftp: %w", s.cfg.Name, ctx.Err())
	}
}

// sftpFile closes its own SFTP session with the file.
type sftpFile struct {
	*sftp.File
	c *sftp.Client
}

func (f sftpFile) Close() error {
	err := f.File.Close()
	if cerr := f.c.Close(); err == nil {
		err = cerr
	}
	return err
}

// OpenFile passes file access through, logged.
func (l Logged) OpenFile(ctx context.Context, path string, write bool) (File, error) {
	f, err := OpenFile(ctx, l.Runner, path, write)
	l.Log.Debug("open", "host", l.Host(), "path", path, "write", write, "err", err)
	return f, err
}

// SFTP passes through, logged.
func (l Logged) SFTP(ctx context.Context) (*sftp.Client, error) {
	c, err := SFTP(ctx, l.Runner)
	l.Log.Debug("sftp", "host", l.Host(), "err", err)
	return c, err
}

// SFTP passes through: what a dry run does over it only reads.
func (d DryRun) SFTP(ctx context.Context) (*sftp.Client, error) { return SFTP(ctx, d.Runner) }

// OpenFile opens for reading as the real run would; a file opened for
// writing is only announced, and writes to it go nowhere.
func (d DryRun) OpenFile(ctx context.Context, path string, write bool) (File, error) {
	if !write {
		return OpenFile(ctx, d.Runner, path, false)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.Out, "%s: write %s (streamed copy)\n", d.Host(), QuoteWord(path))
	return DiscardFile{}, nil
}

// DiscardFile is the file a dry run writes to: nothing is kept, and a copy
// into it has nothing to do.
type DiscardFile struct{}

func (DiscardFile) ReadAt(p []byte, _ int64) (int, error)  { return 0, io.EOF }
func (DiscardFile) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }
func (DiscardFile) Sync() error                            { return nil }
func (DiscardFile) Close() error                           { return nil }
