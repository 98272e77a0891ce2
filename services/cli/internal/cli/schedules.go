package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/taskforge/taskforge/services/api/client"
)

func (a *app) schedulesCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "schedules", Aliases: []string{"schedule"}, Short: "Cron schedules that create tasks"}
	cmd.AddCommand(a.schedulesList(), a.schedulesGet(), a.schedulesCreate(), a.schedulesUpdate(),
		a.schedulesToggle("enable", true), a.schedulesToggle("disable", false), a.schedulesDelete(), a.schedulesRuns())
	return cmd
}

func (a *app) scheduleTable(out *tabwriter.Writer, s []client.Schedule) {
	row(out, "ID", "NAME", "TYPE", "CRON", "TIMEZONE", "ENABLED", "NEXT RUN", "LAST TASK")
	for _, x := range s {
		row(out, x.Id, x.Name, x.Type, x.Cron, x.Timezone, x.Enabled, x.NextRunAt, x.LastTaskId)
	}
}

func (a *app) schedulesList() *cobra.Command {
	var limit int
	var cursor string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List schedules",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			p := &client.ListSchedulesParams{}
			if limit > 0 {
				p.Limit = &limit
			}
			if cursor != "" {
				p.Cursor = &cursor
			}
			var list client.ScheduleList
			raw, err := into(&list)(api.c.ListSchedules(cmd.Context(), p))
			if err != nil {
				return err
			}
			return a.render(cmd.OutOrStdout(), raw, func(tw *tabwriter.Writer) { a.scheduleTable(tw, list.Items) })
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "schedules per page")
	cmd.Flags().StringVar(&cursor, "cursor", "", "continue after a previous page")
	return cmd
}

func (a *app) schedulesGet() *cobra.Command {
	return &cobra.Command{
		Use:   "get SCHEDULE_ID",
		Short: "Show a schedule",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.scheduleCall(cmd, func(ctx context.Context, api *conn) (*http.Response, error) {
				return api.c.GetSchedule(ctx, args[0])
			})
		},
	}
}

func (a *app) scheduleCall(cmd *cobra.Command, do func(context.Context, *conn) (*http.Response, error)) error {
	api, err := a.connect()
	if err != nil {
		return err
	}
	var s client.Schedule
	raw, err := into(&s)(do(cmd.Context(), api))
	if err != nil {
		return err
	}
	return a.render(cmd.OutOrStdout(), raw, func(tw *tabwriter.Writer) {
		row(tw, "ID:", s.Id)
		row(tw, "Name:", s.Name)
		if s.Workflow != nil {
			var ids []string
			for _, st := range s.Workflow.Steps {
				ids = append(ids, st.Id)
			}
			row(tw, "Workflow:", strings.Join(ids, ", "))
		} else {
			row(tw, "Type:", s.Type)
		}
		row(tw, "Cron:", s.Cron+" ("+s.Timezone+")")
		row(tw, "Enabled:", s.Enabled)
		row(tw, "Priority:", s.Priority)
		row(tw, "Params:", compact(s.Params))
		row(tw, "Next run:", s.NextRunAt)
		row(tw, "Last run:", s.LastRunAt)
		row(tw, "Last task:", s.LastTaskId)
		row(tw, "Created:", fmt.Sprintf("%s by %s", cell(s.CreatedAt), s.CreatedBy))
	})
}

// scheduleFlags are the fields of create and update.
type scheduleFlags struct {
	name, typ, cron, timezone, priority, paramsFile, timeout, workflowFile string
	params                                                                 []string
	retries                                                                int
	enabled                                                                bool
}

