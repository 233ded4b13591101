package backup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// The kinds of S3 failure an operator acts on differently; an S3Error
// wraps one of them when it applies.
var (
	ErrBucketMissing = errors.New("bucket does not exist")
	ErrAccessDenied  = errors.New("access denied")
	ErrUnreachable   = errors.New("endpoint unreachable")
)

// S3Config says where a repository in object storage is and how to sign
// requests to it. The keys are never part of an error.
type S3Config struct {
	// Endpoint is host[:port] (HTTPS), https://host[:port] or, spelled
	// out, http://host[:port].
	Endpoint, Bucket, Region string
	// Prefix is the repository's, for the first request: keys allowed
	// only that prefix may not list the whole bucket.
	Prefix               string
	AccessKey, SecretKey string
	SessionToken         string
}

// S3 is a repository in an S3 bucket (MinIO, Ceph RGW, versitygw, AWS):
// the same layout as a directory, each file an object under the
// repository's prefix. An object store has no rename and no directories,
// and needs none: a PUT replaces an object whole or not at all, so
// repository files are written by Put (see writeAtomic) and never pass
// through tmp/; directories are key prefixes (MkdirAll and SyncDir do
// nothing); a listing is a ReadDir. Locks rely on the store reading its
// own writes and listing them at once (strong consistency, as AWS S3 since
// 2020, MinIO, Ceph RGW and versitygw give).
//
// Requests are retried by minio-go itself (network errors, 5xx, 429 and
// SlowDown: maxTries tries, 200 ms doubling to 1 s between them, with
// jitter); each is bounded by the transport's timeouts and by the context
// blk runs under, except removals (see Remove).
type S3 struct {
	ctx    context.Context
	c      *minio.Client
	bucket string
	secret string // only to scrub it from error texts
}

// maxTries is the tries of each request: the AWS SDKs make 3.
const maxTries = 5

// probeTimeout bounds the first request to a repository: an endpoint that
// does not answer fails the command in seconds.
const probeTimeout = 15 * time.Second

// NewS3 connects to cfg's bucket and checks it is there and the keys may
// read it, so a wrong endpoint, bucket or key fails here with its kind
// (ErrUnreachable, ErrBucketMissing, ErrAccessDenied), not later halfway
// through a backup. ctx bounds every later request.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	host, secure, err := ParseS3Endpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.MaxIdleConnsPerHost = 32
	// A server that takes a request and never answers is given up on
	// (and the request retried) after this, not minio-go's minute.
	tr.ResponseHeaderTimeout = 30 * time.Second
	opts := &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:       secure,
		Transport:    tr,
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   maxTries,
	}
	c, err := minio.New(host, opts)
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %s: %w", cfg.Endpoint, err)
	}
	s := &S3{ctx: ctx, c: c, bucket: cfg.Bucket, secret: cfg.SecretKey}
	// The probe tries twice at most: a refused connection fails at once,
	// one that hangs after the dial timeout.
	popts := *opts
	popts.MaxRetries = 2
	probe, err := minio.New(host, &popts)
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %s: %w", cfg.Endpoint, err)
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	// A listing, not HeadBucket: it needs only the right to list the
	// repository, and its error says which of bucket or key is wrong.
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	for o := range probe.ListObjectsIter(pctx, cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, MaxKeys: 1}) {
		if o.Err != nil {
			return nil, s.err("list", prefix, o.Err)
		}
		break // one page says enough
	}
	return s, nil
}

// ParseS3Endpoint splits an endpoint as config takes it into the host:port
// minio-go dials and whether it speaks TLS: plain HTTP only when the
// endpoint says http:// itself.
func ParseS3Endpoint(e string) (host string, secure bool, err error) {
	if !strings.Contains(e, "://") {
		return e, true, nil
	}
	u, err := url.Parse(e)
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		// Never echo it: a URL may carry user:password@.
		return "", false, errors.New("s3 endpoint is not http(s)://HOST[:PORT]")
	}
	switch u.Scheme {
	case "https":
		return u.Host, true, nil
	case "http":
		return u.Host, false, nil
	}
	return "", false, fmt.Errorf("s3 endpoint scheme %q: want https or http", u.Scheme)
}

// S3Error is a failed S3 request, naming the bucket and key.
type S3Error struct {
	Op, Bucket, Key string
	Kind            error // ErrBucketMissing, ErrAccessDenied, ErrUnreachable, fs.ErrNotExist or nil
	Err             error
	secret          string
}

func (e *S3Error) Error() string {
	msg := fmt.Sprintf("s3 %s s3://%s/%s", e.Op, e.Bucket, e.Key)
	if e.Kind != nil && e.Kind != fs.ErrNotExist {
		msg += ": " + e.Kind.Error()
	}
	msg += ": " + e.Err.Error()
	switch {
	case errors.Is(e.Kind, ErrBucketMissing):
		msg += ": create the bucket, or name the right one in backup_repos"
	case errors.Is(e.Kind, ErrAccessDenied):
		msg += ": check the access key and secret given to blk, and the bucket's policy"
	}
	if e.secret != "" {
		msg = strings.ReplaceAll(msg, e.secret, "<secret>")
	}
	return msg
}

