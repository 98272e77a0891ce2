package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/taskforge/taskforge/services/api/client"
)

func (a *app) tasksCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "tasks", Aliases: []string{"task"}, Short: "Create, list, follow, cancel and retry tasks"}
	cmd.AddCommand(a.tasksList(), a.tasksGet(), a.tasksCreate(), a.tasksWatch(), a.tasksWait(),
		a.tasksLogs(), a.tasksCancel(), a.tasksRetry(), a.tasksResult())
	return cmd
}

func (a *app) tasksList() *cobra.Command {
	var status, typ, priority, cursor, sort string
	var limit int
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks, newest first (filters combine)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			p := &client.ListTasksParams{}
			if status != "" {
				p.Status = &status
			}
			if typ != "" {
				p.Type = &typ
			}
			if priority != "" {
				pr := client.Priority(priority)
				p.Priority = &pr
			}
			if sort != "" {
				s := client.ListTasksParamsSort(sort)
				p.Sort = &s
			}
			if limit > 0 {
				p.Limit = &limit
			}
			if cursor != "" {
				p.Cursor = &cursor
			}
			var page client.TaskList
			raw, err := into(&page)(api.c.ListTasks(cmd.Context(), p))
			if err != nil {
				return err
			}
			for all && page.NextCursor != nil && *page.NextCursor != "" {
				p.Cursor = page.NextCursor
				var next client.TaskList
				if _, err := into(&next)(api.c.ListTasks(cmd.Context(), p)); err != nil {
					return err
				}
				page.Items = append(page.Items, next.Items...)
				page.NextCursor = next.NextCursor
			}
			if all {
				raw, _ = json.Marshal(page)
			}
			out := cmd.OutOrStdout()
			return a.render(out, raw, func(tw *tabwriter.Writer) {
				row(tw, "ID", "TYPE", "PRIORITY", "PROGRESS", "CREATED", "STATUS")
				for _, t := range page.Items {
					row(tw, t.TaskId, t.Type, t.Priority, fmt.Sprintf("%3.0f%%", 100*t.Progress), t.CreatedAt, a.status(out, string(t.Status)))
				}
				if page.NextCursor != nil && *page.NextCursor != "" {
					fmt.Fprintf(tw, "\n(more: --cursor %s, or --all)\n", *page.NextCursor)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&status, "status", "", "only these statuses (comma separated: pending,running,retrying,completed,failed,cancelled)")
	f.StringVar(&typ, "type", "", "only this task type")
	f.StringVar(&priority, "priority", "", "only this priority (critical, high, normal, low)")
	f.StringVar(&sort, "sort", "", "order (the API's sort values, e.g. -created_at)")
	f.IntVar(&limit, "limit", 0, "tasks per page (the API's default when 0)")
	f.StringVar(&cursor, "cursor", "", "continue after a previous page")
	f.BoolVar(&all, "all", false, "follow the cursors and list every page")
	_ = cmd.RegisterFlagCompletionFunc("status", cobra.FixedCompletions([]string{"pending", "running", "retrying", "completed", "failed", "cancelled"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("priority", cobra.FixedCompletions([]string{"critical", "high", "normal", "low"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (a *app) tasksGet() *cobra.Command {
	return &cobra.Command{
		Use:   "get TASK_ID",
		Short: "Show a task",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			var t client.Task
			raw, err := into(&t)(api.c.GetTask(cmd.Context(), args[0]))
			if err != nil {
				return err
			}
			return a.render(cmd.OutOrStdout(), raw, func(tw *tabwriter.Writer) { a.taskTable(tw, cmd.OutOrStdout(), &t) })
		},
	}
}

func (a *app) taskTable(tw *tabwriter.Writer, out io.Writer, t *client.Task) {
	row(tw, "ID:", t.TaskId)
	row(tw, "Type:", t.Type)
	row(tw, "Status:", a.status(out, string(t.Status)))
	row(tw, "Priority:", t.Priority)
	row(tw, "Progress:", fmt.Sprintf("%.0f%%", 100*t.Progress))
	row(tw, "Step:", t.CurrentStep)
	row(tw, "Attempts:", fmt.Sprintf("%d of %d", t.Attempts, t.MaxRetries+1))
	row(tw, "Created:", fmt.Sprintf("%s by %s", cell(t.CreatedAt), t.CreatedBy))
	row(tw, "Scheduled for:", t.ScheduledFor)
	row(tw, "Started:", t.StartedAt)
	row(tw, "Completed:", t.CompletedAt)
	if t.ScheduleId != nil {
		row(tw, "Schedule:", t.ScheduleId)
	}
	if len(t.Params) > 0 {
		row(tw, "Params:", compact(t.Params))
	}
	if t.Error != nil {
		row(tw, "Error:", t.Error.Message)
	}
	if t.Result != nil {
		row(tw, "Result:", compact(t.Result))
	}
	if t.ResultUrl != nil {
		row(tw, "Result URL:", t.ResultUrl)
	}
	for _, m := range t.Messages {
		row(tw, "Message:", m)
	}
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func (a *app) tasksCreate() *cobra.Command {
	var typ, paramsFile, priority, at, timeout, idem, callback, waitTimeout string
	var params []string
	var retries int
	var wait, watch bool
	cmd := &cobra.Command{
		Use:   "create --type TYPE [--param key=value ...]",
		Short: "Create a task (and, with --wait or --watch, follow it to its end)",
		Long: `Create a task of a type (see taskforge task-types).

Each --param key=value is typed from the type's params schema: integers,
numbers and booleans are parsed, lists split on commas (or given as JSON),
objects given as JSON. --params-file FILE (or - for stdin) gives a JSON object;
--param values override its keys.

With --wait the command waits silently and prints the result; with --watch it
shows live progress. Either way the exit code says how the task ended (see
taskforge exit-codes).`,
		Example: `  taskforge tasks create --type calculate_metrics --param portfolio_id=pf_demo_growth --wait
  taskforge tasks create --type refresh_all_prices --priority high --at +10m
  echo '{"portfolio_id":"pf_demo_income"}' | taskforge tasks create --type refresh_portfolio --params-file -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if typ == "" {
				return usageErrorf("--type is required (taskforge task-types lists them)")
			}
			api, err := a.connect()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			req := client.CreateTaskRequest{Type: typ}
			var schema map[string]any
			if len(params) > 0 {
				tt, err := a.taskType(ctx, api, typ)
				if err != nil {
					return err
				}
				schema = tt.ParamsSchema
			}
			p, err := buildParams(schema, params, paramsFile, cmd.InOrStdin())
			if err != nil {
				return err
			}
			req.Params = &p
			if priority != "" {
				pr := client.Priority(priority)
				req.Priority = &pr
			}
			if at != "" {
				t, err := parseAt(at, time.Now())
				if err != nil {
					return err
				}
				req.ScheduledFor = &t
			}
			if timeout != "" {
				s, err := parseSeconds("timeout", timeout)
				if err != nil {
					return err
				}
				req.TimeoutSeconds = &s
			}
			if cmd.Flags().Changed("retries") {
				if retries < 0 {
					return usageErrorf("--retries must not be negative")
				}
				req.RetryPolicy = &client.RetryPolicyInput{MaxRetries: &retries}
			}
			if callback != "" {
				req.CallbackUrl = &callback
			}
			var cp *client.CreateTaskParams
			if idem != "" {
				cp = &client.CreateTaskParams{IdempotencyKey: &idem}
			}
			var created client.TaskCreated
			raw, err := into(&created)(api.c.CreateTask(ctx, cp, req))
			if err != nil {
				return err
			}
			if !wait && !watch {
				out := cmd.OutOrStdout()
				return a.render(out, raw, func(tw *tabwriter.Writer) {
					row(tw, "ID", "STATUS", "PRIORITY", "SCHEDULED FOR")
					row(tw, created.TaskId, a.status(out, string(created.Status)), created.Priority, created.ScheduledFor)
				})
			}
			if a.output == "table" {
				fmt.Fprintf(cmd.ErrOrStderr(), "created %s\n", created.TaskId)
			}
			return a.follow(cmd, api, created.TaskId, watch, false, waitTimeout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "the task type (required)")
	f.StringArrayVarP(&params, "param", "p", nil, "a param as key=value, typed from the type's schema (repeatable)")
	f.StringVar(&paramsFile, "params-file", "", "params as a JSON object from FILE, or - for stdin")
	f.StringVar(&priority, "priority", "", "critical, high, normal or low (default: the type's)")
	f.StringVar(&at, "at", "", "run at this time: RFC 3339, or +duration from now (+10m)")
	f.IntVar(&retries, "retries", 0, "maximum automatic retries (default: the type's)")
	f.StringVar(&timeout, "timeout", "", "the task's timeout: seconds or a duration (90s, 5m)")
	f.StringVar(&idem, "idempotency-key", "", "a key that makes repeating this create safe (the same task is returned)")
	f.StringVar(&callback, "callback-url", "", "a URL the final task is POSTed to")
	f.BoolVar(&wait, "wait", false, "wait until the task ends, then print its result")
	f.BoolVar(&watch, "watch", false, "show the task's live progress until it ends")
	f.StringVar(&waitTimeout, "wait-timeout", "", "with --wait or --watch: give up after this long (exit 5)")
	_ = cmd.RegisterFlagCompletionFunc("type", a.completeTypes)
	_ = cmd.RegisterFlagCompletionFunc("priority", cobra.FixedCompletions([]string{"critical", "high", "normal", "low"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (a *app) taskType(ctx context.Context, api *conn, name string) (*client.TaskType, error) {
	var list client.TaskTypeList
	if _, err := into(&list)(api.c.ListTaskTypes(ctx)); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(list.Items))
	for i := range list.Items {
		if list.Items[i].Name == name {
			return &list.Items[i], nil
		}
		names = append(names, list.Items[i].Name)
	}
	return nil, usageErrorf("--type %s: no such task type (known: %s)", name, strings.Join(names, ", "))
}

func (a *app) completeTypes(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	api, err := a.connect()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var list client.TaskTypeList
	if _, err := into(&list)(api.c.ListTaskTypes(cmd.Context())); err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	out := make([]string, 0, len(list.Items))
	for _, t := range list.Items {
		out = append(out, t.Name+"\t"+t.Description)
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func (a *app) tasksWatch() *cobra.Command {
	var timeout string
	var logs bool
	cmd := &cobra.Command{
		Use:   "watch TASK_ID",
		Short: "Follow a task live: progress bar, step and messages, then its result or error",
		Long: `Follow a task from its live event stream until it ends, then print its result
(or its error). The exit code says how it ended: 0 completed, 3 failed,
4 cancelled, 5 gave up (--timeout).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			return a.follow(cmd, api, args[0], true, logs, timeout)
		},
	}
	cmd.Flags().StringVar(&timeout, "timeout", "", "give up after this long (exit 5), e.g. 10m")
	cmd.Flags().BoolVar(&logs, "logs", false, "also print the task's log lines")
	return cmd
}

func (a *app) tasksWait() *cobra.Command {
	var timeout string
	cmd := &cobra.Command{
		Use:   "wait TASK_ID",
		Short: "Wait silently until a task ends; the exit code says how",
		Long: `Wait until a task ends and print its result (or error). Exit codes: 0 completed,
3 failed, 4 cancelled, 5 gave up (--timeout).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			return a.follow(cmd, api, args[0], false, false, timeout)
		},
	}
	cmd.Flags().StringVar(&timeout, "timeout", "", "give up after this long (exit 5), e.g. 10m")
	return cmd
}

// follow waits for a task's end (showing progress when live), prints the
// outcome and returns the exit code of it as an error (nil for completed).
func (a *app) follow(cmd *cobra.Command, api *conn, id string, live, logs bool, timeout string) error {
	ctx := cmd.Context()
	if timeout != "" {
		d, err := time.ParseDuration(timeout)
		if err != nil || d <= 0 {
			return usageErrorf("--timeout %q: want a duration such as 90s or 10m", timeout)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	var v *view
	if live {
		v = a.newView(cmd.ErrOrStderr(), logs)
		defer v.done()
	}
	onEvent := func(ev client.Event) error {
		if v != nil {
			v.event(ev)
		}
		return nil
	}
	final, err := api.c.WatchTask(ctx, id, client.WatchOptions{OnEvent: onEvent})
	if client.StatusOf(err) == http.StatusNotFound {
		// An API without event streams (or a proxy that refuses them): if the
		// task itself is there, poll it.
		var t client.Task
		if _, gerr := into(&t)(api.c.GetTask(ctx, id)); gerr == nil {
			final, err = a.poll(ctx, api, id, onEvent)
		}
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil && cmd.Context().Err() == nil {
			return exitWith(ExitTimeout, fmt.Errorf("task %s has not ended after %s (it goes on)", id, timeout))
		}
		return err
	}
	if v != nil {
		v.done()
	}
	return a.outcome(cmd, api, final)
}

// poll reads the task every half second until it is terminal.
func (a *app) poll(ctx context.Context, api *conn, id string, onEvent func(client.Event) error) (*client.Task, error) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		var t client.Task
		raw, err := into(&t)(api.c.GetTask(ctx, id))
		if err != nil {
			return nil, err
		}
		_ = onEvent(client.Event{Type: client.EventTask, Data: raw, Task: &t})
		if client.IsTerminal(t.Status) {
			return &t, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// outcome prints how a task ended and returns its exit code as an error.
func (a *app) outcome(cmd *cobra.Command, api *conn, t *client.Task) error {
	out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	switch t.Status {
	case client.StatusCompleted:
		if a.output != "table" {
			raw, _ := json.Marshal(t)
			return a.render(out, raw, nil)
		}
		switch {
		case t.Result != nil:
			fmt.Fprintln(out, pretty(t.Result))
		case t.ResultUrl != nil:
			fmt.Fprintln(out, "result:", *t.ResultUrl)
		default:
			// Lists and events leave large results out: read it.
			raw, err := body(api.c.GetTaskResult(cmd.Context(), t.TaskId, nil))
			if err == nil {
				var r client.TaskResult
				if json.Unmarshal(raw, &r) == nil && r.Result != nil {
					fmt.Fprintln(out, pretty(r.Result))
				}
			}
		}
		return nil
	case client.StatusFailed:
		if a.output != "table" {
			raw, _ := json.Marshal(t)
			_ = a.render(out, raw, nil)
		}
		msg := "failed"
		if t.Error != nil {
			msg = "failed: " + t.Error.Message
			if t.Error.Kind != nil {
				msg += " (" + *t.Error.Kind + ")"
			}
		}
		fmt.Fprintf(errw, "task %s %s after %d attempt(s)\n", t.TaskId, msg, t.Attempts)
		return exitWith(ExitFailed, errors.New(""))
	case client.StatusCancelled:
		if a.output != "table" {
			raw, _ := json.Marshal(t)
			_ = a.render(out, raw, nil)
		}
		fmt.Fprintf(errw, "task %s was cancelled\n", t.TaskId)
		return exitWith(ExitCancelled, errors.New(""))
	}
	return fmt.Errorf("task %s is %s", t.TaskId, t.Status)
}

// view shows a task's progress on w: a progress bar on a terminal, else one
// line per change.
type view struct {
	a        *app
	w        io.Writer
	bar      *progressbar.ProgressBar
	logs     bool
	last     string
	messages []string
}

func (a *app) newView(w io.Writer, logs bool) *view {
	v := &view{a: a, w: w, logs: logs}
	if isTerminal(w) {
		v.bar = progressbar.NewOptions(100,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionEnableColorCodes(a.colour(w)),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionClearOnFinish(),
		)
	}
	return v
}

func (v *view) printf(format string, args ...any) {
	if v.bar != nil {
		_ = v.bar.Clear()
	}
	fmt.Fprintf(v.w, format, args...)
	if v.bar != nil {
		_ = v.bar.RenderBlank()
	}
}

func (v *view) event(ev client.Event) {
	switch {
	case ev.Task != nil:
		t := ev.Task
		for _, m := range newMessages(v.messages, t.Messages) {
			v.printf("  %s\n", m)
		}
		v.messages = t.Messages
		line := fmt.Sprintf("%s %3.0f%% %s", t.Status, 100*t.Progress, t.CurrentStep)
		if v.bar != nil {
			v.bar.Describe(fmt.Sprintf("%-9s %s", v.a.status(v.w, string(t.Status)), t.CurrentStep))
			_ = v.bar.Set(int(100 * t.Progress))
			return
		}
		if line != v.last {
			fmt.Fprintln(v.w, strings.TrimSpace(line))
			v.last = line
		}
	case ev.Log != nil && v.logs:
		v.printf("  [%s] %s\n", ev.Log.Level, ev.Log.Message)
	}
}

func (v *view) done() {
	if v.bar != nil {
		_ = v.bar.Finish()
		v.bar = nil
	}
}

// newMessages are the messages of cur after those already shown (prev): a
// task keeps only its latest messages, so the overlap is found from prev's
// last one.
func newMessages(prev, cur []string) []string {
	if len(prev) == 0 {
		return cur
	}
	last := prev[len(prev)-1]
	for i := len(cur) - 1; i >= 0; i-- {
		if cur[i] == last {
			return cur[i+1:]
		}
	}
	return cur
}

func (a *app) tasksLogs() *cobra.Command {
	var level, cursor string
	var attempt, limit int
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs TASK_ID",
		Short: "Show a task's log lines and attempts (--follow: live)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if follow {
				_, err := api.c.WatchTask(cmd.Context(), args[0], client.WatchOptions{OnEvent: func(ev client.Event) error {
					if ev.Log != nil {
						fmt.Fprintf(out, "%s  %-5s  #%d  %s\n", ev.Log.Ts.Local().Format("15:04:05.000"), ev.Log.Level, ev.Log.Attempt, ev.Log.Message)
					}
					return nil
				}})
				return err
			}
			p := &client.GetTaskLogsParams{}
			if level != "" {
				l := client.GetTaskLogsParamsLevel(level)
				p.Level = &l
			}
			if attempt > 0 {
				p.Attempt = &attempt
			}
			if limit > 0 {
				p.Limit = &limit
			}
			if cursor != "" {
				p.Cursor = &cursor
			}
			var logs client.TaskLogs
			raw, err := into(&logs)(api.c.GetTaskLogs(cmd.Context(), args[0], p))
			if err != nil {
				return err
			}
			return a.render(out, raw, func(tw *tabwriter.Writer) {
				row(tw, "ATTEMPT", "WORKER", "STARTED", "DURATION MS", "OUTCOME", "ERROR")
				for _, at := range logs.Attempts {
					row(tw, at.Attempt, at.Worker, at.StartedAt, at.DurationMs, at.Outcome, at.Error)
				}
				fmt.Fprintln(tw)
				row(tw, "TIME", "LEVEL", "ATTEMPT", "MESSAGE")
				for _, l := range logs.Logs {
					row(tw, l.Ts, l.Level, l.Attempt, l.Message)
				}
				if logs.NextCursor != nil && *logs.NextCursor != "" {
					fmt.Fprintf(tw, "\n(more: --cursor %s)\n", *logs.NextCursor)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&level, "level", "", "lowest level shown: debug, info, warn, error")
	f.IntVar(&attempt, "attempt", 0, "only this attempt")
	f.IntVar(&limit, "limit", 0, "lines per page")
	f.StringVar(&cursor, "cursor", "", "continue after a previous page")
	f.BoolVarP(&follow, "follow", "f", false, "print new log lines as they come until the task ends")
	return cmd
}

func (a *app) tasksCancel() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel TASK_ID",
		Short: "Cancel a task (a running one is stopped through its context)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.taskAction(cmd, args[0], func(ctx context.Context, api *conn) (*http.Response, error) {
				return api.c.CancelTask(ctx, args[0])
			})
		},
	}
}

func (a *app) tasksRetry() *cobra.Command {
	return &cobra.Command{
		Use:   "retry TASK_ID",
		Short: "Retry a failed or cancelled task (a new attempt of the same task)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.taskAction(cmd, args[0], func(ctx context.Context, api *conn) (*http.Response, error) {
				return api.c.RetryTask(ctx, args[0])
			})
		},
	}
}

func (a *app) taskAction(cmd *cobra.Command, id string, do func(context.Context, *conn) (*http.Response, error)) error {
	api, err := a.connect()
	if err != nil {
		return err
	}
	raw, err := body(do(cmd.Context(), api))
	if err != nil {
		return err
	}
	var t client.Task
	if len(raw) == 0 || json.Unmarshal(raw, &t) != nil || t.TaskId == "" {
		if raw, err = into(&t)(api.c.GetTask(cmd.Context(), id)); err != nil {
			return err
		}
	}
	out := cmd.OutOrStdout()
	return a.render(out, raw, func(tw *tabwriter.Writer) {
		row(tw, "ID", "STATUS", "CANCEL REQUESTED", "ATTEMPTS")
		row(tw, t.TaskId, a.status(out, string(t.Status)), t.CancelRequested, t.Attempts)
	})
}

func (a *app) tasksResult() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "result TASK_ID",
		Short: "Print a task's result (a result file is downloaded to stdout)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			p := &client.GetTaskResultParams{}
			if name != "" {
				p.Name = &name
			}
			raw, err := body(api.c.GetTaskResult(cmd.Context(), args[0], p))
			if err != nil {
				return err
			}
			var r client.TaskResult
			if json.Unmarshal(raw, &r) == nil && r.TaskId != "" {
				if a.output != "table" {
					return a.render(cmd.OutOrStdout(), raw, nil)
				}
				fmt.Fprintln(cmd.OutOrStdout(), pretty(r.Result))
				return nil
			}
			_, err = cmd.OutOrStdout().Write(raw)
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the result file of this name (default: the newest)")
	return cmd
}
