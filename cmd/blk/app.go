package main

import (
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
	"github.com/spf13/viper"
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

	// hostsHook, when set, adjusts the hosts before use (tests swap runners).
	hostsHook func(*volume.Hosts)

	cfg     *config.Config
	cfgFrom string
	svc     *volume.Service
	cancel  context.CancelFunc
}

func (a *App) bindFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&a.ConfigFile, "config", "", "configuration file (default $BLK_CONFIG, else "+DefaultConfigFile+", else the built-in local lab layout)")
	f.StringVar(&a.StateFile, "state", "", "state file (default: the config's state, $BLK_STATE)")
	f.StringVarP(&a.Output, "output", "o", "", "output format: table, wide, json or yaml (default table on a terminal, tab-separated rows when piped)")
	f.BoolVar(&a.DryRun, "dry-run", false, "print per host the commands that would change something; change nothing")
	f.BoolVarP(&a.Verbose, "verbose", "v", false, "log every external command (host, argv, duration, exit code) to stderr")
	f.BoolVarP(&a.Quiet, "quiet", "q", false, "print only results and errors")
	f.BoolVar(&a.Yes, "yes", false, "confirm destructive work without asking")
	f.DurationVar(&a.Timeout, "timeout", time.Hour, "give up (and roll back) after this long")
}

// loadConfig reads the configuration: the file (or the built-in default),
// then BLK_* environment variables, then flags.
func (a *App) loadConfig() (*config.Config, error) {
	if a.cfg != nil {
		return a.cfg, nil
	}
	v := viper.NewWithOptions(viper.KeyDelimiter("::"))
	v.SetEnvPrefix("BLK")
	file := a.ConfigFile
	if file == "" {
		file = os.Getenv("BLK_CONFIG")
	}
	explicit := file != ""
	if file == "" {
		file = DefaultConfigFile
	}
	cfg := config.Default()
	if _, err := os.Stat(file); err == nil || explicit {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%w: config %s: no such file", volume.ErrInvalid, file)
			}
			return nil, fmt.Errorf("%w: config %s: %s", volume.ErrInvalid, file, oneLine(err))
		}
		cfg = &config.Config{}
		if err := v.UnmarshalExact(cfg); err != nil {
			return nil, fmt.Errorf("%w: config %s: %s", volume.ErrInvalid, file, oneLine(err))
		}
		a.cfgFrom = file
	} else {
		a.cfgFrom = "built-in default"
	}
	stateFrom := "config"
	if s := os.Getenv("BLK_STATE"); s != "" {
		cfg.State, stateFrom = s, "env"
	}
	if b := os.Getenv("BLK_DEFAULTS_BACKEND"); b != "" {
		cfg.Defaults.Backend = b
	}
	if a.StateFile != "" {
		cfg.State, stateFrom = a.StateFile, "flag"
	}
	if err := cfg.Validate(a.cfgFrom); err != nil {
		return nil, fmt.Errorf("%w: %w", volume.ErrInvalid, err)
	}
	configFile := file
	if a.cfgFrom != file {
		configFile = "" // the built-in default
	}
	st, err := statePath(cfg.State, stateFrom, configFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", volume.ErrInvalid, err)
	}
	cfg.State = st
	a.cfg = cfg
	return cfg, nil
}

// statePath makes the state path one file whatever the working directory:
// ~ is the home directory; a relative path in the config file is relative to
// the file, one given with --state to the working directory, as any file
// argument. A relative BLK_STATE is refused: the environment is set once (in
// a profile, a crontab) and read from wherever blk starts.
func statePath(p, from, configFile string) (string, error) {
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
// ReadWrite may create the state file; a dry run never does.
func (a *App) service(ctx context.Context, mode state.Mode) (*volume.Service, error) {
	if a.svc != nil {
		return a.svc, nil
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	if a.DryRun && mode == state.ReadWrite {
		mode = state.ReadOnlyOrEmpty
	}
	st, err := state.Open(ctx, cfg.State, mode)
	if err != nil {
		return nil, err
	}
	var log *slog.Logger
	if a.Verbose {
		log = slog.New(slog.NewTextHandler(a.Err, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var dry io.Writer
	if a.DryRun {
		dry = a.Out
	}
	hosts := volume.NewHosts(cfg, log, dry)
	if a.hostsHook != nil {
		a.hostsHook(hosts)
	}
	a.svc = volume.NewService(cfg, a.cfgFrom, st, hosts)
	if isTerminal(a.Err) && !a.Quiet {
		a.svc.Progress = newProgress(a.Err)
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

// context bounds a command by --timeout.
func (a *App) context(cmd *cobra.Command) context.Context {
	ctx, cancel := context.WithTimeout(cmd.Context(), a.Timeout)
	a.cancel = cancel
	return ctx
}

// withService runs fn with the command's context (bounded by --timeout) and
// the workflows.
func (a *App) withService(cmd *cobra.Command, fn func(ctx context.Context, svc *volume.Service) error) error {
	return a.withReader(cmd, state.ReadWrite, fn)
}

// withReader is withService for a command that only reads the state file
// (mode ReadOnly or ReadOnlyOrEmpty): it never creates the file.
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
		fmt.Fprintf(a.Err, format+"\n", args...)
	}
}

// confirm asks on a terminal; without one, --yes is required.
func (a *App) confirm(question string) error {
	if a.Yes || a.DryRun {
		return nil
	}
	f, ok := a.In.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return fmt.Errorf("%w: stdin is not a terminal: pass --yes to confirm", volume.ErrInvalid)
	}
	fmt.Fprintf(a.Err, "%s [y/N] ", question)
	var answer string
	fmt.Fscanln(a.In, &answer)
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return fmt.Errorf("%w: not confirmed", volume.ErrInvalid)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
