package boot

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/buildinfo"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/tracing"
)

// Started is what Start hands a service: its flags, its validated
// configuration and its logger.
type Started struct {
	Flags  Flags
	Config config.Config
	// Log is the service's logger; the caller syncs it before exiting. It is
	// nil when Done is true.
	Log *zap.Logger
	// FlushTraces exports the spans still buffered and stops tracing (see
	// tracing.Setup); the service calls it last on shutdown, with a context
	// bounded by its shutdown timeout. Without tracing it does nothing.
	FlushTraces func(context.Context) error
	// Done reports that the command line was already answered (--help, help,
	// --version, or --print-config printed the configuration): the service
	// returns at once.
	Done bool
}

// Service names a service for Start.
type Service struct {
	// Name is the short name used in logs, such as "api".
	Name string
	// Usage describes the commands after the flags, for --help.
	Usage string
	// Commands reports that the service takes commands after its flags;
	// without, any argument left after the flags is refused.
	Commands bool
}

// Program is the binary's name, such as "taskforge-api".
func (s Service) Program() string { return "taskforge-" + s.Name }

// Start runs the start-up steps every service shares: it parses args (without
// the program name), answers --help, -h and the help command (usage on stdout),
// --version, and --print-config (secrets masked) before anything else, loads
// and validates the configuration, builds the logger and sets tracing up
// (tracing.Setup, before any client is built). A flag, configuration, logger
// or tracing error is returned as is.
func Start(svc Service, args []string, stdout, stderr io.Writer) (Started, error) {
	flags, err := ParseFlags(svc.Program(), args, stderr)
	if errors.Is(err, flag.ErrHelp) || (err == nil && len(flags.Args) > 0 && flags.Args[0] == "help") {
		WriteUsage(stdout, svc.Program(), svc.Usage)
		return Started{Flags: flags, Done: true}, nil
	}
	if err != nil {
		return Started{}, err
	}
	if !svc.Commands && len(flags.Args) > 0 {
		return Started{}, fmt.Errorf("unexpected argument %q: %s takes no command (see %s --help)",
			flags.Args[0], svc.Program(), svc.Program())
	}
	if flags.Version {
		_, err := fmt.Fprintln(stdout, buildinfo.Get().String(svc.Program()))
		return Started{Flags: flags, Done: true}, err
	}
	cfg, err := Config(flags)
	if err != nil {
		return Started{}, err
	}
	if flags.PrintConfig {
		_, err := fmt.Fprint(stdout, cfg.String())
		return Started{Flags: flags, Config: cfg, Done: true}, err
	}
	log, err := Logger(svc.Name, cfg)
	if err != nil {
		return Started{}, err
	}
	flush, err := tracing.Setup(context.Background(), cfg.Tracing, svc.Program())
	if err != nil {
		return Started{}, err
	}
	if tracing.Enabled() {
		log.Info("tracing on", zap.Float64("sample_ratio", cfg.Tracing.SampleRatio))
	}
	return Started{Flags: flags, Config: cfg, Log: log, FlushTraces: flush}, nil
}

// StopTracing exports the spans still buffered within timeout (the
// service's shutdown timeout) and stops tracing; a failure is logged.
func (s Started) StopTracing(timeout time.Duration) {
	if s.FlushTraces == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.FlushTraces(ctx); err != nil && s.Log != nil {
		s.Log.Warn("spans not exported", zap.Error(err))
	}
}
