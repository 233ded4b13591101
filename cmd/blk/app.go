package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/blk-project/blk/internal/config"
	"github.com/blk-project/blk/state"
	"github.com/blk-project/blk/volume"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// DefaultConfigFile is read when neither --config nor BLK_CONFIG names one.
const DefaultConfigFile = "/etc/blk/blk.yaml"

// App holds what every command shares: streams, global flags, and the
// dependencies built from them on first use.
type App struct {
	In       io.Reader
	Out, Err io.Writer

	ConfigFile string
	StateFile  string
	Output     string
	DryRun     bool
	Verbose    bool
	Quiet      bool
	Yes        bool
	Timeout    time.Duration

	// tty says which streams are terminals; run detects it unless a test
	// set it.
	tty *ttys

	// hostsHook, when set, adjusts the hosts before use (tests swap runners).
	hostsHook func(*volume.Hosts)

	cfg     *config.Config
	cfgFrom string            // the file read, "" for the built-in default
	sources map[string]string // setting -> where its value came from
	svc     *volume.Service
	ctx     context.Context // the command's, bounded by --timeout
	cancel  context.CancelFunc
	stderr  *statusWriter
	plan    *planWriter // a dry run's commands, when printed as JSON or YAML

	rootFlags *pflag.FlagSet
}

type ttys struct{ in, out, err bool }

// globals are the flags that every command takes, with the environment
// variable each reads when the flag is not given.
var globals = []struct{ flag, env string }{
	{"config", "BLK_CONFIG"},
	{"state", "BLK_STATE"},
	{"output", "BLK_OUTPUT"},
	{"dry-run", "BLK_DRY_RUN"},
	{"verbose", "BLK_VERBOSE"},
	{"quiet", "BLK_QUIET"},
	{"yes", "BLK_YES"},
	{"timeout", "BLK_TIMEOUT"},
}

// configEnv are the configuration keys an environment variable may set.
var configEnv = []struct{ key, env string }{
	{"state", "BLK_STATE"},
	{"defaults.backend", "BLK_DEFAULTS_BACKEND"},
	{"defaults.backup_repo", "BLK_DEFAULTS_BACKUP_REPO"},
}

const envHelp = `ENVIRONMENT
  Each global flag has a variable, used when the flag is not given:
  BLK_CONFIG, BLK_STATE, BLK_OUTPUT, BLK_DRY_RUN, BLK_VERBOSE, BLK_QUIET,
  BLK_YES, BLK_TIMEOUT (booleans: 1, true, 0, false). Configuration keys:
  BLK_STATE (state), BLK_DEFAULTS_BACKEND (defaults.backend),
  BLK_DEFAULTS_BACKUP_REPO (defaults.backup_repo). Flags win over the
  environment, which wins over the file. 'blk config show' prints each
  value and where it came from.`

func (a *App) bindFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	a.rootFlags = f
	f.StringVar(&a.ConfigFile, "config", "", "configuration file (default $BLK_CONFIG, else "+DefaultConfigFile+", else the built-in local lab layout)")
	f.StringVar(&a.StateFile, "state", "", "state file or postgres:// URL (default $BLK_STATE, else the config's state)")
	f.StringVarP(&a.Output, "output", "o", "", "output format: table, wide, json or yaml (default table on a terminal, tab-separated rows when piped)")
	f.BoolVar(&a.DryRun, "dry-run", false, "print per host the commands that would change something; change nothing")
	f.BoolVarP(&a.Verbose, "verbose", "v", false, "log every external command (host, argv, duration, exit code) to stderr")
	f.BoolVarP(&a.Quiet, "quiet", "q", false, "print only names (or nothing), warnings and errors")
	f.BoolVar(&a.Yes, "yes", false, "confirm destructive work without asking")
	f.DurationVar(&a.Timeout, "timeout", time.Hour, "give up (and roll back) after this long; 0 means no limit")
}

