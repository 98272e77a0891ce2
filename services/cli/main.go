// Command taskforge is the command-line client of the Taskforge API: tasks,
// schedules, task types, queues, statistics, API keys and the audit log, with
// live progress of a task from its event stream. `taskforge --help` lists the
// commands; exit codes are documented in `taskforge help exit-codes`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/taskforge/taskforge/services/cli/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
