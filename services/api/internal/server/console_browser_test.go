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
	"github.com/taskforge/taskforge/pkg/notify"
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
// width; a webhook trigger created from the form, its secret shown once and
// a signed delivery listed on its page; a workflow a → b drawn as a graph
// whose nodes turn completed live, and a viewer's workflow without a cancel
// control that an admin cancels. No console error, no CSP violation, no
// request to another origin.
func TestConsoleInBrowser(t *testing.T) {
	if os.Getenv(testenv.EnvRedisAddr) == "" {
		t.Skipf("%s is not set: run scripts/test.sh, which starts Redis and PostgreSQL", testenv.EnvRedisAddr)
	}
	b := setupWith(t, setupOptions{secure: true, streams: &StreamOptions{KeepAlive: time.Second, WriteTimeout: 10 * time.Second}})
	// As the API's main does at start: Asynq knows the four queues.
	require.NoError(t, queue.Register(ctx, b.rd.Client))

	// calculate_metrics as the test drives it: portfolio "pf_fail" fails for
	// good, "pf_hold" runs until cancelled, any other takes four steps, one
	// per value sent on steps.
	steps := make(chan struct{})
	handler := job.Typed(func(ctx context.Context, r job.Reporter, p *taskpb.CalculateMetricsParams) error {
		switch p.GetPortfolioId() {
		case "pf_fail":
			r.Log("error", "no holdings", map[string]any{"portfolio": p.GetPortfolioId()})
			return job.Permanent(errors.New("portfolio pf_fail has no holdings"))
		case "pf_hold": // runs until it is cancelled
			<-ctx.Done()
			return ctx.Err()
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

	// The workflows' advancer, as the scheduler runs it.
	wctx, stopWorkflows := context.WithCancel(ctx)
	advancer := make(chan error, 1)
	go func() { advancer <- b.workflows.Run(wctx, 100*time.Millisecond) }()
	t.Cleanup(func() { stopWorkflows(); <-advancer })

	chrome := browser.Start(t, 1280, 900)
	origin := b.http.URL
	// wider names the first element that sticks out of the viewport, if any.
	wider := `(() => {
		if (document.documentElement.scrollWidth <= window.innerWidth) return '';
		for (const el of document.querySelectorAll('body *')) {
			const r = el.getBoundingClientRect();
			if (r.right > window.innerWidth + 1 && !el.closest('.scroll-x')) return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className ? '.' + el.className : '') + ' (' + Math.round(r.right) + ' px)';
		}
		return 'the page (' + document.documentElement.scrollWidth + ' px)';
	})()`
	// fits checks that each screen fits a phone's width.
	fits := func(tab *browser.Tab, screens ...string) {
		t.Helper()
		tab.Run("phone width", chromedp.EmulateViewport(390, 844))
		for _, screen := range screens {
			tab.Hash(screen)
			tab.Until("the screen "+screen+" at 390 px", `document.readyState === 'complete' && !!document.querySelector('main h1') && !document.querySelector('main h1 + p.error')`)
			var out string
			tab.Eval(wider, &out)
			if out != "" {
				tab.Shoot("phone-" + strings.Trim(strings.ReplaceAll(screen, "/", "-"), "#-"))
			}
			require.Empty(t, out, "%s is wider than a 390 px viewport", screen)
		}
	}
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

	// A webhook trigger from the form: its secret is shown once.
	tab.Hash("#/triggers")
	tab.Until("the trigger form", `!!document.querySelector('#trigger-form #trg-type') && !!document.querySelector('#trigger-rows')`)
	tab.Run("fill the trigger form", chromedp.SendKeys("#trg-name", "console-hook", chromedp.ByQuery),
		chromedp.Evaluate(`(() => { const s = document.querySelector('#trg-type'); s.value = 'calculate_metrics'; s.dispatchEvent(new Event('change')); })()`, nil),
		chromedp.WaitVisible("#trg-param-portfolio_id", chromedp.ByQuery),
		chromedp.SetValue("#trg-param_map", `{"portfolio_id": "/body/portfolio"}`, chromedp.ByQuery),
		chromedp.Click("#trg-submit", chromedp.ByQuery))
	tab.Until("the new trigger's page with its secret", `location.hash.startsWith('#/triggers/trg_') && (document.querySelector('#trigger-secret')?.textContent || '').startsWith('whsec_')`)
	var trg struct{ ID, Secret, Hook, Note string }
	tab.Eval(`({ID: decodeURIComponent(location.hash.slice('#/triggers/'.length)), Secret: document.querySelector('#trigger-secret').textContent,
		Hook: document.querySelector('#trigger-hook-url').textContent, Note: document.querySelector('#trigger-secret-box').textContent})`, &trg)
	require.Equal(t, origin+"/api/v1/hooks/"+trg.ID, trg.Hook)
	require.Contains(t, trg.Note, "shown once")
	tab.Until("a copy button", `!!document.querySelector('#trigger-secret-copy')`)
	key, err := notify.ParseSecret(trg.Secret)
	require.NoError(t, err)
	var row store.Trigger
	require.NoError(t, b.pg.DB.Take(&row, "id = ?", trg.ID).Error)
	require.Equal(t, "key_op", row.Owner)
	tab.Run("reload the trigger's page", chromedp.Reload())
	tab.Until("the trigger's page again", `!!document.querySelector('#trigger-facts') && !!document.querySelector('#delivery-rows td.empty')`)
	var again bool
	tab.Eval(fmt.Sprintf(`!!document.querySelector('#trigger-secret') || document.documentElement.outerHTML.includes(%q)`, trg.Secret), &again)
	require.False(t, again, "the secret is shown once, not after a reload")
	// A signed delivery appears on the page (live) with its task; a refused
	// one with its reason.
	code, body := b.deliver(t, trg.ID, "msg_console_1", []byte(`{"portfolio":"pf_fail"}`), time.Now(), "application/json", key)
	require.Equal(t, 202, code, body)
	hookTask := taskIDOf(t, body)
	tab.Until("the accepted delivery", fmt.Sprintf(`!!document.querySelector('#delivery-rows tr[data-accepted="true"] a[href="#/tasks/%s"]')`, hookTask))
	code, _ = b.deliver(t, trg.ID, "msg_console_2", []byte(`{"portfolio":"pf_fail"}`), time.Now(), "application/json", []byte("not the secret"))
	require.Equal(t, 401, code)
	tab.ClickLive("refresh the deliveries", "#deliveries-refresh")
	tab.Until("the refused delivery", `(document.querySelector('#delivery-rows tr[data-accepted="false"] .error')?.textContent || '').length > 0`)
	tab.Until("the trigger's task", fmt.Sprintf(`!!document.querySelector('#trigger-recent-tasks li[data-task-id=%q]')`, hookTask))
	tab.Shoot("trigger")
	// A rotation shows the new secret once, and it verifies; a disabled
	// trigger answers 404.
	tab.Confirm("rotate the secret", `#trigger-facts + .actions button[data-action="rotate"]`)
	tab.Until("the new secret", fmt.Sprintf(`(document.querySelector('#trigger-secret')?.textContent || '').startsWith('whsec_') && document.querySelector('#trigger-secret').textContent !== %q`, trg.Secret))
	var rotated string
	tab.Eval(`document.querySelector('#trigger-secret').textContent`, &rotated)
	key2, err := notify.ParseSecret(rotated)
	require.NoError(t, err)
	code, body = b.deliver(t, trg.ID, "msg_console_3", []byte(`{"portfolio":"pf_fail"}`), time.Now(), "application/json", key2)
	require.Equal(t, 202, code, body)
	hookTask2 := taskIDOf(t, body)
	tab.ClickLive("disable the trigger", `#trigger-facts + .actions button[data-action="toggle"]`)
	tab.Until("disabled", `document.querySelector('#trigger-enabled')?.textContent === 'no' && !document.querySelector('#trigger-secret')`)
	code, _ = b.deliver(t, trg.ID, "msg_console_4", []byte(`{"portfolio":"pf_fail"}`), time.Now(), "application/json", key2)
	require.Equal(t, 404, code, "a disabled trigger")
	tab.Hash("#/tasks/" + hookTask)
	tab.Until("the task links its trigger", fmt.Sprintf(`!!document.querySelector('#task-trigger a[href="#/triggers/%s"]')`, trg.ID))
	tab.Hash("#/tasks?trigger_id=" + trg.ID)
	tab.Until("the list by trigger", fmt.Sprintf(`document.querySelector('#f-trigger_id')?.value === %q && document.querySelectorAll('#task-rows tr[data-task-id]').length === 2 && !!document.querySelector('#task-rows tr[data-task-id=%q]') && !!document.querySelector('#task-rows tr[data-task-id=%q]')`, trg.ID, hookTask, hookTask2))

	// A workflow a → b: its graph follows the steps live.
	wf, err := op.CreateWorkflowWithResponse(ctx, client.WorkflowInput{Name: "console-graph", Steps: []client.WorkflowStepInput{
		{Id: "a", Type: tasks.TypeCalculateMetrics, Params: &map[string]interface{}{"portfolio_id": "pf_wf_a"}},
		{Id: "b", Type: tasks.TypeCalculateMetrics, Params: &map[string]interface{}{"portfolio_id": "pf_wf_b"}, DependsOn: &[]string{"a"}},
	}})
	require.NoError(t, err)
	require.Equal(t, 201, wf.StatusCode(), string(wf.Body))
	wfID := wf.JSON201.WorkflowId
	tab.Hash("#/workflows")
	tab.Until("the workflow list", fmt.Sprintf(`!!document.querySelector('#workflow-rows tr[data-workflow-id=%q]')`, wfID))
	tab.Hash("#/workflows/" + wfID)
	node := func(step string) string {
		return fmt.Sprintf(`document.querySelector('#workflow-svg g[data-step-id=%q]')?.dataset.status`, step)
	}
	tab.Until("a running, b waiting", node("a")+` === 'running' && `+node("b")+` === 'pending'`)
	tab.Eval(`window.__sameWorkflowPage = true`, nil)
	var graph struct {
		Edges, Nodes              int
		Linked, Focusable, Cancel bool
	}
	tab.Eval(`({Edges: document.querySelectorAll('#workflow-svg path.wf-edge[data-from="a"][data-to="b"]').length,
		Nodes: document.querySelectorAll('#workflow-svg g.wf-node').length,
		Linked: !!document.querySelector('#workflow-svg a[href^="#/tasks/task_"] g[data-step-id="a"]'),
		Focusable: (() => { const a = document.querySelector('#workflow-svg a'); a.focus(); return document.activeElement === a; })(),
		Cancel: !!document.querySelector('#cancel-workflow')})`, &graph)
	require.Equal(t, 1, graph.Edges, "an arrow from a to b")
	require.Equal(t, 2, graph.Nodes)
	require.True(t, graph.Linked, "a's node links to its task")
	require.True(t, graph.Focusable, "a node's link takes the keyboard focus")
	require.True(t, graph.Cancel, "its owner may cancel it")
	for i := 0; i < 4; i++ {
		steps <- struct{}{}
	}
	tab.Until("a completed, b running", node("a")+` === 'completed' && `+node("b")+` === 'running'`)
	for i := 0; i < 4; i++ {
		steps <- struct{}{}
	}
	tab.Until("b completed", node("b")+` === 'completed' && document.querySelector('#workflow-steps li[data-step-id="b"]')?.dataset.status === 'completed'`)
	tab.Until("the workflow completed", `document.querySelector('#workflow-status [data-status]').dataset.status === 'completed' && !document.querySelector('#cancel-workflow')`)
	tab.Shoot("workflow")
	tab.Eval(`window.__sameWorkflowPage === true`, &same)
	require.True(t, same, "the graph followed the workflow without a reload")
	var stepTask string
	tab.Eval(`document.querySelector('#workflow-steps li[data-step-id="b"] a').getAttribute('href').slice('#/tasks/'.length)`, &stepTask)
	tab.Hash("#/tasks/" + stepTask)
	tab.Until("the step's task links its workflow", fmt.Sprintf(`!!document.querySelector('#task-workflow a[href="#/workflows/%s"]')`, wfID))
	fits(tab, "#/triggers", "#/triggers/"+trg.ID, "#/workflows", "#/workflows/"+wfID)
	tab.Hash("#/triggers")
	tab.Confirm("delete the trigger", fmt.Sprintf(`#trigger-rows tr[data-trigger-id=%q] button[data-action="delete"]`, trg.ID))
	tab.Until("the trigger deleted", fmt.Sprintf(`!!document.querySelector('#trigger-rows td.empty') && !document.querySelector('#trigger-rows tr[data-trigger-id=%q]')`, trg.ID))
	// A database trigger from the form (at phone width): a required param
	// neither given nor mapped is named beside its field; the kind's fields
	// are sent.
	tab.Run("a database trigger without its param", chromedp.SendKeys("#trg-name", "console-db", chromedp.ByQuery),
		chromedp.Evaluate(`(() => {
			const pick = (sel, v) => { const s = document.querySelector(sel); s.value = v; s.dispatchEvent(new Event('change')); };
			pick('#trg-kind', 'database');
			pick('#trg-type', 'calculate_metrics');
			pick('#trg-table', 'prices');
			document.querySelector('#trg-op-insert').checked = true;
		})()`, nil),
		chromedp.SetValue("#trg-debounce_seconds", "30", chromedp.ByQuery), chromedp.Click("#trg-submit", chromedp.ByQuery))
	tab.Until("the param's error", `(document.querySelector('#trg-param-portfolio_id-error')?.textContent || '') !== '' && document.querySelector('#trg-param-portfolio_id').getAttribute('aria-invalid') === 'true'`)
	tab.Run("give the param", chromedp.SendKeys("#trg-param-portfolio_id", "pf_demo_1", chromedp.ByQuery),
		chromedp.Click("#trg-submit", chromedp.ByQuery))
	tab.Until("the database trigger's page", `location.hash.startsWith('#/triggers/trg_') && !!document.querySelector('#trigger-facts') && !document.querySelector('#trigger-secret')`)
	var dbTrigger store.Trigger
	require.NoError(t, b.pg.DB.Take(&dbTrigger, "name = ?", "console-db").Error)
	require.Equal(t, "database", dbTrigger.Kind)
	require.Equal(t, "prices", *dbTrigger.Table)
	require.Equal(t, 30, dbTrigger.DebounceSeconds)
	require.JSONEq(t, `["insert"]`, string(dbTrigger.Operations))

	tab.CheckClean(origin)

	// A workflow the viewer may see, still running (no API call makes one
	// for a viewer, who may not create: it is handed over in the database).
	held, err := op.CreateWorkflowWithResponse(ctx, client.WorkflowInput{Name: "console-held", Steps: []client.WorkflowStepInput{
		{Id: "hold", Type: tasks.TypeCalculateMetrics, Params: &map[string]interface{}{"portfolio_id": "pf_hold"}},
		{Id: "after", Type: tasks.TypeCalculateMetrics, Params: &map[string]interface{}{"portfolio_id": "pf_after"}, DependsOn: &[]string{"hold"}},
	}})
	require.NoError(t, err)
	require.Equal(t, 201, held.StatusCode(), string(held.Body))
	heldID := held.JSON201.WorkflowId
	require.NoError(t, b.pg.DB.Model(&store.Workflow{}).Where("id = ?", heldID).Update("created_by", "key_viewer").Error)

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
	noControls := `!document.querySelector('#new-task-link, #nav-new, #nav-triggers, #cancel-task, #retry-task, #cancel-workflow, button[data-action], #schedule-form, #trigger-form')`
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

	viewer.Hash("#/workflows")
	viewer.Until("the viewer's workflows", fmt.Sprintf(`!!document.querySelector('#workflow-rows tr[data-workflow-id=%q]') && document.querySelectorAll('#workflow-rows tr[data-workflow-id]').length === 1`, heldID))
	viewer.Hash("#/workflows/" + heldID)
	viewer.Until("the viewer's running workflow", node("hold")+` === 'running' && `+node("after")+` === 'pending' && document.querySelector('#workflow-status [data-status]').dataset.status === 'running'`)
	viewer.Eval(noControls, &none)
	require.True(t, none, "no cancel control on a viewer's workflow")

	// At phone width every screen fits: nothing wider than the viewport.
	fits(viewer, "#/tasks", "#/tasks/"+viewerFailed, "#/dead", "#/schedules", "#/stats", "#/workflows", "#/workflows/"+heldID)
	viewer.CheckClean(origin)

	// An admin cancels the viewer's workflow from its page (in a tab of its
	// own, in front: a page behind another runs no animation frame, which
	// the waits poll on).
	adminTab = browser.Open(t, chrome, "admin-cancel")
	adminTab.Run("open the console", chromedp.Navigate(origin+"/console/#/workflows/"+heldID))
	adminTab.SignIn(tokAdmin)
	adminTab.Until("the held workflow", node("hold")+` === 'running'`)
	adminTab.Confirm("cancel the workflow", "#cancel-workflow")
	adminTab.Until("cancelled", `document.querySelector('#workflow-status')?.dataset.cancelRequested === 'true' || document.querySelector('#workflow-status [data-status]')?.dataset.status === 'cancelled'`)
	var heldRow store.Workflow
	require.NoError(t, b.pg.DB.Take(&heldRow, "id = ?", heldID).Error)
	require.True(t, heldRow.CancelRequested || heldRow.Status == "cancelled", "the cancel reached the API")
	adminTab.CheckClean(origin)
}