func (e *S3Error) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Err}
	}
	return []error{e.Kind, e.Err}
}

func (s *S3) err(op, key string, err error) error {
	e := &S3Error{Op: op, Bucket: s.bucket, Key: key, Err: err, secret: s.secret}
	r := minio.ToErrorResponse(err)
	var nerr net.Error
	var uerr *url.Error
	switch {
	case s.ctx.Err() != nil: // interrupted: no fault of the store's
	case r.Code == "NoSuchBucket":
		e.Kind = ErrBucketMissing
	case r.Code == "NoSuchKey" || r.StatusCode == 404 && key != "":
		e.Kind = fs.ErrNotExist
	case r.Code == "AccessDenied" || r.Code == "InvalidAccessKeyId" || r.Code == "SignatureDoesNotMatch" || r.StatusCode == 403:
		e.Kind = ErrAccessDenied
	case r.Code == "" && (errors.As(err, &nerr) || errors.As(err, &uerr)):
		e.Kind = ErrUnreachable
	}
	return e
}

// Where names a file of the repository for people: s3://bucket/key.
func (s *S3) Where(name string) string { return "s3://" + s.bucket + "/" + name }

// Put writes name whole in one PUT: readers see the old object or the new
// one, never part of it. minio-go retries it, re-reading data.
func (s *S3) Put(name string, data []byte) error {
	_, err := s.c.PutObject(s.ctx, s.bucket, name, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true})
	if err != nil {
		return s.err("put", name, err)
	}
	return nil
}

func (s *S3) Open(name string) (File, error) {
	o, err := s.c.GetObject(s.ctx, s.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.err("get", name, err)
	}
	// Stat sends the GET: a missing object is an error here, as open(2)'s.
	info, err := o.Stat()
	if err != nil {
		o.Close()
		return nil, s.err("get", name, err)
	}
	return &s3File{s: s, name: name, o: o, info: s3Info(name, info)}, nil
}

// CreateExcl buffers what is written and PUTs it on Close with
// If-None-Match: *, which fails if the object exists (the repository
// itself writes through Put, and never needs this).
func (s *S3) CreateExcl(name string) (File, error) {
	return &s3File{s: s, name: name, w: &bytes.Buffer{}}, nil
}

// Rename copies the object and removes the old one: not atomic, which is
// why the repository never renames on S3.
func (s *S3) Rename(oldname, newname string) error {
	if _, err := s.c.CopyObject(s.ctx, minio.CopyDestOptions{Bucket: s.bucket, Object: newname},
		minio.CopySrcOptions{Bucket: s.bucket, Object: oldname}); err != nil {
		return s.err("copy", oldname, err)
	}
	return s.Remove(oldname)
}

// Remove goes on after blk is interrupted, for a while: an interrupted
// backup still releases its lock, which another machine could not prove
// stale.
func (s *S3) Remove(name string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), probeTimeout)
	defer cancel()
	if err := s.c.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{}); err != nil {
		return s.err("delete", name, err)
	}
	return nil
}

// ReadDir lists the objects and common prefixes right under name.
func (s *S3) ReadDir(name string) ([]fs.FileInfo, error) {
	prefix := ""
	if name != "" && name != "." {
		prefix = strings.TrimSuffix(name, "/") + "/"
	}
	var out []fs.FileInfo
	for o := range s.c.ListObjectsIter(s.ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix}) {
		if o.Err != nil {
			return nil, s.err("list", prefix, o.Err)
		}
		if o.Key == prefix {
			continue // a directory marker some tools make
		}
		out = append(out, s3Info(o.Key, o))
	}
	return out, nil
}

func (s *S3) MkdirAll(string) error { return nil }
func (s *S3) SyncDir(string) error  { return nil }

func (s *S3) Stat(name string) (fs.FileInfo, error) {
	info, err := s.c.StatObject(s.ctx, s.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return nil, s.err("head", name, err)
	}
	return s3Info(name, info), nil
}

type s3FileInfo struct {
	name string
	size int64
	mod  time.Time
	dir  bool
}

func s3Info(key string, o minio.ObjectInfo) s3FileInfo {
	dir := strings.HasSuffix(key, "/")
	return s3FileInfo{name: path.Base(key), size: o.Size, mod: o.LastModified, dir: dir}
}

func (i s3FileInfo) Name() string       { return i.name }
func (i s3FileInfo) Size() int64        { return i.size }
func (i s3FileInfo) ModTime() time.Time { return i.mod }
func (i s3FileInfo) IsDir() bool        { return i.dir }
func (i s3FileInfo) Sys() any           { return nil }
func (i s3FileInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o700
	}
	return 0o600
}

