package server

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/pkg/worker"
	"github.com/taskforge/taskforge/services/api/client"
)

// browserTab is one tab of the shared headless Chromium, with what it saw:
// every request's URL, console errors, uncaught exceptions and log entries
// (CSP violations among them).
type browserTab struct {
	t    *testing.T
	ctx  context.Context
	name string

	mu       sync.Mutex
	requests []string
	problems []string
}

// newBrowser starts Debian's Chromium headless (scripts/test.sh installs it)
// with a fresh profile and no background traffic; the tabs share it.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed: scripts/test.sh installs it (scripts/lib.sh ensure_chromium): %v", err)
	}
	// A fresh profile, removed once the browser is gone (Chromium may still
	// be writing to it as it exits, so not a t.TempDir).
	profile, err := os.MkdirTemp("", "taskforge-chromium-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(profile) })
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(profile), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-extensions", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	require.NoError(t, chromedp.Run(bctx), "start chromium")
	return bctx
}

// tab opens a tab and records what it sees.
func openTab(t *testing.T, browser context.Context, name string) *browserTab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	b := &browserTab{t: t, ctx: ctx, name: name}
	chromedp.ListenTarget(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			b.requests = append(b.requests, e.Request.URL)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError || e.Type == runtime.APITypeAssert {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value))
				}
				b.problems = append(b.problems, "console."+string(e.Type)+": "+strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			b.problems = append(b.problems, "exception: "+msg)
		case *cdplog.EventEntryAdded:
			// Refused requests the test asks for (the 422 of a bad form) are
			// logged by the network source; anything else at error level (a
			// CSP violation, a script error) is a problem.
			if e.Entry.Level == cdplog.LevelError && e.Entry.Source != cdplog.SourceNetwork {
				b.problems = append(b.problems, fmt.Sprintf("log %s: %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL))
			}
		}
	})
	require.NoError(t, chromedp.Run(ctx, network.Enable(), cdplog.Enable(), runtime.Enable()))
	return b
}

// run runs actions; on failure it saves a screenshot and fails the test.
func (b *browserTab) run(what string, actions ...chromedp.Action) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		b.fail(what, err)
	}
}

// fail saves a screenshot and the page's text, then fails the test.
func (b *browserTab) fail(what string, err error) {
	b.t.Helper()
	dir := os.Getenv("TASKFORGE_CONSOLE_FAILURES")
	if dir == "" {
		dir = os.TempDir()
	}
	shot := filepath.Join(dir, fmt.Sprintf("console-%s-%d.png", b.name, time.Now().UnixNano()))
	var png []byte
	var text string
	sctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if chromedp.Run(sctx, chromedp.FullScreenshot(&png, 80), chromedp.Evaluate(`document.body.innerText`, &text)) == nil {
		_ = os.WriteFile(shot, png, 0o644)
	}
	b.mu.Lock()
	problems := append([]string(nil), b.problems...)
	b.mu.Unlock()
	b.t.Fatalf("%s (%s tab): %v\nscreenshot: %s\nproblems: %v\npage text:\n%s", what, b.name, err, shot, problems, text)
}

// until waits until the JavaScript expression is true (chromedp polls it).
func (b *browserTab) until(what, expr string) {
	b.t.Helper()
	b.run(what, chromedp.Poll(expr, nil, chromedp.WithPollingTimeout(25*time.Second)))
}

// eval evaluates a JavaScript expression into out.
func (b *browserTab) eval(expr string, out any) {
	b.t.Helper()
	b.run(expr, chromedp.Evaluate(expr, out))
}

// hash routes the page without reloading it.
func (b *browserTab) hash(h string) {
	b.t.Helper()
	b.run("route to "+h, chromedp.Evaluate(fmt.Sprintf(`location.hash = %q`, h), nil))
}

