package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/internal/exec"
	"github.com/blk-project/blk/internal/exec/exectest"
	"github.com/blk-project/blk/volume"
)

// blkWith runs the CLI like blk, with the streams' terminal-ness and the
// context chosen by the test.
func blkWith(t *testing.T, ctx context.Context, tty ttys, in io.Reader, dir string, hook func(*volume.Hosts), args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	app := &App{In: in, Out: &out, Err: &errOut, tty: &tty, hostsHook: hook}
	code := run(ctx, app, append([]string{"--config", filepath.Join(dir, "blk.yaml")}, args...))
	return result{code, out.String(), errOut.String()}
}

func fakeHosts(f exec.Runner) func(*volume.Hosts) {
	return func(h *volume.Hosts) { h.New = func(string, config.Host) exec.Runner { return f } }
}

func TestUnknownCommandsAndBadArgumentsExitTwo(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus" for "blk"`},
		{[]string{"volume", "lst"}, `did you mean "list"?`},
		{[]string{"volume", "remov", "x"}, `did you mean "remove"?`},
		{[]string{"volume", "show"}, "accepts 1 arg(s)"},
		{[]string{"vol", "bogus"}, `unknown command "bogus" for "blk volume"`},
		{[]string{"host", "chek"}, `did you mean "check"?`},
		{[]string{"completion", "bash", "extra"}, "accepts 1 arg(s), received 2"},
		{[]string{"completion", "nosuch"}, `invalid argument "nosuch"`},
		{[]string{"help", "nosuch"}, `unknown command "nosuch" for "blk"`},
		{[]string{"help", "volume", "nosuch"}, `unknown command "nosuch" for "blk volume"`},
		{[]string{"--timeout", "-5s", "volume", "list"}, "--timeout -5s: must be positive, or 0 for no limit"},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"-o", "xml", "version"}, `unknown output format "xml"`},
	} {
		r := blk(t, dir, nil, c.args...)
		if r.code != ExitUsage || !strings.Contains(r.errOut, c.want) || r.out != "" {
			t.Errorf("%v: code %d, stdout %q, stderr %q; want 2 and %q", c.args, r.code, r.out, r.errOut, c.want)
		}
		if strings.Contains(r.errOut, "blk blk") {
			t.Errorf("%v: hint names the root twice: %q", c.args, r.errOut)
		}
	}
	r := blk(t, dir, nil, "--bogus")
	if !strings.Contains(r.errOut, "see 'blk --help'") {
		t.Errorf("root flag error hint: %q", r.errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db")); err == nil {
		t.Error("bad usage created the state file")
	}
}

func TestAliasesPeopleType(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	f := exectest.New(t, "stor1")
	f.Handle(fakeLVM())
	if r := blk(t, dir, f, "volume", "create", "db1", "--size", "1GiB"); r.code != 0 {
		t.Fatalf("create: %d %s", r.code, r.errOut)
	}
	if r := blk(t, dir, f, "volume", "ls"); r.code != 0 || !strings.HasPrefix(r.out, "db1\t") {
		t.Errorf("volume ls: %d %q %q", r.code, r.out, r.errOut)
	}
	if r := blk(t, dir, f, "volume", "rm", "db1", "--yes"); r.code != 0 {
		t.Errorf("volume rm: %d %q", r.code, r.errOut)
	}
	if r := blk(t, dir, f, "volume", "rm", "db1", "--yes"); r.code != ExitNotFound {
		t.Errorf("volume rm of a deleted volume: %d %q", r.code, r.errOut)
	}
}

// stdinNever is a terminal where nobody answers.
type stdinNever struct{ ch chan struct{} }

func (s stdinNever) Read([]byte) (int, error) { <-s.ch; return 0, io.EOF }