// s3File is an object being read (o) or written (w).
type s3File struct {
	s    *S3
	name string
	o    *minio.Object
	info s3FileInfo
	w    *bytes.Buffer
}

func (f *s3File) Read(b []byte) (int, error) {
	if f.o == nil {
		return 0, fmt.Errorf("s3 %s: open for writing", f.name)
	}
	n, err := f.o.Read(b)
	if err != nil && err != io.EOF {
		err = f.s.err("get", f.name, err)
	}
	return n, err
}

func (f *s3File) ReadAt(b []byte, off int64) (int, error) {
	if f.o == nil {
		return 0, fmt.Errorf("s3 %s: open for writing", f.name)
	}
	n, err := f.o.ReadAt(b, off)
	if err != nil && err != io.EOF {
		err = f.s.err("get", f.name, err)
	}
	return n, err
}

func (f *s3File) Write(b []byte) (int, error) {
	if f.w == nil {
		return 0, fmt.Errorf("s3 %s: open for reading", f.name)
	}
	return f.w.Write(b)
}

func (f *s3File) Stat() (fs.FileInfo, error) {
	if f.w != nil {
		return s3FileInfo{name: path.Base(f.name), size: int64(f.w.Len()), mod: time.Now()}, nil
	}
	return f.info, nil
}

func (f *s3File) Sync() error { return nil }

func (f *s3File) Close() error {
	if f.o != nil {
		return f.o.Close()
	}
	if f.w == nil {
		return nil
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true}
	opts.SetMatchETagExcept("*")
	data := f.w.Bytes()
	f.w = nil
	if _, err := f.s.c.PutObject(f.s.ctx, f.s.bucket, f.name, bytes.NewReader(data), int64(len(data)), opts); err != nil {
		if r := minio.ToErrorResponse(err); r.StatusCode == 412 || r.Code == "PreconditionFailed" {
			return &S3Error{Op: "put", Bucket: f.s.bucket, Key: f.name, Kind: fs.ErrExist, Err: err}
		}
		return f.s.err("put", f.name, err)
	}
	return nil
}

// S3Keys are the credentials of an S3 repository.
type S3Keys struct{ AccessKey, SecretKey, SessionToken string }

// LoadS3Keys reads a repository's keys: from file when given (it must be
// readable by its owner alone: mode 0600 or 0400), else from the
// environment variables accessEnv and secretEnv (default
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, with AWS_SESSION_TOKEN).
// The file is in the AWS shared-credentials format: aws_access_key_id,
// aws_secret_access_key and optionally aws_session_token, in its
// [default] section or before any section. No error carries a key.
func LoadS3Keys(file, accessEnv, secretEnv string, getenv func(string) string) (S3Keys, error) {
	if file != "" {
		return loadS3KeyFile(file)
	}
	var k S3Keys
	if accessEnv == "" && secretEnv == "" {
		accessEnv, secretEnv = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
		k.SessionToken = getenv("AWS_SESSION_TOKEN")
	}
	k.AccessKey, k.SecretKey = getenv(accessEnv), getenv(secretEnv)
	if k.AccessKey == "" || k.SecretKey == "" {
		return S3Keys{}, fmt.Errorf("no S3 credentials: set %s and %s in blk's environment, or give the repository a credentials_file", accessEnv, secretEnv)
	}
	return k, nil
}

func loadS3KeyFile(file string) (S3Keys, error) {
	f, err := os.Open(file)
	if err != nil {
		return S3Keys{}, fmt.Errorf("credentials_file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return S3Keys{}, fmt.Errorf("credentials_file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return S3Keys{}, fmt.Errorf("credentials_file %s is not a regular file", file)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return S3Keys{}, fmt.Errorf("credentials_file %s is mode %04o: it holds a secret key, so blk reads it only when no one but its owner can (chmod 600 %s)", file, perm, file)
	}
	var k S3Keys
	section := ""
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			// The line is not quoted: it may hold a key.
			return S3Keys{}, fmt.Errorf("credentials_file %s line %d: not KEY = VALUE", file, n)
		}
		if section != "" && section != "default" {
			continue
		}
		val = strings.TrimSpace(val)
		switch strings.ToLower(strings.TrimSpace(key)) {
		case "aws_access_key_id":
			k.AccessKey = val
		case "aws_secret_access_key":
			k.SecretKey = val
		case "aws_session_token":
			k.SessionToken = val
		}
	}
	if err := sc.Err(); err != nil {
		return S3Keys{}, fmt.Errorf("credentials_file %s: %w", file, err)
	}
	if k.AccessKey == "" || k.SecretKey == "" {
		return S3Keys{}, fmt.Errorf("credentials_file %s: no aws_access_key_id and aws_secret_access_key in its [default] section", file)
	}
	return k, nil
}
