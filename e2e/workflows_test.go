package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/api/client"
)

// dailyRefreshWorkflow runs the daily refresh as a workflow through the four
// binaries, created and followed with the CLI: prices, then the benchmark,
// then each demo portfolio revalued, then its metrics. Every step runs once,
// after its dependencies completed, and the workflow ends completed. Then the
// seeded daily_refresh schedule's own workflow, fired by a schedule every
// second until its first workflow exists, runs to completed too.
func (s *stack) dailyRefreshWorkflow(t *testing.T, admin, operator *client.ClientWithResponses, key string) {
	portfolios := []string{"pf_demo_balanced", "pf_demo_growth", "pf_demo_income"}
	steps := []map[string]any{
		{"id": "prices", "type": "refresh_all_prices"},
		{"id": "benchmark", "type": "refresh_benchmark", "depends_on": []string{"prices"},
			"params": map[string]any{"benchmark": "^NDX", "lookback_days": 5}},
	}
	for _, pf := range portfolios {
		steps = append(steps,
			map[string]any{"id": "value-" + pf, "type": "refresh_portfolio", "depends_on": []string{"benchmark"},
				"params": map[string]any{"portfolio_id": pf}},
			// The metrics take their portfolio from the revaluation's result.
			map[string]any{"id": "metrics-" + pf, "type": "calculate_metrics", "depends_on": []string{"value-" + pf},
				"params_from": map[string]string{"portfolio_id": "/steps/value-" + pf + "/result/portfolio_id"}})
	}
	def, err := json.Marshal(map[string]any{"name": "daily_refresh", "steps": steps})
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "daily.json")
	require.NoError(t, os.WriteFile(file, def, 0o600))

	home := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"TASKFORGE_URL=" + s.api, "TASKFORGE_TOKEN=" + key}
	out, errOut, code := testenv.RunBinary(t, filepath.Join(binDir, "cli"), env, "workflows", "create", "-f", file, "--wait", "-o", "json")
	require.Equalf(t, cliOK, code, "stdout %s\nstderr %s%s", out, errOut, s.logTails())
	require.Contains(t, errOut, "completed")
	var created client.Workflow
	require.NoError(t, json.Unmarshal([]byte(out), &created), out)

	wf, err := operator.GetWorkflowWithResponse(context.Background(), created.WorkflowId)
	require.NoError(t, err)
	require.Equal(t, client.WorkflowStatusCompleted, wf.JSON200.Status)
	require.NotNil(t, wf.JSON200.CompletedAt)
	byStep := map[string]client.Task{}
	for _, st := range *wf.JSON200.Steps {
		require.Equal(t, client.WorkflowStepStatusCompleted, st.Status, st.Id)
		require.NotNil(t, st.TaskId, st.Id)
		task, ok := getTask(t, operator, *st.TaskId)
		require.True(t, ok)
		require.Equal(t, st.Id, *task.StepId)
		byStep[st.Id] = task
	}
	require.Len(t, byStep, 2+2*len(portfolios))
	// Each step started only after every step it depends on completed.
	for _, st := range *wf.JSON200.Steps {
		for _, dep := range st.DependsOn {
			require.Falsef(t, byStep[st.Id].StartedAt.Before(*byStep[dep].CompletedAt),
				"%s started before %s completed", st.Id, dep)
		}
	}
	for _, pf := range portfolios {
		require.Equal(t, pf, byStep["metrics-"+pf].Params["portfolio_id"], "the param came from the revaluation's result")
	}
	list, err := operator.ListTasksWithResponse(context.Background(), &client.ListTasksParams{WorkflowId: &created.WorkflowId})
	require.NoError(t, err)
	require.Len(t, list.JSON200.Items, len(byStep), "one task per step")

	out, _, code = testenv.RunBinary(t, filepath.Join(binDir, "cli"), env, "workflows", "get", created.WorkflowId)
	require.Equal(t, cliOK, code)
	require.Contains(t, out, "metrics-pf_demo_growth")
	require.True(t, strings.Count(out, "completed") >= len(byStep), out)

	s.seededRefreshFires(t, admin)
}

// seededRefreshFires creates a schedule with the seeded daily_refresh's
// workflow firing every second, disables it once it started a workflow, and
// waits until that workflow completed: the scheduler fires it, the worker's
// fire job starts it, the scheduler advances it step by step.
func (s *stack) seededRefreshFires(t *testing.T, admin *client.ClientWithResponses) {
	ctx := context.Background()
	// Created with the CLI, as an operator of the product would.
	file := filepath.Join(t.TempDir(), "seeded.json")
	require.NoError(t, os.WriteFile(file, []byte(schedule.DailyRefresh), 0o600))
	home := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"TASKFORGE_URL=" + s.api, "TASKFORGE_TOKEN=" + s.adminKey}
	out, errOut, code := testenv.RunBinary(t, filepath.Join(binDir, "cli"), env, "schedules", "create",
		"--name", "e2e-seeded-refresh", "--cron", "@every 1s", "--workflow-file", file, "-o", "json")
	require.Equalf(t, cliOK, code, "stdout %s\nstderr %s", out, errOut)
	var sch client.Schedule
	require.NoError(t, json.Unmarshal([]byte(out), &sch), out)
	out, _, code = testenv.RunBinary(t, filepath.Join(binDir, "cli"), env, "schedules", "get", sch.Id)
	require.Equal(t, cliOK, code)
	require.Contains(t, out, "prices, benchmarks, portfolios, metrics-balanced", "the schedule shows its workflow's steps")
	var flows *client.WorkflowList
	require.Eventually(t, func() bool {
		l, err := admin.ListWorkflowsWithResponse(ctx, nil)
		require.NoError(t, err)
		flows = l.JSON200
		for _, w := range flows.Items {
			if w.Name == "e2e-seeded-refresh" {
				return true
			}
		}
		return false
	}, taskWithin, pollEvery, "the schedule started its workflow%s", s.logTails())
	off := false
	_, err := admin.PatchScheduleWithResponse(ctx, sch.Id, client.SchedulePatch{Enabled: &off})
	require.NoError(t, err)
	var id string
	for _, w := range flows.Items {
		if w.Name == "e2e-seeded-refresh" {
			id = w.WorkflowId
		}
	}
	var w *client.Workflow
	require.Eventually(t, func() bool {
		r, err := admin.GetWorkflowWithResponse(ctx, id)
		require.NoError(t, err)
		w = r.JSON200
		return w.Status == client.WorkflowStatusCompleted || w.Status == client.WorkflowStatusFailed
	}, taskWithin, pollEvery, "the seeded workflow ended%s", s.logTails())
	require.Equalf(t, client.WorkflowStatusCompleted, w.Status, "%+v", *w.Steps)
	require.Len(t, *w.Steps, 6)
	require.Equal(t, "schedule:"+sch.Id, w.CreatedBy)
}
