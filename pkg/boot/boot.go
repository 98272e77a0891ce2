// Package boot holds the start-up steps every service shares: read the --config
// flag, load and validate the configuration, build the logger (Start), open
// PostgreSQL and Redis with their readiness checks (Open), and build the keyring
// of secret params (Keyring). main stays a list of wiring.
package boot

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/buildinfo"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/health"
	"github.com/taskforge/taskforge/pkg/logging"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/store"
)

// Flags are the command-line flags every service accepts.
type Flags struct {
	// ConfigPath is --config; empty means $TASKFORGE_CONFIG or none.
	ConfigPath string
	// PrintConfig prints the effective configuration (secrets masked) and exits.
	PrintConfig bool
	// Version prints the build (buildinfo) and exits.
	Version bool
	// Args are the remaining arguments (subcommands).
	Args []string
}

// flagSet declares the flags every service accepts.
func flagSet(program string, f *Flags) *flag.FlagSet {
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	fs.StringVar(&f.ConfigPath, "config", "", "YAML configuration file (default $TASKFORGE_CONFIG)")
	fs.BoolVar(&f.PrintConfig, "print-config", false, "print the effective configuration, secrets masked, and exit")
	fs.BoolVar(&f.Version, "version", false, "print the version, revision and Go version, and exit")
	return fs
}

// ParseFlags parses args (without the program name). A flag error is printed to
// stderr with a hint to --help; -h and --help return flag.ErrHelp silently.
func ParseFlags(program string, args []string, stderr io.Writer) (Flags, error) {
	var f Flags
	fs := flagSet(program, &f)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "%s: %v (see %s --help)\n", program, err, program)
		}
		return f, err
	}
	f.Args = fs.Args()
	return f, nil
}

// WriteUsage writes a service's help: its synopsis and commands (usage, as the
// service words it), then the flags every service accepts.
func WriteUsage(w io.Writer, program, usage string) {
	fmt.Fprintf(w, "Usage: %s [flags] [command]\n\n%s\n\nFlags:\n", program, strings.TrimSpace(usage))
	fs := flagSet(program, &Flags{})
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprintf(w, "\nEvery configuration key can also be set as a TASKFORGE_* environment variable\n"+
		"(config/taskforge.example.yaml lists them).\n")
}

// Config loads and validates the configuration.
func Config(f Flags) (config.Config, error) {
	cfg, err := config.Load(f.ConfigPath)
	if err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// Logger builds the service's logger from cfg.
func Logger(service string, cfg config.Config) (*zap.Logger, error) {
	return logging.New(service, cfg.Log.Level, cfg.Log.Format, cfg.IsDevelopment())
}

// Deps are the connections a service holds.
type Deps struct {
	DB          *gorm.DB
	RedisOpt    asynq.RedisConnOpt
	RedisClient redis.UniversalClient
	Registry    *prometheus.Registry
	Checker     *health.Checker
}

// Open connects to PostgreSQL and Redis lazily (a service starts while either is
// down and heals when it returns) and builds the metrics registry and readiness
// checks.
func Open(cfg config.Config) (*Deps, error) {
	db, err := store.Open(store.FromConfig(cfg.Database))
	if err != nil {
		return nil, err
	}
	opt, err := queue.RedisOpt(cfg.Redis)
	if err != nil {
		return nil, err
	}
	rc := queue.Client(opt)
	reg := prometheus.NewRegistry()
	if err := RegisterProcessMetrics(reg); err != nil {
		return nil, err
	}
	if err := RegisterPoolMetrics(reg, db); err != nil {
		return nil, err
	}
	checker := health.NewChecker(map[string]health.Check{
		"postgres": func(ctx context.Context) error { return store.Ping(ctx, db) },
		"redis":    func(ctx context.Context) error { return queue.Ping(ctx, rc) },
	}, reg)
	return &Deps{DB: db, RedisOpt: opt, RedisClient: rc, Registry: reg, Checker: checker}, nil
}

// RegisterProcessMetrics adds what every service exports about itself to reg:
// the Go runtime and process collectors and taskforge_build_info.
func RegisterProcessMetrics(reg prometheus.Registerer) error {
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return err
	}
	return buildinfo.Register(reg)
}

// RegisterPoolMetrics adds the PostgreSQL connection pool's figures of db to
// reg: client_golang's go_sql_* collector (open, in use and idle connections,
// the pool's maximum, waits for a connection and their time), labelled
// db_name="taskforge".
func RegisterPoolMetrics(reg prometheus.Registerer, db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("boot: pool metrics: %w", err)
	}
	return reg.Register(collectors.NewDBStatsCollector(sqlDB, "taskforge"))
}

// Close closes the connections.
func (d *Deps) Close() error {
	var errs []error
	if sqlDB, err := d.DB.DB(); err == nil {
		errs = append(errs, sqlDB.Close())
	}
	errs = append(errs, d.RedisClient.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("boot: close: %w", err)
	}
	return nil
}