func TestConfirmation(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	r := blkWith(t, context.Background(), ttys{in: true}, strings.NewReader("n\n"), dir, nil, "volume", "delete", "db1")
	if r.code != ExitUsage || !strings.Contains(r.errOut, "blk: error: delete not confirmed: nothing was changed") ||
		strings.Contains(r.errOut, "invalid input") {
		t.Errorf("answer n: %d %q", r.code, r.errOut)
	}
	// Ctrl-C at the prompt.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	never := stdinNever{make(chan struct{})}
	defer close(never.ch)
	done := make(chan result)
	go func() {
		done <- blkWith(t, ctx, ttys{in: true}, never, dir, nil, "volume", "delete", "db1")
	}()
	select {
	case r = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Ctrl-C at the [y/N] prompt was ignored")
	}
	if r.code != ExitInterrupted || !strings.Contains(r.errOut, "blk: error: interrupted") || strings.Contains(r.errOut, "context") {
		t.Errorf("Ctrl-C at the prompt: %d %q", r.code, r.errOut)
	}
}

// stuck is a host whose commands run until they are cancelled.
type stuck struct{ *exectest.Fake }

func (s *stuck) Run(ctx context.Context, cmd exec.Cmd) (exec.Result, error) {
	if cmd.Args[0] != "lvcreate" {
		return s.Fake.Run(ctx, cmd)
	}
	<-ctx.Done()
	return exec.Result{}, &exec.Error{Host: "stor1", Args: cmd.Args, ExitCode: -1, Err: ctx.Err()}
}

func TestTimeoutAndInterruptSayWhatHappened(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	f := exectest.New(t, "stor1")
	f.Handle(fakeLVM())
	s := &stuck{f}
	r := blkWith(t, context.Background(), ttys{}, strings.NewReader(""), dir, fakeHosts(s),
		"--timeout", "100ms", "volume", "create", "db1", "--size", "1GiB")
	if r.code != ExitFailure || !strings.Contains(r.errOut, "timed out after 100ms (--timeout)") || strings.Contains(r.errOut, "deadline") {
		t.Errorf("timeout: %d %q", r.code, r.errOut)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	r = blkWith(t, ctx, ttys{}, strings.NewReader(""), dir, fakeHosts(s), "volume", "create", "db2", "--size", "1GiB")
	if r.code != ExitInterrupted || !strings.Contains(r.errOut, "interrupted") || strings.Contains(r.errOut, "context canceled") {
		t.Errorf("interrupt: %d %q", r.code, r.errOut)
	}
	// 0 is no limit, not an instant failure.
	if r := blk(t, dir, nil, "--timeout", "0", "volume", "list"); r.code != 0 {
		t.Errorf("--timeout 0: %d %q", r.code, r.errOut)
	}
}

func TestUnknownBackendIsBadInputListingTheConfigured(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	r := blk(t, dir, exectest.New(t, "stor1"), "volume", "create", "db1", "--size", "1GiB", "--backend", "lvm-9")
	if r.code != ExitUsage || !strings.Contains(r.errOut, `backend "lvm-9" is not configured (configured: lvm-1)`) {
		t.Errorf("%d %q", r.code, r.errOut)
	}
}

func TestLongNameIsNotEchoedWhole(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	long := strings.Repeat("a", 5000)
	for _, args := range [][]string{
		{"volume", "create", long, "--size", "1GiB"},
		{"volume", "show", long},
		{"volume", "delete", long, "--yes"},
		{"volume", "create", "db1", "--size", long + "GiB"},
	} {
		r := blk(t, dir, nil, args...)
		if r.code != ExitUsage || len(r.errOut) > 400 || !strings.Contains(r.errOut, "5000 bytes") && !strings.Contains(r.errOut, "bytes)") {
			t.Errorf("%s…: %d, %d bytes of stderr: %.200q", args[1], r.code, len(r.errOut), r.errOut)
		}
	}
}

func TestMistypedConfigKeyNamesLineAndNearestKey(t *testing.T) {
	dir := writeConfig(t, strings.Replace(goodConfig, "vg: blk", "vgg: blk", 1))
	r := blk(t, dir, nil, "volume", "list")
	want := fmt.Sprintf(`config %s line 6: backends.lvm-1.vgg: unknown key "vgg" (did you mean "vg"?)`, filepath.Join(dir, "blk.yaml"))
	if r.code != ExitUsage || !strings.Contains(r.errOut, want) || strings.Contains(r.errOut, "decoding failed") {
		t.Errorf("%d %q\nwant %q", r.code, r.errOut, want)
	}
}

func TestConfigShowSaysWhereEachValueCameFrom(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	t.Setenv("BLK_DEFAULTS_BACKEND", "lvm-1")
	t.Setenv("BLK_TIMEOUT", "5m")
	r := blk(t, dir, nil, "config", "show", "-o", "json", "--state", "/tmp/x.db")
	var got []Setting
	if err := json.Unmarshal([]byte(r.out), &got); err != nil || r.code != 0 {
		t.Fatalf("%d %q %q %v", r.code, r.out, r.errOut, err)
	}
	file := filepath.Join(dir, "blk.yaml")
	for _, want := range []Setting{
		{"config", file, "flag --config"},
		{"state", "/tmp/x.db", "flag --state"},
		{"defaults.backend", "lvm-1", "env BLK_DEFAULTS_BACKEND"},
		{"backends.lvm-1.vg", "blk", "file " + file + ":6"},
		{"hosts.stor1.port", "22", "default"},
		{"backends.lvm-1.max_over_subscription_ratio", "20", "default"},
		{"backends.lvm-1.max_pool_usage_percent", "90", "default"},
		{"--timeout", "5m0s", "env BLK_TIMEOUT"},
		{"--dry-run", "false", "default"},
	} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %+v in %+v", want, got)
		}
	}
	t.Setenv("BLK_TIMEOUT", "soon")
	if r := blk(t, dir, nil, "config", "show"); r.code != ExitUsage || !strings.Contains(r.errOut, `BLK_TIMEOUT="soon"`) {
		t.Errorf("bad BLK_TIMEOUT: %d %q", r.code, r.errOut)
	}
	if r := blk(t, dir, nil, "config", "show", "--help"); !strings.Contains(r.out, "BLK_DEFAULTS_BACKEND") {
		t.Errorf("config show --help does not document the environment: %q", r.out)
	}
}