func (f *scheduleFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "the schedule's name")
	fl.StringVar(&f.typ, "type", "", "the task type it creates")
	fl.StringVar(&f.cron, "cron", "", `five cron fields, a descriptor (@daily) or "@every 10m"`)
	fl.StringVar(&f.timezone, "timezone", "", "IANA time zone the cron is read in (default UTC)")
	fl.StringVar(&f.priority, "priority", "", "critical, high, normal or low (default: the type's)")
	fl.StringArrayVarP(&f.params, "param", "p", nil, "a param as key=value, typed from the type's schema (repeatable)")
	fl.StringVar(&f.paramsFile, "params-file", "", "params as a JSON object from FILE, or - for stdin")
	fl.StringVar(&f.workflowFile, "workflow-file", "", `instead of --type: the workflow each fire starts, {"steps": [...]} from FILE, or - for stdin`)
	fl.IntVar(&f.retries, "retries", 0, "maximum automatic retries of each task")
	fl.StringVar(&f.timeout, "timeout", "", "each task's timeout: seconds or a duration")
	fl.BoolVar(&f.enabled, "enabled", true, "whether it fires")
}

// params builds the params when given; nil when neither flag was.
func (f *scheduleFlags) buildParams(cmd *cobra.Command, a *app, api *conn, typ string) (*map[string]any, error) {
	if len(f.params) == 0 && f.paramsFile == "" {
		return nil, nil
	}
	var schema map[string]any
	if len(f.params) > 0 {
		if typ == "" {
			return nil, usageErrorf("--param needs --type (the params are typed from its schema)")
		}
		tt, err := a.taskType(cmd.Context(), api, typ)
		if err != nil {
			return nil, err
		}
		schema = tt.ParamsSchema
	}
	p, err := buildParams(schema, f.params, f.paramsFile, cmd.InOrStdin())
	if err != nil {
		return nil, err
	}
	return &p, nil
}

func (a *app) schedulesCreate() *cobra.Command {
	var f scheduleFlags
	cmd := &cobra.Command{
		Use:     "create --name NAME --cron CRON (--type TYPE [--param key=value ...] | --workflow-file FILE)",
		Short:   "Create a schedule",
		Example: `  taskforge schedules create --name nightly_metrics --type calculate_metrics --cron "0 2 * * *" --param portfolio_id=pf_demo_growth`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.name == "" || f.cron == "" || (f.typ == "") == (f.workflowFile == "") {
				return usageErrorf("--name, --cron and one of --type or --workflow-file are required")
			}
			api, err := a.connect()
			if err != nil {
				return err
			}
			in := client.ScheduleInput{Name: f.name, Cron: f.cron, Enabled: &f.enabled}
			if f.typ != "" {
				in.Type = &f.typ
			}
			if f.workflowFile != "" {
				w, err := readWorkflowFile(cmd, f.workflowFile)
				if err != nil {
					return err
				}
				in.Workflow = w
			}
			if in.Params, err = f.buildParams(cmd, a, api, f.typ); err != nil {
				return err
			}
			if f.timezone != "" {
				in.Timezone = &f.timezone
			}
			if f.priority != "" {
				in.Priority = &f.priority
			}
			if cmd.Flags().Changed("retries") {
				in.RetryPolicy = &client.RetryPolicyInput{MaxRetries: &f.retries}
			}
			if f.timeout != "" {
				s, err := parseSeconds("timeout", f.timeout)
				if err != nil {
					return err
				}
				in.TimeoutSeconds = &s
			}
			return a.scheduleCall(cmd, func(ctx context.Context, api *conn) (*http.Response, error) {
				return api.c.CreateSchedule(ctx, in)
			})
		},
	}
	f.register(cmd)
	_ = cmd.RegisterFlagCompletionFunc("type", a.completeTypes)
	return cmd
}

