package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/pkg/testenv/browser"
	"github.com/taskforge/taskforge/pkg/worker"
	"github.com/taskforge/taskforge/services/api/client"
)

// TestConsoleInBrowser drives the console in headless Chromium against a real
// API (PostgreSQL, Redis, live events) and a worker whose calculate_metrics
// the test steps through, for what the four binaries cannot be made to show
// on cue (e2e's TestConsoleOnTheStack covers the rest on the real stack): a
// task created from the generated form followed step by step to 100 %, with
// its current step, log lines and attempt, without a reload; the statistics
// charts and a queue paused and resumed by an admin; a viewer's own waiting
// and failed tasks without cancel or retry controls; every screen at phone
// width. No console error, no CSP violation, no request to another origin.
func TestConsoleInBrowser(t *testing.T) {
	if os.Getenv(testenv.EnvRedisAddr) == "" {
		t.Skipf("%s is not set: run scripts/test.sh, which starts Redis and PostgreSQL", testenv.EnvRedisAddr)
	}
	b := setupWith(t, setupOptions{secure: true, streams: &StreamOptions{KeepAlive: time.Second, WriteTimeout: 10 * time.Second}})
	// As the API's main does at start: Asynq knows the four queues.
	require.NoError(t, queue.Register(ctx, b.rd.Client))

	// calculate_metrics as the test drives it: portfolio "pf_fail" fails for
	// good, any other takes four steps, one per value sent on steps.
	steps := make(chan struct{})
	handler := job.Typed(func(ctx context.Context, r job.Reporter, p *taskpb.CalculateMetricsParams) error {
		if p.GetPortfolioId() == "pf_fail" {
			r.Log("error", "no holdings", map[string]any{"portfolio": p.GetPortfolioId()})
			return job.Permanent(errors.New("portfolio pf_fail has no holdings"))
		}
		for i := 1; i <= 4; i++ {
			select {
			case <-steps:
			case <-ctx.Done():
				return ctx.Err()
			}
			r.Progress(float64(i)/4, fmt.Sprintf("step %d of 4", i), fmt.Sprintf("step %d done", i))
			r.Log("info", "step done", map[string]any{"step": i})
		}
		return r.SetResult(map[string]any{"portfolio_id": p.GetPortfolioId(), "sharpe": 1.25})
	})
	rt, err := worker.New(b.pg.DB, b.rd.Client, b.inspector, zap.NewNop(), worker.Options{
		WorkerID: "console-worker", Handlers: map[string]job.Handler{tasks.TypeCalculateMetrics: handler},
		FlushInterval: 20 * time.Millisecond, Registerer: prometheus.NewRegistry(), Events: b.events,
	})
	require.NoError(t, err)
	serveTasks(t, b, rt, 4)

	op := b.client(t, tokOp)
	later := time.Now().Add(time.Hour).UTC()
	create := func(c *client.ClientWithResponses, portfolio string, at *time.Time) string {
		body := createBody(tasks.TypeCalculateMetrics, map[string]any{"portfolio_id": portfolio})
		body.ScheduledFor = at
		resp, err := c.CreateTaskWithResponse(ctx, nil, body)
		require.NoError(t, err)
		require.Equal(t, 201, resp.StatusCode(), string(resp.Body))
		return resp.JSON201.TaskId
	}
	statusOf := func(id string) string {
		var r store.Task
		require.NoError(t, b.pg.DB.Take(&r, "id = ?", id).Error)
		return r.Status
	}
	demo := []string{create(op, "pf_demo_1", &later), create(op, "pf_demo_2", &later)}
	failed := create(op, "pf_fail", nil)
	require.Eventually(t, func() bool { return statusOf(failed) == tasks.StatusFailed }, 20*time.Second, 20*time.Millisecond)
	// Tasks of the viewer's (as a schedule of the viewer's would make them):
	// one waiting, one failed.
	viewerTask := func(portfolio string, at *time.Time) string {
		msg := &taskpb.CalculateMetricsParams{PortfolioId: portfolio}
		c, err := b.svc.Create(ctx, taskservice.CreateRequest{Type: tasks.TypeCalculateMetrics, Message: proto.Message(msg),
			ScheduledFor: at, CreatedBy: "key_viewer", Role: "viewer"})
		require.NoError(t, err)
		return c.Task.ID
	}
	viewerWaiting, viewerFailed := viewerTask("pf_viewer", &later), viewerTask("pf_fail", nil)
	require.Eventually(t, func() bool { return statusOf(viewerFailed) == tasks.StatusFailed }, 20*time.Second, 20*time.Millisecond)

	chrome := browser.Start(t, 1280, 900)
	origin := b.http.URL
	tab := browser.Open(t, chrome, "operator")

	// Sign in and see the demo tasks.
	tab.Run("open the console", chromedp.Navigate(origin+"/console/"), chromedp.WaitVisible("#signin-form", chromedp.ByQuery))
	tab.SignIn(tokOp)
	for _, id := range append(demo, failed) {
		tab.Until("the task list shows "+id, fmt.Sprintf(`!!document.querySelector('#task-rows tr[data-task-id=%q]')`, id))
	}
	var who string
	tab.Eval(`document.querySelector('#who').dataset.role`, &who)
	require.Equal(t, "operator", who)
	var leaked bool
	tab.Eval(fmt.Sprintf(`document.documentElement.outerHTML.includes(%q) || location.href.includes(%q)`, tokOp, tokOp), &leaked)
	require.False(t, leaked, "the credential is in neither the DOM nor the URL")

	// A bad param: the API's 422 is shown next to its field.
	tab.Hash("#/new?type=calculate_metrics")
	tab.Run("fill the form with a bad window", chromedp.WaitVisible("#param-window_days", chromedp.ByQuery),
		chromedp.SendKeys("#param-portfolio_id", "pf_live", chromedp.ByQuery),
		chromedp.SendKeys("#param-window_days", "1", chromedp.ByQuery), chromedp.Click("#new-submit", chromedp.ByQuery))
	tab.Until("the field's error", `document.querySelector('#param-window_days-error').textContent.includes('between 2 and 3650')`)
	var invalid string
	tab.Eval(`document.querySelector('#param-window_days').getAttribute('aria-invalid')`, &invalid)
	require.Equal(t, "true", invalid)
	var routeNow string
	tab.Eval(`location.hash`, &routeNow)
	require.Equal(t, "#/new?type=calculate_metrics", routeNow, "a refused form stays on the form")

	// Fixed, it creates the task; its page follows it to 100 % live.
	tab.Run("fix the window and submit", chromedp.SetValue("#param-window_days", "30", chromedp.ByQuery),
		chromedp.Click("#new-submit", chromedp.ByQuery))
	tab.Until("the new task's page", `location.hash.startsWith('#/tasks/task_') && !!document.querySelector('#task-status [data-status]')`)
	tab.Eval(`window.__sameDocument = true`, nil)
	var liveID string
	tab.Eval(`decodeURIComponent(location.hash.slice('#/tasks/'.length))`, &liveID)
	tab.Until("running", `document.querySelector('#task-status [data-status]').dataset.status === 'running'`)
	for i := 1; i <= 4; i++ {
		steps <- struct{}{}
		tab.Until(fmt.Sprintf("progress %d %%", i*25), fmt.Sprintf(`document.querySelector('#task-progress-text').textContent === '%d %%'`, i*25))
		tab.Until(fmt.Sprintf("step %d", i), fmt.Sprintf(`document.querySelector('#task-step').textContent === 'step %d of 4'`, i))
	}
	tab.Until("completed", `document.querySelector('#task-status [data-status]').dataset.status === 'completed'`)
	tab.Until("the result", `(document.querySelector('#task-result-json') || {}).textContent?.includes('"sharpe": 1.25')`)
	tab.Until("the log lines", `document.querySelectorAll('#task-logs li[data-level="info"]').length >= 4`)
	tab.Until("the attempt", `!!document.querySelector('#task-attempts tr[data-attempt="1"] [data-status="completed"]')`)
	var same bool
	tab.Eval(`window.__sameDocument === true && document.querySelector('#task-progress').value === 1`, &same)
	require.True(t, same, "the page followed the task without a reload")
	require.Equal(t, tasks.StatusCompleted, statusOf(liveID))
	var params string
	tab.Eval(`document.querySelector('#task-params').textContent`, &params)
	require.Contains(t, params, `"window_days": 30`)

	tab.CheckClean(origin)

	// An admin, in a tab of its own: the statistics, and a queue paused and
	// resumed on the queues screen.
	adminTab := browser.Open(t, chrome, "admin")
	adminTab.Run("open the console", chromedp.Navigate(origin+"/console/"))
	adminTab.SignIn(tokAdmin)
	adminTab.Hash("#/stats")
	adminTab.Until("the statistics", `document.querySelectorAll('#queue-rows tr').length === 4 && document.querySelectorAll('svg.chart').length >= 5`)
	adminTab.Shoot("stats")
	adminTab.Confirm("pause low", `#queue-rows tr[data-queue="low"] button[data-action="pause"]`)
	adminTab.Until("low paused", `document.querySelector('#queue-rows tr[data-queue="low"] [data-paused]')?.dataset.paused === 'true'`)
	paused, err := b.inspector.GetQueueInfo("low")
	require.NoError(t, err)
	require.True(t, paused.Paused, "the pause reached Asynq")
	adminTab.Confirm("resume low", `#queue-rows tr[data-queue="low"] button[data-action="resume"]`)
	adminTab.Until("low running", `document.querySelector('#queue-rows tr[data-queue="low"] [data-paused]')?.dataset.paused === 'false'`)
	adminTab.Hash("#/tasks")
	adminTab.Until("the admin's list", fmt.Sprintf(`!!document.querySelector('#task-rows tr[data-task-id=%q]')`, liveID))
	adminTab.Shoot("list")
	adminTab.Hash("#/tasks/" + liveID)
	adminTab.Until("the completed task", `!!document.querySelector('#task-result-json')`)
	adminTab.Shoot("detail")
	adminTab.CheckClean(origin)

	// A viewer, in a tab of its own, sees its tasks and no control it cannot use.
	viewer := browser.Open(t, chrome, "viewer")
	viewer.Run("open the console", chromedp.Navigate(origin+"/console/"))
	viewer.SignIn(tokViewer)
	viewer.Until("the viewer's tasks", fmt.Sprintf(`!!document.querySelector('#task-rows tr[data-task-id=%q]') && !!document.querySelector('#task-rows tr[data-task-id=%q]')`, viewerWaiting, viewerFailed))
	var others bool
	viewer.Eval(fmt.Sprintf(`!!document.querySelector('#task-rows tr[data-task-id=%q]')`, liveID), &others)
	require.False(t, others, "a viewer lists its own tasks only")
	noControls := `!document.querySelector('#new-task-link, #nav-new, #cancel-task, #retry-task, button[data-action], #schedule-form')`
	var none bool
	viewer.Eval(noControls, &none)
	require.True(t, none, "no create control on the list")
	for _, id := range []string{viewerWaiting, viewerFailed} {
		viewer.Hash("#/tasks/" + id)
		viewer.Until("the viewer's task "+id, fmt.Sprintf(`document.querySelector('h1 code')?.textContent === %q && !!document.querySelector('#task-attempts tr')`, id))
		viewer.Eval(noControls, &none)
		require.True(t, none, "no cancel or retry control on %s", id)
	}
	viewer.Hash("#/dead")
	viewer.Until("the viewer's dead letters", fmt.Sprintf(`!!document.querySelector('#task-rows tr[data-task-id=%q]')`, viewerFailed))
	viewer.Eval(noControls, &none)
	require.True(t, none, "no retry control on the dead letters")
	viewer.Hash("#/schedules")
	viewer.Until("the schedules", `!!document.querySelector('#schedule-rows td.empty')`)
	viewer.Eval(noControls, &none)
	require.True(t, none, "no schedule controls")
	viewer.Hash("#/stats")
	viewer.Until("the queues", `document.querySelectorAll('#queue-rows tr').length === 4`)
	viewer.Eval(noControls, &none)
	require.True(t, none, "no queue controls")

	// At phone width every screen fits: nothing wider than the viewport.
	viewer.Run("phone width", chromedp.EmulateViewport(390, 844))
	// wider names the first element that sticks out of the viewport, if any.
	wider := `(() => {
		if (document.documentElement.scrollWidth <= window.innerWidth) return '';
		for (const el of document.querySelectorAll('body *')) {
			const r = el.getBoundingClientRect();
			if (r.right > window.innerWidth + 1 && !el.closest('.scroll-x')) return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className ? '.' + el.className : '') + ' (' + Math.round(r.right) + ' px)';
		}
		return 'the page (' + document.documentElement.scrollWidth + ' px)';
	})()`
	for _, screen := range []string{"#/tasks", "#/tasks/" + viewerFailed, "#/dead", "#/schedules", "#/stats"} {
		viewer.Hash(screen)
		viewer.Until("the screen "+screen+" at 390 px", `document.readyState === 'complete' && !!document.querySelector('main h1')`)
		var out string
		viewer.Eval(wider, &out)
		if out != "" {
			viewer.Shoot("phone-" + strings.Trim(strings.ReplaceAll(screen, "/", "-"), "#-"))
		}
		require.Empty(t, out, "%s is wider than a 390 px viewport", screen)
	}
	viewer.CheckClean(origin)
}
