package boot

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/config"
)

// Started is what Start hands a service: its flags, its validated
// configuration and its logger.
type Started struct {
	Flags  Flags
	Config config.Config
	// Log is the service's logger; the caller syncs it before exiting. It is
	// nil when Done is true.
	Log *zap.Logger
	// Done reports that the command line was already answered (--help, or
	// --print-config printed the configuration): the service returns at once.
	Done bool
}

// Start runs the start-up steps every service shares: it parses args (without
// the program name), loads and validates the configuration, answers --help and
// --print-config (secrets masked) on stderr and stdout, and builds the logger.
// A flag, configuration or logger error is returned as is.
func Start(service string, args []string, stdout, stderr io.Writer) (Started, error) {
	flags, err := ParseFlags(service, args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return Started{Flags: flags, Done: true}, nil
	}
	if err != nil {
		return Started{}, err
	}
	cfg, err := Config(flags)
	if err != nil {
		return Started{}, err
	}
	if flags.PrintConfig {
		_, err := fmt.Fprint(stdout, cfg.String())
		return Started{Flags: flags, Config: cfg, Done: true}, err
	}
	log, err := Logger(service, cfg)
	if err != nil {
		return Started{}, err
	}
	return Started{Flags: flags, Config: cfg, Log: log}, nil
}