func (a *app) schedulesUpdate() *cobra.Command {
	var f scheduleFlags
	cmd := &cobra.Command{
		Use:   "update SCHEDULE_ID [flags]",
		Short: "Change a schedule's fields (only the flags given)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			var p client.SchedulePatch
			ch := cmd.Flags().Changed
			if ch("name") {
				p.Name = &f.name
			}
			if ch("type") {
				p.Type = &f.typ
			}
			if ch("cron") {
				p.Cron = &f.cron
			}
			if ch("timezone") {
				p.Timezone = &f.timezone
			}
			if ch("priority") {
				p.Priority = &f.priority
			}
			if ch("enabled") {
				p.Enabled = &f.enabled
			}
			if ch("retries") {
				p.RetryPolicy = &client.RetryPolicyInput{MaxRetries: &f.retries}
			}
			if ch("timeout") {
				s, err := parseSeconds("timeout", f.timeout)
				if err != nil {
					return err
				}
				p.TimeoutSeconds = &s
			}
			typ := f.typ
			if typ == "" && len(f.params) > 0 {
				var cur client.Schedule
				if _, err := into(&cur)(api.c.GetSchedule(cmd.Context(), args[0])); err != nil {
					return err
				}
				typ = cur.Type
			}
			if p.Params, err = f.buildParams(cmd, a, api, typ); err != nil {
				return err
			}
			return a.scheduleCall(cmd, func(ctx context.Context, api *conn) (*http.Response, error) {
				return api.c.PatchSchedule(ctx, args[0], p)
			})
		},
	}
	f.register(cmd)
	return cmd
}

func (a *app) schedulesToggle(verb string, enabled bool) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " SCHEDULE_ID",
		Short: map[bool]string{true: "Let a schedule fire again", false: "Stop a schedule from firing"}[enabled],
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.scheduleCall(cmd, func(ctx context.Context, api *conn) (*http.Response, error) {
				return api.c.PatchSchedule(ctx, args[0], client.SchedulePatch{Enabled: &enabled})
			})
		},
	}
}

func (a *app) schedulesDelete() *cobra.Command {
	return &cobra.Command{
		Use:   "delete SCHEDULE_ID",
		Short: "Delete a schedule (its tasks stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			if _, err := body(api.c.DeleteSchedule(cmd.Context(), args[0])); err != nil {
				return err
			}
			if a.output == "table" {
				fmt.Fprintf(cmd.OutOrStdout(), "schedule %s deleted\n", args[0])
				return nil
			}
			raw, _ := json.Marshal(map[string]any{"id": args[0], "deleted": true})
			return a.render(cmd.OutOrStdout(), raw, nil)
		},
	}
}

func (a *app) schedulesRuns() *cobra.Command {
	var limit int
	var cursor string
	cmd := &cobra.Command{
		Use:   "runs SCHEDULE_ID",
		Short: "The tasks a schedule created, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			p := &client.ListScheduleRunsParams{}
			if limit > 0 {
				p.Limit = &limit
			}
			if cursor != "" {
				p.Cursor = &cursor
			}
			var runs client.ScheduleRunList
			raw, err := into(&runs)(api.c.ListScheduleRuns(cmd.Context(), args[0], p))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return a.render(out, raw, func(tw *tabwriter.Writer) {
				row(tw, "FIRE TIME", "TASK", "ATTEMPTS", "COMPLETED", "STATUS")
				for _, r := range runs.Items {
					row(tw, r.FireTime, r.TaskId, r.Attempts, r.CompletedAt, a.status(out, string(r.Status)))
				}
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "runs per page")
	cmd.Flags().StringVar(&cursor, "cursor", "", "continue after a previous page")
	return cmd
}

// readWorkflowFile reads a schedule's workflow, {"steps": [...]}, from file
// (- for stdin).
func readWorkflowFile(cmd *cobra.Command, file string) (*client.ScheduleWorkflow, error) {
	b, err := readFileOrStdin(cmd, "--workflow-file", file)
	if err != nil {
		return nil, err
	}
	var w client.ScheduleWorkflow
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, usageErrorf(`--workflow-file: not {"steps": [...]}: %v`, err)
	}
	return &w, nil
}

// readFileOrStdin reads file, or stdin for -, for the flag named flag.
func readFileOrStdin(cmd *cobra.Command, flag, file string) ([]byte, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 8<<20))
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, usageErrorf("%s: %v", flag, err)
	}
	return b, nil
}