func TestEnvironmentSetsGlobals(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	t.Setenv("BLK_OUTPUT", "json")
	if r := blk(t, dir, nil, "volume", "list"); r.code != 0 || strings.TrimSpace(r.out) != "[]" {
		t.Errorf("BLK_OUTPUT=json: %d %q %q", r.code, r.out, r.errOut)
	}
	t.Setenv("BLK_STATE", filepath.Join(dir, "other.db"))
	t.Setenv("BLK_OUTPUT", "")
	f := exectest.New(t, "stor1")
	f.Handle(fakeLVM())
	if r := blk(t, dir, f, "volume", "create", "db1", "--size", "1GiB"); r.code != 0 {
		t.Fatalf("create: %d %q", r.code, r.errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.db")); err != nil {
		t.Errorf("BLK_STATE not used: %v", err)
	}
}

func TestOutputForPeopleAndScripts(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	f := exectest.New(t, "stor1")
	f.Handle(fakeLVM())
	for _, n := range []string{"db1", "db2"} {
		if r := blk(t, dir, f, "volume", "create", n, "--size", "1GiB"); r.code != 0 {
			t.Fatalf("create: %d %q", r.code, r.errOut)
		}
	}
	// -q: names only.
	if r := blk(t, dir, f, "-q", "volume", "list"); r.out != "db1\ndb2\n" {
		t.Errorf("-q list: %q", r.out)
	}
	if r := blk(t, dir, f, "-q", "volume", "create", "db3", "--size", "1GiB"); r.out != "db3\n" || r.errOut != "" {
		t.Errorf("-q create: %q %q", r.out, r.errOut)
	}
	// Tables: no trailing spaces.
	tty := ttys{out: true}
	for _, args := range [][]string{{"volume", "list"}, {"volume", "list", "-o", "wide"}, {"volume", "show", "db1"}, {"config", "show"}} {
		r := blkWith(t, context.Background(), tty, strings.NewReader(""), dir, fakeHosts(f), args...)
		for line := range strings.Lines(r.out) {
			if strings.HasSuffix(strings.TrimSuffix(line, "\n"), " ") {
				t.Errorf("%v: trailing space in %q", args, line)
			}
		}
	}
	// Piped show: the JSON field names.
	r := blk(t, dir, f, "volume", "show", "db1")
	keys := map[string]string{}
	for line := range strings.Lines(r.out) {
		k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
		keys[k] = v
	}
	if keys["name"] != "db1" || keys["size_bytes"] != "1073741824" || keys["status"] != "available" {
		t.Errorf("piped show: %q", r.out)
	}
	if _, ok := keys["attachment"]; !ok {
		t.Errorf("piped show lacks attachment: %q", r.out)
	}
	for k := range keys {
		if strings.Contains(k, " ") {
			t.Errorf("piped show key %q is not a JSON field name", k)
		}
	}
}

func TestDryRunAsJSONIsThePlan(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	f := exectest.New(t, "stor1")
	f.Handle(fakeLVM())
	r := blk(t, dir, f, "--dry-run", "-o", "json", "volume", "create", "db1", "--size", "1GiB")
	var plan []planStep
	if err := json.Unmarshal([]byte(r.out), &plan); err != nil || r.code != 0 {
		t.Fatalf("%d %q %q: %v", r.code, r.out, r.errOut, err)
	}
	if len(plan) != 1 || plan[0].Host != "stor1" || !strings.HasPrefix(plan[0].Command, "lvcreate ") {
		t.Errorf("plan = %+v", plan)
	}
}

func TestVersion(t *testing.T) {
	r := blk(t, t.TempDir(), nil, "version", "-o", "json")
	var b BuildInfo
	if err := json.Unmarshal([]byte(r.out), &b); err != nil || b.Version == "" || !strings.HasPrefix(b.GoVersion, "go") || b.Commit == "" {
		t.Errorf("%d %q %v", r.code, r.out, err)
	}
	if r := blk(t, t.TempDir(), nil, "--version"); r.code != 0 || !strings.HasPrefix(r.out, "blk ") || !strings.Contains(r.out, "go1") {
		t.Errorf("--version: %d %q", r.code, r.out)
	}
}

func TestManPageOfAttachHasExitStatus(t *testing.T) {
	dir := t.TempDir()
	if r := blk(t, t.TempDir(), nil, "__man", dir); r.code != 0 {
		t.Fatalf("%d %q", r.code, r.errOut)
	}
	page, err := os.ReadFile(filepath.Join(dir, "blk-volume-attach.1"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), ".SH EXIT STATUS") || !strings.Contains(string(page), "interrupted") {
		t.Errorf("no EXIT STATUS section:\n%s", page)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) < 15 {
		t.Errorf("want one page per command, got %d", len(entries))
	}
}

func TestReadingCommandsNeverCreateTheStateFile(t *testing.T) {
	dir := writeConfig(t, goodConfig)
	missing := filepath.Join(dir, "typo", "state.db")
	r := blk(t, dir, nil, "--state", missing, "volume", "list")
	if r.code != 0 || !strings.Contains(r.errOut, "blk: warning: no state file at "+missing) {
		t.Errorf("list: %d %q", r.code, r.errOut)
	}
	if r := blk(t, dir, nil, "--state", missing, "volume", "show", "db1"); r.code != ExitNotFound {
		t.Errorf("show: %d %q", r.code, r.errOut)
	}
	if r := blk(t, dir, nil, "--state", missing, "host", "list"); r.code != 0 || r.errOut != "" {
		t.Errorf("host list: %d %q", r.code, r.errOut)
	}
	if _, err := os.Stat(filepath.Dir(missing)); err == nil {
		t.Error("a reading command created the state directory")
	}
}