// confirm clicks a control, then the confirmation dialog's Confirm.
func (b *browserTab) confirm(what, sel string) {
	b.t.Helper()
	b.clickLive(what, sel)
	b.run(what, chromedp.WaitVisible("#confirm-yes", chromedp.ByQuery), chromedp.Click("#confirm-yes", chromedp.ByQuery))
}

// clickLive clicks the element sel finds once it is shown, finding and
// clicking it in one step inside the page: rows that update live are
// re-rendered at any time, so a node found by one protocol call may be gone by
// the next (chromedp.Click's "Could not find node with given id").
func (b *browserTab) clickLive(what, sel string) {
	b.t.Helper()
	b.run(what, chromedp.Poll(fmt.Sprintf(`(() => {
		const el = document.querySelector(%q);
		if (!el || el.disabled || !el.checkVisibility()) return false;
		el.click();
		return true;
	})()`, sel), nil, chromedp.WithPollingTimeout(25*time.Second)))
}

func (b *browserTab) signIn(token string) {
	b.t.Helper()
	b.run("sign in", chromedp.WaitVisible("#signin-token", chromedp.ByQuery),
		chromedp.SendKeys("#signin-token", token, chromedp.ByQuery), chromedp.Click("#signin-submit", chromedp.ByQuery),
		chromedp.WaitVisible("#signout", chromedp.ByQuery))
}

// checkClean fails on any console error, exception or CSP violation, and on
// any request that left the console's origin.
func (b *browserTab) checkClean(origin string) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	require.Emptyf(b.t, b.problems, "%s tab: console errors, exceptions or CSP violations", b.name)
	require.NotEmpty(b.t, b.requests)
	for _, r := range b.requests {
		u, err := url.Parse(r)
		require.NoError(b.t, err)
		if u.Scheme == "blob" || u.Scheme == "data" {
			require.Truef(b.t, strings.HasPrefix(u.Opaque, origin) || u.Scheme == "data", "%s: %s", b.name, r)
			continue
		}
		require.Equalf(b.t, origin, u.Scheme+"://"+u.Host, "%s tab: a request left the origin: %s", b.name, r)
	}
}

