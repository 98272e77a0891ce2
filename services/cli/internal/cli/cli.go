// Package cli is the taskforge command: a client of the Taskforge REST API
// built on the generated Go client, with cobra for commands, flags, help and
// shell completion.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/taskforge/taskforge/services/api/client"
)

// Exit codes. A script tells how a task ended from the code of `tasks wait`
// (and `watch`, `create --wait`) alone.
const (
	ExitOK        = 0 // done; the task completed
	ExitError     = 1 // the API refused, or could not be reached
	ExitUsage     = 2 // a bad command line or bad input (the API's 400 and 422 too)
	ExitFailed    = 3 // the task failed
	ExitCancelled = 4 // the task was cancelled
	ExitTimeout   = 5 // gave up waiting (--timeout) before the task ended
)

const exitCodesHelp = `Exit codes of taskforge:

  0  success; for wait, watch and create --wait: the task completed
  1  an error: the API refused the request (401, 403, 404, 409, 429, 5xx) or
     could not be reached
  2  a usage error: unknown command or flag, a bad value, or input the API
     rejected as invalid (400, 422): the message names the field
  3  the task failed
  4  the task was cancelled
  5  gave up waiting (--timeout) before the task ended
`

// version and revision are stamped at build time with
// -X github.com/taskforge/taskforge/services/cli/internal/cli.version=...
var version, revision string

// IO is where a command reads and writes.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
}

// exitError carries an exit code through cobra's error return.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

func usageErrorf(format string, a ...any) error {
	return exitWith(ExitUsage, fmt.Errorf(format, a...))
}

// Run runs the command line args and returns the exit code.
func Run(ctx context.Context, args []string, stdio IO) int {
	app := newApp(stdio)
	root := app.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	code := ExitError
	if errors.As(err, &ee) {
		code = ee.code
	} else if !errors.As(err, new(*client.APIError)) && !isNetworkError(err) && ctx.Err() == nil {
		// cobra's own errors: unknown command, unknown or bad flag, arity.
		code = ExitUsage
	}
	if code == ExitFailed || code == ExitCancelled {
		// The task's outcome was printed already.
		if ee != nil && ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stdio.Err, "taskforge:", ee.err)
		}
		return code
	}
	fmt.Fprintln(stdio.Err, "taskforge:", err)
	if code == ExitUsage && !errors.As(err, new(*client.APIError)) {
		fmt.Fprintln(stdio.Err, "Run 'taskforge --help' for usage.")
	}
	return code
}

func versionString() string {
	v, r := version, revision
	if v == "" || r == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" && r == "" {
					r = s.Value
				}
			}
		}
	}
	if v == "" {
		v = "dev"
	}
	if r == "" {
		r = "unknown"
	}
	return fmt.Sprintf("taskforge %s (revision %s, %s)", v, r, goVersion())
}

func goVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return "go"
}

// app holds the global flags and what they resolve to.
type app struct {
	io IO

	url, token, tokenFile, contextName, output string
	noColor                                    bool
	configPath                                 string

	api *conn // set by connect
}

func newApp(stdio IO) *app { return &app{io: stdio} }

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "taskforge",
		Short: "Manage and follow Taskforge tasks, schedules and keys",
		Long: `taskforge talks to the Taskforge REST API.

The API's address comes from --url, TASKFORGE_URL, the current context of the
config file, or http://127.0.0.1:8080; the token from --token, --token-file,
TASKFORGE_TOKEN or the context. Contexts are kept in the config file
(` + "`taskforge config path`" + ` prints where), readable by its owner only.`,
		Version:       versionString(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		_, err := a.outputFormat()
		return err
	}
	f := root.PersistentFlags()
	f.StringVar(&a.url, "url", "", "API base URL (env TASKFORGE_URL)")
	f.StringVar(&a.token, "token", "", "API key or JWT (env TASKFORGE_TOKEN); prefer --token-file or a context")
	f.StringVar(&a.tokenFile, "token-file", "", "read the token from this file")
	f.StringVar(&a.contextName, "context", "", "use this context of the config file instead of the current one")
	f.StringVarP(&a.output, "output", "o", "table", "output format: table, json or yaml")
	f.BoolVar(&a.noColor, "no-color", false, "never colour the output (also when NO_COLOR is set)")
	f.StringVar(&a.configPath, "config", "", "config file (default: taskforge/config.yaml in the user's config directory)")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitWith(ExitUsage, err) })

	root.AddCommand(
		a.tasksCommand(),
		a.schedulesCommand(),
		a.workflowsCommand(),
		a.taskTypesCommand(),
		a.queuesCommand(),
		a.statsCommand(),
		a.apiKeysCommand(),
		a.auditCommand(),
		a.configCommand(),
		&cobra.Command{
			Use:   "exit-codes",
			Short: "What the exit codes of taskforge mean",
			Args:  cobra.NoArgs,
			Run: func(cmd *cobra.Command, _ []string) {
				fmt.Fprint(cmd.OutOrStdout(), exitCodesHelp)
			},
		},
	)
	return root
}

// outputFormat validates --output.
func (a *app) outputFormat() (string, error) {
	switch a.output {
	case "table", "json", "yaml":
		return a.output, nil
	}
	return "", usageErrorf("--output %q: want table, json or yaml", a.output)
}

// colour reports whether w may be coloured: a terminal, no NO_COLOR, no
// --no-color.
func (a *app) colour(w io.Writer) bool {
	if a.noColor || os.Getenv("NO_COLOR") != "" {
		return false
	}
	return isTerminal(w)
}