// settle applies the environment to flags not given, and checks the flags.
func (a *App) settle(cmd *cobra.Command) error {
	a.sources = map[string]string{}
	var errs []error
	cmd.Root().PersistentFlags().VisitAll(func(f *pflag.Flag) {
		for _, g := range globals {
			if g.flag != f.Name {
				continue
			}
			switch v, set := os.LookupEnv(g.env); {
			case f.Changed:
				a.sources[g.flag] = "flag --" + g.flag
			case set && v != "":
				if err := f.Value.Set(v); err != nil {
					errs = append(errs, fmt.Errorf("%s=%q: %v", g.env, truncate(v, 40), err))
				}
				a.sources[g.flag] = "env " + g.env
			default:
				a.sources[g.flag] = "default"
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if a.Timeout < 0 {
		return fmt.Errorf("--timeout %s: must be positive, or 0 for no limit", a.Timeout)
	}
	return a.checkOutput()
}

// inputError is bad input found by the CLI itself: exit 2, no help hint.
type inputError struct{ err error }

func (e inputError) Error() string   { return e.err.Error() }
func (e inputError) Unwrap() []error { return []error{volume.ErrInvalid, e.err} }

func badInput(format string, args ...any) error {
	return inputError{fmt.Errorf(format, args...)}
}

// configFile is the file to read, whether one was asked for, and where
// the choice came from.
func (a *App) configFile() (file string, explicit bool, source string) {
	switch {
	case a.ConfigFile != "":
		return a.ConfigFile, true, a.sources["config"]
	case os.Getenv("BLK_CONFIG") != "":
		return os.Getenv("BLK_CONFIG"), true, "env BLK_CONFIG"
	}
	return DefaultConfigFile, false, "default"
}

// loadConfig reads the configuration: the file (or the built-in default),
// then BLK_* environment variables, then flags.
func (a *App) loadConfig() (*config.Config, error) {
	if a.cfg != nil {
		return a.cfg, nil
	}
	if a.sources == nil {
		a.sources = map[string]string{}
	}
	file, explicit, _ := a.configFile()
	cfg := config.Default()
	data, err := os.ReadFile(file)
	switch {
	case err == nil:
		if cfg, err = config.Parse(file, data); err != nil {
			return nil, inputError{err}
		}
		a.cfgFrom = file
	case explicit || !errors.Is(err, fs.ErrNotExist):
		if errors.Is(err, fs.ErrNotExist) {
			return nil, badInput("config %s: no such file", file)
		}
		return nil, badInput("config %s: %v", file, errors.Unwrap(err))
	}
	stateFrom := "config"
	for _, e := range configEnv {
		v := os.Getenv(e.env)
		if v == "" {
			continue
		}
		a.sources["config:"+e.key] = "env " + e.env
		switch e.key {
		case "state":
			cfg.State, stateFrom = v, "env"
		case "defaults.backend":
			cfg.Defaults.Backend = v
		case "defaults.backup_repo":
			cfg.Defaults.BackupRepo = v
		}
	}
	if a.StateFile != "" {
		// settle gives --state BLK_STATE's value when the flag is not set.
		cfg.State, stateFrom = a.StateFile, "flag"
		a.sources["config:state"] = "flag --state"
		if a.sources["state"] == "env BLK_STATE" {
			stateFrom, a.sources["config:state"] = "env", "env BLK_STATE"
		}
	}
	from := a.cfgFrom
	if from == "" {
		from = "built-in default (" + DefaultConfigFile + " does not exist)"
	}
	if err = cfg.Validate(from); err != nil {
		return nil, inputError{err}
	}
	if cfg.State, err = statePath(cfg.State, stateFrom, a.cfgFrom); err != nil {
		return nil, inputError{err}
	}
	a.cfg = cfg
	return cfg, nil
}

// statePath makes the state path one file whatever the working directory:
// ~ is the home directory; a relative path in the config file is relative to
// the file, one given with --state to the working directory, as any file
// argument. A relative BLK_STATE is refused: the environment is set once (in
// a profile, a crontab) and read from wherever blk starts.
func statePath(p, from, configFile string) (string, error) {
	if state.IsURL(p) {
		return p, nil
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("state %s: %w", p, err)
		}
		p = filepath.Join(home, p[1:])
	}
	if filepath.IsAbs(p) {
		return p, nil
	}
	switch {
	case from == "env":
		return "", fmt.Errorf("BLK_STATE %q is a relative path: give an absolute one (cron and a shell start in different directories)", p)
	case from == "config" && configFile != "":
		dir, err := filepath.Abs(filepath.Dir(configFile))
		return filepath.Join(dir, p), err
	}
	return filepath.Abs(p)
}

// service builds the workflows' dependencies once per invocation. Only
// ReadWrite may create the state file; a dry run never does (a mistyped
// --state must not make a new empty one).
func (a *App) service(ctx context.Context, mode state.Mode) (*volume.Service, error) {
	if a.svc != nil {
		return a.svc, nil
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	switch {
	case a.DryRun && mode == state.ReadWrite:
		mode = state.ReadOnlyOrEmpty
	case a.DryRun && mode == state.Existing:
		mode = state.ReadOnly
	}
	st, err := state.Open(ctx, cfg.State, mode)
	if err != nil {
		return nil, err
	}
	st.TakeOver = func(msg string) { a.warn("%s", msg) }
	var log *slog.Logger
	if a.Verbose {
		log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var dry io.Writer
	if a.DryRun {
		dry = a.Out
		if a.Output == "json" || a.Output == "yaml" {
			a.plan = &planWriter{}
			dry = a.plan
		}
	}
	hosts := volume.NewHosts(cfg, log, dry)
	if a.hostsHook != nil {
		a.hostsHook(hosts)
	}
	file := a.cfgFrom
	if file == "" {
		file = "built-in default"
	}
	a.svc = volume.NewService(cfg, file, st, hosts)
	if !a.Quiet && !a.DryRun { // a dry run does no long work to show
		a.svc.Progress = newProgress(a.stderr, a.tty.err)
	}
	return a.svc, nil
}

func (a *App) close() {
	if a.svc != nil {
		a.svc.Hosts.Close()
		a.svc.State.Close()
	}
	if a.cancel != nil {
		a.cancel()
	}
}

// context bounds a command by --timeout (0: no limit).
func (a *App) context(cmd *cobra.Command) context.Context {
	if a.ctx != nil {
		return a.ctx
	}
	if a.Timeout == 0 {
		a.ctx, a.cancel = context.WithCancel(cmd.Context())
	} else {
		a.ctx, a.cancel = context.WithTimeout(cmd.Context(), a.Timeout)
	}
	return a.ctx
}

// timedOut says whether the command stopped because --timeout ran out.
func (a *App) timedOut() bool {
	return a.ctx != nil && errors.Is(a.ctx.Err(), context.DeadlineExceeded)
}

// withService runs fn with the command's context (bounded by --timeout) and
// the workflows.
func (a *App) withService(cmd *cobra.Command, fn func(ctx context.Context, svc *volume.Service) error) error {
	return a.withReader(cmd, state.ReadWrite, fn)
}

// withReader is withService for a command that only reads the state file
// (mode ReadOnly or ReadOnlyOrEmpty), or changes volumes it must already
// hold (Existing): it never creates the file.
func (a *App) withReader(cmd *cobra.Command, mode state.Mode, fn func(ctx context.Context, svc *volume.Service) error) error {
	ctx := a.context(cmd)
	svc, err := a.service(ctx, mode)
	if err != nil {
		return err
	}
	return fn(ctx, svc)
}

// note prints a message for people on stderr, unless -q.
func (a *App) note(format string, args ...any) {
	if !a.Quiet {
		fmt.Fprintf(a.stderr, format+"\n", args...)
	}
}

// warn prints a warning on stderr, -q or not.
func (a *App) warn(format string, args ...any) {
	fmt.Fprintf(a.stderr, "blk: warning: "+format+"\n", args...)
}

// dryRunDone ends a dry run: the plan as JSON or YAML when asked for, and
// a note for people otherwise (the plan went to stdout as it was made).
func (a *App) dryRunDone() error {
	if a.plan != nil {
		return a.print(view{obj: a.plan.steps()})
	}
	a.note("dry run: nothing was changed")
	return nil
}

// confirm asks on a terminal; without one, --yes is required. Ctrl-C at
// the prompt interrupts.
func (a *App) confirm(ctx context.Context, what, question string) error {
	if a.Yes || a.DryRun {
		return nil
	}
	if !a.tty.in {
		return badInput("%s needs confirmation and stdin is not a terminal: pass --yes to confirm", what)
	}
	fmt.Fprintf(a.stderr, "%s [y/N] ", question)
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(a.In).ReadString('\n')
		answer <- line
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(a.stderr)
		return ctx.Err()
	case line := <-answer:
		if s := strings.ToLower(strings.TrimSpace(line)); s != "y" && s != "yes" {
			return badInput("%s not confirmed: nothing was changed", what)
		}
	}
	return nil
}

func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// truncate keeps a value the user typed short enough to echo in an error.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:n], len(s))
}