// TestConsoleInBrowser drives the console in headless Chromium against a real
// API (PostgreSQL, Redis, live events) and a worker running calculate_metrics
// in process: sign in; the task list; a bad param's 422 shown next to its
// field; a task created from the generated form reaching 100 % live without
// a reload; a running task cancelled; a failed one retried; a schedule
// created, edited and disabled; statistics charts; a viewer without create,
// cancel or retry controls; sign-out forgetting the credential. No console
// error, no CSP violation, no request to another origin.
func TestConsoleInBrowser(t *testing.T) {
	if os.Getenv(testenv.EnvRedisAddr) == "" {
		t.Skipf("%s is not set: run scripts/test.sh, which starts Redis and PostgreSQL", testenv.EnvRedisAddr)
	}
	b := setupWith(t, setupOptions{secure: true, streams: &StreamOptions{KeepAlive: time.Second, WriteTimeout: 10 * time.Second}})

	// calculate_metrics as the test drives it: portfolio "pf_block" runs until
	// cancelled, "pf_fail" fails for good, any other takes four steps, one
	// per value sent on steps.
	steps := make(chan struct{})
	handler := job.Typed(func(ctx context.Context, r job.Reporter, p *taskpb.CalculateMetricsParams) error {
		switch p.GetPortfolioId() {
		case "pf_block":
			r.Progress(0.1, "waiting", "waiting to be cancelled")
			<-ctx.Done()
			return ctx.Err()
		case "pf_fail":
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

	browser := newBrowser(t)
	origin := b.http.URL
	tab := openTab(t, browser, "operator")

	// Sign in and see the demo tasks.
	tab.run("open the console", chromedp.Navigate(origin+"/console/"), chromedp.WaitVisible("#signin-form", chromedp.ByQuery))
	tab.signIn(tokOp)
	for _, id := range append(demo, failed) {
		tab.until("the task list shows "+id, fmt.Sprintf(`!!document.querySelector('#task-rows tr[data-task-id=%q]')`, id))
	}
	var who string
	tab.eval(`document.querySelector('#who').dataset.role`, &who)
	require.Equal(t, "operator", who)
	var leaked bool
	tab.eval(fmt.Sprintf(`document.documentElement.outerHTML.includes(%q) || location.href.includes(%q)`, tokOp, tokOp), &leaked)
	require.False(t, leaked, "the credential is in neither the DOM nor the URL")

	// A bad param: the API's 422 is shown next to its field.
	tab.hash("#/new?type=calculate_metrics")
	tab.run("fill the form with a bad window", chromedp.WaitVisible("#param-window_days", chromedp.ByQuery),
		chromedp.SendKeys("#param-portfolio_id", "pf_live", chromedp.ByQuery),
		chromedp.SendKeys("#param-window_days", "1", chromedp.ByQuery), chromedp.Click("#new-submit", chromedp.ByQuery))
	tab.until("the field's error", `document.querySelector('#param-window_days-error').textContent.includes('between 2 and 3650')`)
	var invalid string
	tab.eval(`document.querySelector('#param-window_days').getAttribute('aria-invalid')`, &invalid)
	require.Equal(t, "true", invalid)
	var routeNow string
	tab.eval(`location.hash`, &routeNow)
	require.Equal(t, "#/new?type=calculate_metrics", routeNow, "a refused form stays on the form")

	// Fixed, it creates the task; its page follows it to 100 % live.
	tab.run("fix the window and submit", chromedp.SetValue("#param-window_days", "30", chromedp.ByQuery),
		chromedp.Click("#new-submit", chromedp.ByQuery))
	tab.until("the new task's page", `location.hash.startsWith('#/tasks/task_') && !!document.querySelector('#task-status [data-status]')`)
	tab.eval(`window.__sameDocument = true`, nil)
	var liveID string
	tab.eval(`decodeURIComponent(location.hash.slice('#/tasks/'.length))`, &liveID)
	tab.until("running", `document.querySelector('#task-status [data-status]').dataset.status === 'running'`)
	for i := 1; i <= 4; i++ {
		steps <- struct{}{}
		tab.until(fmt.Sprintf("progress %d %%", i*25), fmt.Sprintf(`document.querySelector('#task-progress-text').textContent === '%d %%'`, i*25))
		tab.until(fmt.Sprintf("step %d", i), fmt.Sprintf(`document.querySelector('#task-step').textContent === 'step %d of 4'`, i))
	}
	tab.until("completed", `document.querySelector('#task-status [data-status]').dataset.status === 'completed'`)
	tab.until("the result", `(document.querySelector('#task-result-json') || {}).textContent?.includes('"sharpe": 1.25')`)
	tab.until("the log lines", `document.querySelectorAll('#task-logs li[data-level="info"]').length >= 4`)
	tab.until("the attempt", `!!document.querySelector('#task-attempts tr[data-attempt="1"] [data-status="completed"]')`)
	var same bool
	tab.eval(`window.__sameDocument === true && document.querySelector('#task-progress').value === 1`, &same)
	require.True(t, same, "the page followed the task without a reload")
	require.Equal(t, tasks.StatusCompleted, statusOf(liveID))
	var params string
	tab.eval(`document.querySelector('#task-params').textContent`, &params)
	require.Contains(t, params, `"window_days": 30`)

	// Cancel a running task.
	blocked := create(op, "pf_block", nil)
	tab.hash("#/tasks/" + blocked)
	tab.until("the blocked task runs", `document.querySelector('#task-step')?.textContent === 'waiting'`)
	tab.confirm("cancel it", "#cancel-task")
	tab.until("cancelled", `document.querySelector('#task-status [data-status]')?.dataset.status === 'cancelled'`)
	require.Equal(t, tasks.StatusCancelled, statusOf(blocked))

	// Retry a failed one from the dead letters.
	tab.hash("#/dead")
	row := fmt.Sprintf(`#task-rows tr[data-task-id=%q]`, failed)
	tab.until("the dead letter", fmt.Sprintf(`!!document.querySelector('%s button[data-action="retry"]')`, row))
	tab.confirm("retry it", row+` button[data-action="retry"]`)
	require.Eventually(t, func() bool {
		resp, err := op.GetTaskLogsWithResponse(ctx, failed, nil)
		require.NoError(t, err)
		return resp.JSON200 != nil && len(resp.JSON200.Attempts) == 2
	}, 20*time.Second, 50*time.Millisecond, "the retried task ran again")
	tab.hash("#/stats")
	tab.until("the statistics", `document.querySelectorAll('#queue-rows tr').length === 4 && document.querySelectorAll('svg.chart').length >= 5`)
	shoot(t, tab, "stats")
	tab.checkClean(origin)

	// Sign out: the credential is gone, a reload shows the sign-in page.
	tab.run("sign out", chromedp.Click("#signout", chromedp.ByQuery), chromedp.WaitVisible("#signin-form", chromedp.ByQuery))
	var stored int
	tab.eval(`sessionStorage.length + localStorage.length + document.cookie.length`, &stored)
	require.Zero(t, stored, "nothing is left in storage")
	tab.run("reload", chromedp.Reload(), chromedp.WaitVisible("#signin-form", chromedp.ByQuery))
	var top bool
	tab.eval(`document.querySelector('#top').hidden && !document.querySelector('#task-rows')`, &top)
	require.True(t, top, "after sign-out a reload is signed out")

	// An admin creates, edits and disables a schedule.
	tab.signIn(tokAdmin)
	tab.hash("#/schedules")
	tab.run("fill the schedule form", chromedp.WaitVisible("#schedule-form", chromedp.ByQuery),
		chromedp.Evaluate(`(() => { const s = document.querySelector('#sch-type'); s.value = 'calculate_metrics'; s.dispatchEvent(new Event('change')); })()`, nil),
		chromedp.WaitVisible("#sch-param-portfolio_id", chromedp.ByQuery),
		chromedp.SendKeys("#sch-name", "console-nightly", chromedp.ByQuery), chromedp.SendKeys("#sch-cron", "0 3 * * *", chromedp.ByQuery),
		chromedp.SetValue("#sch-timezone", "UTC", chromedp.ByQuery), chromedp.SendKeys("#sch-param-portfolio_id", "pf_sched", chromedp.ByQuery),
		chromedp.Click("#sch-submit", chromedp.ByQuery))
	srow := `#schedule-rows tr[data-name="console-nightly"]`
	tab.until("the new schedule", fmt.Sprintf(`!!document.querySelector('%s')`, srow))
	tab.clickLive("edit it", srow+` a[data-action="edit"]`)
	tab.run("the edit form", chromedp.WaitVisible("#sch-cron", chromedp.ByQuery))
	tab.until("the form holds the schedule", `document.querySelector('#sch-cron').value === '0 3 * * *' && document.querySelector('#sch-param-portfolio_id').value === 'pf_sched'`)
	tab.run("change its cron", chromedp.SetValue("#sch-cron", "30 4 * * *", chromedp.ByQuery), chromedp.Click("#sch-submit", chromedp.ByQuery))
	tab.until("the edit", fmt.Sprintf(`location.hash === '#/schedules' && document.querySelector('%s code')?.textContent === '30 4 * * *'`, srow))
	tab.clickLive("disable it", srow+` button[data-action="toggle"]`)
	tab.until("disabled", fmt.Sprintf(`document.querySelector('%s')?.dataset.enabled === 'false'`, srow))
	list, err := b.client(t, tokAdmin).ListSchedulesWithResponse(ctx, nil)
	require.NoError(t, err)
	require.Len(t, list.JSON200.Items, 1)
	require.Equal(t, "30 4 * * *", list.JSON200.Items[0].Cron)
	require.False(t, list.JSON200.Items[0].Enabled)
	// The admin pauses a queue and resumes it on the queues screen.
	tab.hash("#/stats")
	tab.confirm("pause low", `#queue-rows tr[data-queue="low"] button[data-action="pause"]`)
	tab.until("low paused", `document.querySelector('#queue-rows tr[data-queue="low"] [data-paused]')?.dataset.paused === 'true'`)
	paused, err := b.inspector.GetQueueInfo("low")
	require.NoError(t, err)
	require.True(t, paused.Paused, "the pause reached Asynq")
	tab.confirm("resume low", `#queue-rows tr[data-queue="low"] button[data-action="resume"]`)
	tab.until("low running", `document.querySelector('#queue-rows tr[data-queue="low"] [data-paused]')?.dataset.paused === 'false'`)
	tab.hash("#/tasks")
	tab.until("the admin's list", fmt.Sprintf(`!!document.querySelector('#task-rows tr[data-task-id=%q]')`, liveID))
	shoot(t, tab, "list")
	tab.hash("#/tasks/" + liveID)
	tab.until("the completed task", `!!document.querySelector('#task-result-json')`)
	shoot(t, tab, "detail")
	tab.checkClean(origin)

	// A viewer, in a tab of its own, sees its tasks and no control it cannot use.
	viewer := openTab(t, browser, "viewer")
	viewer.run("open the console", chromedp.Navigate(origin+"/console/"))
	viewer.signIn(tokViewer)
	viewer.until("the viewer's tasks", fmt.Sprintf(`!!document.querySelector('#task-rows tr[data-task-id=%q]') && !!document.querySelector('#task-rows tr[data-task-id=%q]')`, viewerWaiting, viewerFailed))
	var others bool
	viewer.eval(fmt.Sprintf(`!!document.querySelector('#task-rows tr[data-task-id=%q]')`, liveID), &others)
	require.False(t, others, "a viewer lists its own tasks only")
	noControls := `!document.querySelector('#new-task-link, #nav-new, #cancel-task, #retry-task, button[data-action], #schedule-form')`
	var none bool
	viewer.eval(noControls, &none)
	require.True(t, none, "no create control on the list")
	for _, id := range []string{viewerWaiting, viewerFailed} {
		viewer.hash("#/tasks/" + id)
		viewer.until("the viewer's task "+id, fmt.Sprintf(`document.querySelector('h1 code')?.textContent === %q && !!document.querySelector('#task-attempts tr')`, id))
		viewer.eval(noControls, &none)
		require.True(t, none, "no cancel or retry control on %s", id)
	}
	viewer.hash("#/dead")
	viewer.until("the viewer's dead letters", fmt.Sprintf(`!!document.querySelector('#task-rows tr[data-task-id=%q]')`, viewerFailed))
	viewer.eval(noControls, &none)
	require.True(t, none, "no retry control on the dead letters")
	viewer.hash("#/schedules")
	viewer.until("the schedules", `!!document.querySelector('#schedule-rows tr[data-name="console-nightly"]')`)
	viewer.eval(noControls, &none)
	require.True(t, none, "no schedule controls")
	viewer.hash("#/stats")
	viewer.until("the queues", `document.querySelectorAll('#queue-rows tr').length === 4`)
	viewer.eval(noControls, &none)
	require.True(t, none, "no queue controls")
	viewer.checkClean(origin)
}

// shoot saves a screenshot of the page into TASKFORGE_CONSOLE_SCREENSHOTS
// when it is set (the README's pictures under docs/ are made so).
func shoot(t *testing.T, tab *browserTab, name string) {
	t.Helper()
	dir := os.Getenv("TASKFORGE_CONSOLE_SCREENSHOTS")
	if dir == "" {
		return
	}
	var png []byte
	tab.run("screenshot "+name, chromedp.CaptureScreenshot(&png))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "console-"+name+".png"), png, 0o644))
}
