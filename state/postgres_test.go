package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blk-project/blk/internal/fault"
	"github.com/blk-project/blk/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// The copy names every column of every table, in both dialects.
func TestCopyTablesAreTheSchema(t *testing.T) {
	ctx := context.Background()
	for _, st := range []*Store{open(t, filepath.Join(t.TempDir(), "state.db")), open(t, pgtest.URL(t))} {
		q := `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`
		if st.db.pg {
			q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name`
		}
		var have []string
		rows, err := st.db.QueryContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var n string
			rows.Scan(&n)
			have = append(have, n)
		}
		rows.Close()
		want := []string{"moved", "state_id"}
		if st.db.pg {
			want = append(want, "blk_schema")
		}
		for _, tb := range tables {
			want = append(want, tb.name)
			q := `SELECT name FROM pragma_table_info(?) ORDER BY name`
			if st.db.pg {
				q = `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ? ORDER BY column_name`
			}
			var cols []string
			rows, err := st.db.QueryContext(ctx, q, tb.name)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var n string
				rows.Scan(&n)
				cols = append(cols, n)
			}
			rows.Close()
			if w := slices.Sorted(slices.Values(tb.cols)); !reflect.DeepEqual(cols, w) {
				t.Errorf("postgres=%v: %s has columns %q, the copy names %q", st.db.pg, tb.name, cols, w)
			}
		}
		if slices.Sort(want); !reflect.DeepEqual(have, want) {
			t.Errorf("postgres=%v: tables %q, want %q", st.db.pg, have, want)
		}
	}
}

// fill gives a state one of everything, a killed run's operation included.
func fill(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	for _, v := range []Volume{
		{UUID: "u1", Name: "db1", Backend: "lvm-1", SizeBytes: 5 << 40, Thin: true, Status: Creating},
		{UUID: "u2", Name: "web-data", Backend: "nfs-1", SizeBytes: 1 << 30, Status: Creating},
	} {
		op, err := s.InsertVolume(ctx, &v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.MoveVolume(ctx, v.UUID, Move{From: []string{Creating}, To: Available}); err != nil {
			t.Fatal(err)
		}
		op.End(ctx, nil)
	}
	if _, err := s.Reserve(ctx, "u1", AttachmentRecord{Instance: "web1", Host: "comp1", Device: "vdb", Conn: ConnectionInfo{TargetIQN: "iqn.x:u1", AuthPassword: "s3cr3t"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishAttach(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordBackup(ctx, BackupRecord{UUID: "b1", Name: "nightly", Volume: "u2", Repo: "r1", SizeBytes: 1 << 30, Status: "available"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`INSERT INTO snapshots (uuid, name, volume, size_bytes, status, created_at, updated_at, consistency)
		VALUES ('s1', 'db1-snap', 'u1', 1, 'available', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 'crash')`); err != nil {
		t.Fatal(err)
	}
	dead := strings.Split(Owner, ":")
	dead[3] = "4194303"
	if _, err := s.db.Exec(`INSERT INTO operations (op, object, owner, started_at, heartbeat, state) VALUES ('extend', 'u2', ?, ?, ?, 'running')`,
		strings.Join(dead, ":"), now(), now()); err != nil {
		t.Fatal(err)
	}
}

// blk state migrate: everything arrives, the journal's ids go on, the old
// file refuses every later blk, and a second copy into the same database
// is refused.
func TestCopyToPostgresMovesEverything(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	src := open(t, path)
	fill(t, src)
	url := pgtest.URL(t)
	// A dry run checks it all and changes nothing, on either side: the
	// database stays without blk's tables.
	ro, err := Open(ctx, url, ReadOnlyOrEmpty)
	if err != nil {
		t.Fatal(err)
	}
	got, err := src.CopyTo(ctx, ro, true)
	if err != nil {
		t.Fatal(err)
	}
	ro.Close()
	if fmt.Sprint(got) != "[{volumes 2} {attachments 1} {snapshots 1} {backups 1} {operations 3}]" {
		t.Errorf("dry run counted %v", got)
	}
	if _, err = Open(ctx, url, ReadOnly); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after the dry run the database holds a state: %v", err)
	}
	dst := open(t, url)

	if _, err = src.CopyTo(ctx, dst, false); err != nil {
		t.Fatal(err)
	}
	want, _ := src.ListVolumes(ctx, VolumeFilter{})
	have, err := dst.ListVolumes(ctx, VolumeFilter{})
	if err != nil || !reflect.DeepEqual(have, want) {
		t.Errorf("volumes after the copy:\n have %+v (%v)\n want %+v", have, err, want)
	}
	a, err := dst.Attachment(ctx, "u1")
	if err != nil || a.Conn.AuthPassword != "s3cr3t" || a.Device != "vdb" {
		t.Errorf("attachment after the copy: %+v %v", a, err)
	}
	sn, err := dst.ListSnapshots(ctx, "")
	if err != nil || len(sn) != 1 || sn[0].Consistency != "crash" {
		t.Errorf("snapshots after the copy: %+v %v", sn, err)
	}
	var wantJSON, haveJSON strings.Builder
	src.WriteVolumesJSON(ctx, VolumeFilter{}, &wantJSON)
	dst.WriteVolumesJSON(ctx, VolumeFilter{}, &haveJSON)
	if !jsonEqual(t, wantJSON.String(), haveJSON.String()) {
		t.Errorf("volume JSON:\n sqlite   %s postgres %s", wantJSON.String(), haveJSON.String())
	}
	op, err := dst.BeginOp(ctx, "delete", "u2")
	if err != nil || op.id != 4 {
		t.Errorf("the next journal id is %v (%v), want 4", op, err)
	}
	// The killed extend came along: a rerun takes it over on PostgreSQL.
	if _, err := dst.Claim(ctx, "extend", "u2", []string{Available}, Extending); err == nil || !errors.Is(err, ErrConflict) {
		t.Errorf("claim beside the running delete: %v", err)
	}

	src.Close()
	for _, m := range []Mode{ReadWrite, ReadOnly, Existing} {
		_, err := Open(ctx, path, m)
		if err == nil || !strings.Contains(err.Error(), "moved to postgres://blk:xxxxx@127.0.0.1:") || strings.Contains(err.Error(), pgtest.Password(url)) {
			t.Errorf("mode %d: the old file opens: %v", m, err)
		}
	}
	other := open(t, filepath.Join(t.TempDir(), "other.db"))
	fill(t, other)
	if _, err := other.CopyTo(ctx, dst, false); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "already holds 2 volumes") {
		t.Errorf("a copy into a used database: %v", err)
	}
}

// While a live process is in the middle of a workflow the copy waits for
// nobody: it refuses, naming it.
func TestCopyRefusesWhileAnOperationRuns(t *testing.T) {
	ctx := context.Background()
	src := open(t, filepath.Join(t.TempDir(), "state.db"))
	if _, err := src.InsertVolume(ctx, &Volume{UUID: "u1", Name: "db1", Backend: "b", SizeBytes: 1, Status: Creating}); err != nil {
		t.Fatal(err)
	}
	dst := open(t, filepath.Join(t.TempDir(), "new.db"))
	if _, err := src.CopyTo(ctx, dst, false); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), `"create" of "db1"`) {
		t.Errorf("err = %v", err)
	}
	if vols, _ := dst.ListVolumes(ctx, VolumeFilter{}); len(vols) != 0 {
		t.Errorf("copied %d volumes", len(vols))
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("%v: %s", err, a)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return reflect.DeepEqual(x, y)
}

// A wrong password, a server that is not there: the error names the
// database and never the password, and comes at once.
func TestPostgresErrorsNeverShowThePassword(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	pw := pgtest.Password(url)
	wrong := strings.Replace(url, pw, "not-"+pw, 1)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	gone := strings.Replace(url, url[strings.Index(url, "127.0.0.1:"):strings.LastIndex(url, "/")], closed, 1)
	for _, u := range []string{wrong, gone, strings.Replace(url, "postgres://", "postgres://%zz", 1)} {
		start := time.Now()
		_, err := Open(ctx, u, ReadWrite)
		if err == nil || strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "postgres://") {
			t.Errorf("open %s: err = %v", Redact(u), err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("open %s took %v", Redact(u), d)
		}
	}
	s := open(t, url)
	if strings.Contains(s.Path(), pw) || !strings.Contains(s.Path(), "blk:xxxxx@") {
		t.Errorf("Path() = %s", s.Path())
	}
	for _, u := range []string{"postgres://u@h/d?password=" + pw + "&sslmode=disable", "postgres://u@h/d?sslpassword=" + pw} {
		if r := Redact(u); strings.Contains(r, pw) {
			t.Errorf("Redact left a password parameter: %s", r)
		}
	}
	// The scheme in capitals is still a URL (never a relative file name
	// holding the password).
	upper := open(t, "POSTGRESQL"+strings.TrimPrefix(url, "postgres"))
	if strings.Contains(upper.Path(), pw) {
		t.Errorf("Path() = %s", upper.Path())
	}
	if _, err := Open(ctx, url+"&sslmode=bogus", ReadWrite); !errors.Is(err, fault.ErrInvalid) || strings.Contains(err.Error(), pw) {
		t.Errorf("a bad sslmode: %v", err)
	}
}

// Read-only opens change nothing: a database blk never used is no state
// (or empty, for a dry run), and the server refuses any write.
func TestPostgresReadOnlyModes(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	if _, err := Open(ctx, url, ReadOnly); !errors.Is(err, ErrNotFound) {
		t.Errorf("read-only open of an unused database: %v", err)
	}
	if _, err := Open(ctx, url, Existing); !errors.Is(err, ErrNotFound) {
		t.Errorf("open of an unused database for a delete: %v", err)
	}
	empty, err := Open(ctx, url, ReadOnlyOrEmpty)
	if err != nil || !empty.Missing() {
		t.Fatalf("dry-run open of an unused database: %v", err)
	}
	empty.Close()
	if v, _ := open(t, url).schemaVersion(ctx); v != len(migrations) {
		t.Fatalf("schema version %d", v)
	}
	ro, err := Open(ctx, url, ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.InsertVolume(ctx, &Volume{UUID: "u1", Name: "db1", Backend: "b", SizeBytes: 1, Status: Creating}); err == nil ||
		!strings.Contains(err.Error(), "read-only transaction") {
		t.Errorf("write through a read-only open: %v", err)
	}
}

// Many blk processes starting at once on a new database migrate it once.
func TestPostgresFirstOpensRaceSafely(t *testing.T) {
	url := pgtest.URL(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), url, ReadWrite)
			if err == nil {
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
}

// A blk killed (SIGKILL) while it holds the write lock does not keep it:
// the server ends the transaction with the connection.
func TestPostgresLockDiesWithItsHolder(t *testing.T) {
	if url := os.Getenv("BLK_TEST_HOLD_LOCK"); url != "" {
		s, err := Open(context.Background(), url, ReadWrite)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		s.tx(context.Background(), func(t tx) error {
			fmt.Println("locked")
			time.Sleep(time.Hour)
			return nil
		})
		os.Exit(0)
	}
	url := pgtest.URL(t)
	s := open(t, url)
	cmd := osexec.Command(os.Args[0], "-test.run=^TestPostgresLockDiesWithItsHolder$")
	cmd.Env = append(os.Environ(), "BLK_TEST_HOLD_LOCK="+url)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "locked" {
		t.Fatalf("holder: %q %v", buf, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	if _, err := s.BeginOp(ctx, "create", "u1"); err == nil {
		t.Fatal("took the lock its holder has")
	}
	cancel()
	cmd.Process.Kill()
	cmd.Wait()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.BeginOp(ctx, "create", "u1"); err != nil {
		t.Errorf("after the holder was killed: %v", err)
	}
}

// Two migrates at once, and a blk that opened the state before the copy:
// once the state is moved, nobody writes to it any more.
func TestNothingWritesToAMovedState(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	src := open(t, path)
	fill(t, src)
	early := open(t, path) // a cron job's blk, opened just before
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := open(t, path)
			_, errs[i] = s.CopyTo(ctx, open(t, pgtest.URL(t)), false)
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("two migrates at once: %v; %v", errs[0], errs[1])
	}
	loser := errors.Join(errs...)
	if !errors.Is(loser, fault.ErrInvalid) || !strings.Contains(loser.Error(), "moved to postgres://") {
		t.Errorf("the second migrate: %v", loser)
	}
	if _, err := early.InsertVolume(ctx, &Volume{UUID: "u9", Name: "late", Backend: "b", SizeBytes: 1, Status: Creating}); err == nil ||
		!strings.Contains(err.Error(), "moved to postgres://") {
		t.Errorf("a write through a store opened before the move: %v", err)
	}
}

// A migrate killed between its two commits left the target full and the
// source live: run again, it sees the same rows and only retires the
// source. The same state under another name is refused at once.
func TestCopyKilledBeforeItRetiredTheSourceIsFinished(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	src := open(t, path)
	fill(t, src)
	// An older blk kept a tool's raw bytes: the copy stores them replaced.
	raw, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err = raw.Exec(`UPDATE volumes SET last_error = ? WHERE uuid = 'u2'`, "truncate: \xff\x00"); err != nil {
		t.Fatal(err)
	}
	url := pgtest.URL(t)
	dst := open(t, url)
	if _, err = src.CopyTo(ctx, dst, false); err != nil {
		t.Fatal(err)
	}
	src.Close()
	raw.Exec(`DELETE FROM moved`)
	raw.Close()
	src = open(t, path)
	got, err := src.CopyTo(ctx, dst, false)
	if !errors.Is(err, ErrCopiedBefore) || fmt.Sprint(got) != "[{volumes 2} {attachments 1} {snapshots 1} {backups 1} {operations 3}]" {
		t.Errorf("rerun: %v %v", got, err)
	}
	if _, err = Open(ctx, path, ReadOnly); err == nil || !strings.Contains(err.Error(), "moved to") {
		t.Errorf("the source after the rerun: %v", err)
	}

	other := open(t, filepath.Join(t.TempDir(), "a.db"))
	link := filepath.Join(t.TempDir(), "link.db")
	os.Symlink(other.Path(), link)
	start := time.Now()
	if _, err = other.CopyTo(ctx, open(t, link), false); !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), "is the state being copied") {
		t.Errorf("a copy into itself: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a copy into itself took %v", d)
	}
}

// Names sort byte by byte, as in SQLite, whatever the database's locale;
// bytes PostgreSQL refuses (NUL, invalid UTF-8), as a tool's stderr may
// hold, are stored replaced, and the JSON list stays valid.
func TestPostgresSortsAndStoresTextAsSQLite(t *testing.T) {
	ctx := context.Background()
	for _, st := range []*Store{open(t, filepath.Join(t.TempDir(), "state.db")), open(t, pgtest.URL(t))} {
		names := []string{"b", "ab", "a_d", "a1", "a.b", "a-c", "B"}
		for i, n := range names {
			op, err := st.InsertVolume(ctx, &Volume{UUID: fmt.Sprintf("u%d", i), Name: n, Backend: "b", SizeBytes: 1, Status: Creating})
			if err != nil {
				t.Fatal(err)
			}
			op.End(ctx, nil)
		}
		bad := "lvextend: \xff\xfe bad \x00 bytes"
		if _, err := st.MoveVolume(ctx, "u0", Move{From: []string{Creating}, To: Error, LastError: &bad}); err != nil {
			t.Errorf("postgres=%v: a status move with raw bytes in its error: %v", st.db.pg, err)
		}
		vols, err := st.ListVolumes(ctx, VolumeFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range vols {
			got = append(got, v.Name)
		}
		if want := slices.Sorted(slices.Values(names)); !reflect.DeepEqual(got, want) {
			t.Errorf("postgres=%v: order %q, want %q", st.db.pg, got, want)
		}
		var js strings.Builder
		if err := st.WriteVolumesJSON(ctx, VolumeFilter{}, &js); err != nil || !json.Valid([]byte(js.String())) {
			t.Errorf("postgres=%v: JSON list (%v): %q", st.db.pg, err, js.String())
		}
		if v, _ := st.Volume(ctx, "u0"); v.LastError != "lvextend: \uFFFD bad \uFFFD bytes" {
			t.Errorf("postgres=%v: last error stored as %q", st.db.pg, v.LastError)
		}
	}
}

// Two states in two schemas of one database (search_path=) have locks of
// their own: a copy from one into the other does not wait for itself.
func TestCopyBetweenTwoSchemasOfOneDatabase(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err = c.Exec(ctx, `CREATE SCHEMA a; CREATE SCHEMA b`); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	src := open(t, url+"&search_path=a")
	fill(t, src)
	defer func(d time.Duration) { BusyTimeout = d }(BusyTimeout)
	BusyTimeout = 3 * time.Second
	if _, err = src.CopyTo(ctx, open(t, url+"&search_path=b"), false); err != nil {
		t.Fatal(err)
	}
	if vols, _ := open(t, url+"&search_path=b").ListVolumes(ctx, VolumeFilter{}); len(vols) != 2 {
		t.Errorf("schema b holds %d volumes", len(vols))
	}
}
