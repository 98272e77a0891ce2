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

	"github.com/spf13/cobra"

	"github.com/taskforge/taskforge/services/api/client"
)

func (a *app) workflowsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "workflows", Aliases: []string{"workflow", "wf"}, Short: "Workflows: task steps that depend on steps"}
	cmd.AddCommand(a.workflowsCreate(), a.workflowsList(), a.workflowsGet(), a.workflowsCancel(), a.workflowsWait())
	return cmd
}

// workflowDetails prints a workflow and its steps.
func (a *app) workflowDetails(out io.Writer, w client.Workflow) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		row(tw, "ID:", w.WorkflowId)
		row(tw, "Name:", w.Name)
		row(tw, "Status:", a.status(out, string(w.Status)))
		row(tw, "Created:", fmt.Sprintf("%s by %s", cell(w.CreatedAt), w.CreatedBy))
		row(tw, "Ended:", w.CompletedAt)
		if w.Steps == nil {
			return
		}
		row(tw)
		row(tw, "STEP", "TYPE", "DEPENDS ON", "STATUS", "TASK", "ERROR")
		for _, s := range *w.Steps {
			row(tw, s.Id, s.Type, strings.Join(s.DependsOn, ","), a.status(out, string(s.Status)), s.TaskId, s.Error)
		}
	}
}

func (a *app) workflowCall(cmd *cobra.Command, do func(context.Context, *conn) (*http.Response, error)) (client.Workflow, error) {
	api, err := a.connect()
	if err != nil {
		return client.Workflow{}, err
	}
	var w client.Workflow
	raw, err := into(&w)(do(cmd.Context(), api))
	if err != nil {
		return w, err
	}
	return w, a.render(cmd.OutOrStdout(), raw, a.workflowDetails(cmd.OutOrStdout(), w))
}

func (a *app) workflowsCreate() *cobra.Command {
	var file string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "create -f FILE [--wait]",
		Short: "Create a workflow from its JSON definition",
		Long: `Create a workflow from a JSON definition (FILE, or - for stdin):

  {"name": "nightly",
   "steps": [
     {"id": "prices", "type": "refresh_all_prices"},
     {"id": "growth", "type": "calculate_metrics", "depends_on": ["prices"],
      "params": {"portfolio_id": "pf_demo_growth"}}]}

A step's task is created once every step in its depends_on has completed;
params_from takes a param from a dependency's result by JSON Pointer
({"portfolio_id": "/steps/pick/result/portfolio_id"}). With --wait, the
command follows the steps until the workflow ends, and the exit code says how
it ended (0 completed, 3 failed, 4 cancelled, 5 --timeout passed).`,
		Example: `  taskforge workflows create -f nightly.json --wait`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageErrorf("-f FILE is required (- reads stdin)")
			}
			b, err := readFileOrStdin(cmd, "-f", file)
			if err != nil {
				return err
			}
			var in client.WorkflowInput
			if err := json.Unmarshal(b, &in); err != nil {
				return usageErrorf("-f: not a workflow definition: %v", err)
			}
			w, err := a.workflowCall(cmd, func(ctx context.Context, api *conn) (*http.Response, error) {
				return api.c.CreateWorkflow(ctx, in)
			})
			if err != nil || !wait {
				return err
			}
			return a.followWorkflow(cmd, w.WorkflowId, timeout, true)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the workflow's JSON definition, or - for stdin")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the steps until the workflow ends")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --wait, give up after this long (exit code 5)")
	return cmd
}

func (a *app) workflowsWait() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait WORKFLOW_ID",
		Short: "Follow a workflow's steps until it ends; the exit code says how",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.followWorkflow(cmd, args[0], timeout, true)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (exit code 5)")
	return cmd
}

// followWorkflow polls workflow id until it ends, printing each step's
// change of status on stderr (when show), and returns its exit code.
func (a *app) followWorkflow(cmd *cobra.Command, id string, timeout time.Duration, show bool) error {
	api, err := a.connect()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	seen := map[string]client.WorkflowStepStatus{}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	errw := cmd.ErrOrStderr()
	for {
		var w client.Workflow
		if _, err := into(&w)(api.c.GetWorkflow(ctx, id)); err != nil {
			if ctx.Err() != nil && timeout > 0 && cmd.Context().Err() == nil {
				return exitWith(ExitTimeout, fmt.Errorf("workflow %s has not ended after %s", id, timeout))
			}
			return err
		}
		if show && w.Steps != nil {
			for _, s := range *w.Steps {
				if seen[s.Id] != s.Status {
					seen[s.Id] = s.Status
					fmt.Fprintf(errw, "%s  %-16s %s\n", time.Now().Format("15:04:05"), s.Id, a.status(errw, string(s.Status)))
				}
			}
		}
		switch w.Status {
		case client.WorkflowStatusCompleted:
			fmt.Fprintf(errw, "workflow %s completed\n", id)
			return nil
		case client.WorkflowStatusFailed:
			fmt.Fprintf(errw, "workflow %s failed\n", id)
			return exitWith(ExitFailed, errors.New(""))
		case client.WorkflowStatusCancelled:
			fmt.Fprintf(errw, "workflow %s was cancelled\n", id)
			return exitWith(ExitCancelled, errors.New(""))
		}
		select {
		case <-ctx.Done():
			if timeout > 0 && cmd.Context().Err() == nil {
				return exitWith(ExitTimeout, fmt.Errorf("workflow %s has not ended after %s", id, timeout))
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (a *app) workflowsList() *cobra.Command {
	var limit int
	var cursor, status string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List workflows, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := a.connect()
			if err != nil {
				return err
			}
			p := &client.ListWorkflowsParams{}
			if limit > 0 {
				p.Limit = &limit
			}
			if cursor != "" {
				p.Cursor = &cursor
			}
			if status != "" {
				s := client.WorkflowStatus(status)
				p.Status = &s
			}
			var list client.WorkflowList
			raw, err := into(&list)(api.c.ListWorkflows(cmd.Context(), p))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return a.render(out, raw, func(tw *tabwriter.Writer) {
				row(tw, "ID", "NAME", "STATUS", "CREATED", "ENDED")
				for _, w := range list.Items {
					row(tw, w.WorkflowId, w.Name, a.status(out, string(w.Status)), w.CreatedAt, w.CompletedAt)
				}
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "workflows per page")
	cmd.Flags().StringVar(&cursor, "cursor", "", "continue after a previous page")
	cmd.Flags().StringVar(&status, "status", "", "pending, running, completed, failed or cancelled")
	return cmd
}

func (a *app) workflowsGet() *cobra.Command {
	return &cobra.Command{
		Use:   "get WORKFLOW_ID",
		Short: "Show a workflow and its steps",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := a.workflowCall(cmd, func(ctx context.Context, api *conn) (*http.Response, error) {
				return api.c.GetWorkflow(ctx, args[0])
			})
			return err
		},
	}
}

func (a *app) workflowsCancel() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel WORKFLOW_ID",
		Short: "Cancel a workflow: no further step starts, running ones are stopped",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := a.workflowCall(cmd, func(ctx context.Context, api *conn) (*http.Response, error) {
				return api.c.CancelWorkflow(ctx, args[0])
			})
			return err
		},
	}
}
