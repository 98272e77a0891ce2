package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv/browser"
	"github.com/taskforge/taskforge/services/api/client"
)

// TestConsoleOnTheStack drives the console in headless Chromium against the
// four binaries as `make dev` runs them, signed in with the bootstrap admin
// key: the demo tasks in the list; a bad param's 422 next to its field; a
// task created from the generated form followed live from pending to 100 %
// (its queue paused until the page shows it waiting); a running webhook
// cancelled; a failed one retried from the dead letters; a schedule created,
// edited and disabled; the API stopped (a banner) and started again (the page
// recovers by itself); keyboard focus visible; a viewer without create,
// cancel or retry controls; sign-out then reload back at the sign-in page. No
// console error, no CSP violation, no request to another origin.
func TestConsoleOnTheStack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack and a browser")
	}
	s := startStack(t)
	ctx := context.Background()
	admin := s.client(s.adminKey)
	viewerKey := s.newKey(t, admin, "console-viewer", client.CreateAPIKeyRequestRoleViewer)

	// A sink that holds a webhook until the test ends (the task to cancel),
	// and one that refuses every webhook for good (the task to retry).
	release := make(chan struct{})
	hold := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hold.Close)
	t.Cleanup(func() { close(release) })
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such hook", http.StatusNotFound)
	}))
	t.Cleanup(refuse.Close)

	// The demo: each demo portfolio refreshed, and a webhook that fails.
	var demo []string
	for _, pf := range []string{"pf_demo_balanced", "pf_demo_growth", "pf_demo_income"} {
		demo = append(demo, create(t, admin, newTask("refresh_portfolio", params{"portfolio_id": pf})))
	}
	failed := create(t, admin, newTask("webhook_callback", params{"url": refuse.URL + "/hook", "payload": map[string]any{"n": 1}}))
	s.waitStatus(t, admin, failed, client.StatusFailed, taskWithin)

	chrome := browser.Start(t, 1280, 900)
	tab := browser.Open(t, chrome, "admin")
	tab.Run("open the console", chromedp.Navigate(s.api+"/console/"), chromedp.WaitVisible("#signin-form", chromedp.ByQuery))
	tab.SignIn(s.adminKey)
	for _, id := range append(demo, failed) {
		tab.Until("the task list shows "+id, fmt.Sprintf(`!!document.querySelector('#task-rows tr[data-task-id=%q]')`, id))
	}
	var leaked bool
	tab.Eval(fmt.Sprintf(`document.documentElement.outerHTML.includes(%q) || location.href.includes(%q)`, s.adminKey, s.adminKey), &leaked)
	require.False(t, leaked, "the key is in neither the DOM nor the URL")

	// Keyboard: Tab moves to a control, and the control shows it has focus.
	var focus string
	tab.Run("tab into the page", chromedp.KeyEvent("\t"))
	tab.Eval(`(() => { const el = document.activeElement; const st = getComputedStyle(el);
		return ['A', 'BUTTON', 'INPUT', 'SELECT'].includes(el.tagName) + ' ' + (st.outlineStyle !== 'none' && parseFloat(st.outlineWidth) > 0); })()`, &focus)
	require.Equal(t, "true true", focus, "Tab focuses a control and shows where the focus is")

	// A bad param: the API's 422 is shown next to its field.
	tab.Hash("#/new?type=calculate_metrics")
	tab.Run("fill the form with a bad window", chromedp.WaitVisible("#param-window_days", chromedp.ByQuery),
		chromedp.SendKeys("#param-portfolio_id", "pf_demo_growth", chromedp.ByQuery),
		chromedp.SendKeys("#param-window_days", "1", chromedp.ByQuery), chromedp.Click("#new-submit", chromedp.ByQuery))
	tab.Until("the field's error", `document.querySelector('#param-window_days-error').textContent.includes('between 2 and 3650')`)
	var invalid string
	tab.Eval(`document.querySelector('#param-window_days').getAttribute('aria-invalid')`, &invalid)
	require.Equal(t, "true", invalid)

	// Fixed and sent to the paused low queue, the task waits on its page;
	// once the queue resumes the same page follows it to 100 %.
	pause, err := admin.PauseQueueWithResponse(ctx, client.Low)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, pause.StatusCode(), string(pause.Body))
	tab.Run("fix the window and submit to the low queue", chromedp.SetValue("#param-window_days", "126", chromedp.ByQuery),
		chromedp.SetValue("#new-priority", "low", chromedp.ByQuery), chromedp.Click("#new-submit", chromedp.ByQuery))
	tab.Until("the new task's page, waiting", `location.hash.startsWith('#/tasks/task_') &&
		document.querySelector('#task-status [data-status]')?.dataset.status === 'pending' &&
		document.querySelector('#task-progress-text').textContent === '0 %'`)
	tab.Eval(`window.__sameDocument = true`, nil)
	var liveID string
	tab.Eval(`decodeURIComponent(location.hash.slice('#/tasks/'.length))`, &liveID)
	resume, err := admin.ResumeQueueWithResponse(ctx, client.Low)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resume.StatusCode(), string(resume.Body))
	s.waitStatus(t, admin, liveID, client.StatusCompleted, taskWithin)
	tab.Until("completed", `document.querySelector('#task-status [data-status]').dataset.status === 'completed'`)
	tab.Until("100 %", `document.querySelector('#task-progress-text').textContent === '100 %'`)
	tab.Until("the result", `(document.querySelector('#task-result-json') || {}).textContent?.includes('"portfolio_id": "pf_demo_growth"')`)
	tab.Until("the attempt", `!!document.querySelector('#task-attempts tr[data-attempt="1"] [data-status="completed"]')`)
	var same bool
	tab.Eval(`window.__sameDocument === true`, &same)
	require.True(t, same, "the page followed the task without a reload")
	task, ok := getTask(t, admin, liveID)
	require.True(t, ok)
	require.Equal(t, client.StatusCompleted, task.Status)
	require.Equal(t, client.Low, task.Priority)

	// Cancel a running webhook.
	timeout := 120
	held := newTask("webhook_callback", params{"url": hold.URL + "/hold", "payload": map[string]any{"n": 2}})
	held.TimeoutSeconds = &timeout
	blocked := create(t, admin, held)
	s.waitStatus(t, admin, blocked, client.StatusRunning, taskWithin)
	tab.Hash("#/tasks/" + blocked)
	tab.Until("the held task runs", `document.querySelector('#task-status [data-status]')?.dataset.status === 'running'`)
	tab.Confirm("cancel it", "#cancel-task")
	tab.Until("cancelled", `document.querySelector('#task-status [data-status]')?.dataset.status === 'cancelled'`)
	task, _ = getTask(t, admin, blocked)
	require.Equal(t, client.StatusCancelled, task.Status)

	// Retry the failed webhook from the dead letters: it runs a second time.
	tab.Hash("#/dead")
	row := fmt.Sprintf(`#task-rows tr[data-task-id=%q]`, failed)
	tab.Confirm("retry it", row+` button[data-action="retry"]`)
	require.Eventually(t, func() bool { return len(logs(t, admin, failed).Attempts) == 2 }, taskWithin, pollEvery,
		"the retried task did not run again%s", s.logTails())

	// A schedule created, edited and disabled.
	tab.Hash("#/schedules")
	tab.Run("fill the schedule form", chromedp.WaitVisible("#schedule-form", chromedp.ByQuery),
		chromedp.Evaluate(`(() => { const s = document.querySelector('#sch-type'); s.value = 'calculate_metrics'; s.dispatchEvent(new Event('change')); })()`, nil),
		chromedp.WaitVisible("#sch-param-portfolio_id", chromedp.ByQuery),
		chromedp.SendKeys("#sch-name", "console-nightly", chromedp.ByQuery), chromedp.SendKeys("#sch-cron", "0 3 * * *", chromedp.ByQuery),
		chromedp.SetValue("#sch-timezone", "UTC", chromedp.ByQuery), chromedp.SendKeys("#sch-param-portfolio_id", "pf_demo_income", chromedp.ByQuery),
		chromedp.Click("#sch-submit", chromedp.ByQuery))
	srow := `#schedule-rows tr[data-name="console-nightly"]`
	tab.ClickLive("edit it", srow+` a[data-action="edit"]`)
	tab.Until("the form holds the schedule", `document.querySelector('#sch-cron')?.value === '0 3 * * *' && document.querySelector('#sch-param-portfolio_id').value === 'pf_demo_income'`)
	tab.Run("change its cron", chromedp.SetValue("#sch-cron", "30 4 * * *", chromedp.ByQuery), chromedp.Click("#sch-submit", chromedp.ByQuery))
	tab.Until("the edit", fmt.Sprintf(`location.hash === '#/schedules' && document.querySelector('%s code')?.textContent === '30 4 * * *'`, srow))
	tab.ClickLive("disable it", srow+` button[data-action="toggle"]`)
	tab.Until("disabled", fmt.Sprintf(`document.querySelector('%s')?.dataset.enabled === 'false'`, srow))
	list, err := admin.ListSchedulesWithResponse(ctx, nil)
	require.NoError(t, err)
	require.Len(t, list.JSON200.Items, 1)
	require.Equal(t, "30 4 * * *", list.JSON200.Items[0].Cron)
	require.False(t, list.JSON200.Items[0].Enabled)

	// A schedule that starts a workflow: a dangling dependency is refused
	// beside the definition; a good one is created, and an edit of its cron
	// keeps the definition.
	tab.Hash("#/schedules")
	tab.Run("a workflow schedule with a dangling dependency", chromedp.WaitVisible("#schedule-form", chromedp.ByQuery),
		chromedp.Evaluate(`(() => { const s = document.querySelector('#sch-kind'); s.value = 'workflow'; s.dispatchEvent(new Event('change')); })()`, nil),
		chromedp.WaitVisible("#sch-workflow", chromedp.ByQuery),
		chromedp.SendKeys("#sch-name", "console-flow", chromedp.ByQuery), chromedp.SendKeys("#sch-cron", "0 5 * * *", chromedp.ByQuery),
		chromedp.SetValue("#sch-timezone", "UTC", chromedp.ByQuery),
		chromedp.SetValue("#sch-workflow", `{"steps":[{"id":"prices","type":"refresh_all_prices"},{"id":"metrics","type":"calculate_metrics","params":{"portfolio_id":"pf_demo_income"},"depends_on":["nope"]}]}`, chromedp.ByQuery),
		chromedp.Click("#sch-submit", chromedp.ByQuery))
	tab.Until("the error beside the definition", `/steps\[1\]|nope/.test(document.querySelector('#sch-workflow-error')?.textContent || '')`)
	tab.Run("fix the dependency", chromedp.SetValue("#sch-workflow",
		`{"steps":[{"id":"prices","type":"refresh_all_prices"},{"id":"metrics","type":"calculate_metrics","params":{"portfolio_id":"pf_demo_income"},"depends_on":["prices"]}]}`, chromedp.ByQuery),
		chromedp.Click("#sch-submit", chromedp.ByQuery))
	frow := `#schedule-rows tr[data-name="console-flow"]`
	tab.Until("the workflow schedule listed", fmt.Sprintf(`document.querySelector('%s td:nth-child(4)')?.textContent === 'workflow'`, frow))
	tab.ClickLive("edit the workflow schedule", frow+` a[data-action="edit"]`)
	tab.Until("the form holds the workflow", `document.querySelector('#sch-kind')?.value === 'workflow' && document.querySelector('#sch-workflow').value.includes('"metrics"') && document.querySelector('#sch-task-part').hidden`)
	tab.Run("change its cron", chromedp.SetValue("#sch-cron", "15 5 * * *", chromedp.ByQuery), chromedp.Click("#sch-submit", chromedp.ByQuery))
	tab.Until("the edit", fmt.Sprintf(`location.hash === '#/schedules' && document.querySelector('%s code')?.textContent === '15 5 * * *'`, frow))
	list, err = admin.ListSchedulesWithResponse(ctx, nil)
	require.NoError(t, err)
	var flow *client.Schedule
	for i := range list.JSON200.Items {
		if list.JSON200.Items[i].Name == "console-flow" {
			flow = &list.JSON200.Items[i]
		}
	}
	require.NotNil(t, flow, "the workflow schedule")
	require.Equal(t, "15 5 * * *", flow.Cron)
	require.Empty(t, flow.Type)
	require.NotNil(t, flow.Workflow, "the edit kept the workflow")
	steps, _ := json.Marshal(flow.Workflow)
	require.Contains(t, string(steps), `"depends_on":["prices"]`)

	// The API goes away: a banner says so. It comes back on the same address:
	// the banner goes and the list loads again without anyone reloading.
	tab.Hash("#/tasks")
	tab.Until("the list", fmt.Sprintf(`!!document.querySelector('#task-rows tr[data-task-id=%q]')`, liveID))
	tab.Eval(`window.__sameDocument = true`, nil)
	api := s.procs[0]
	require.Equal(t, "api", api.name)
	require.NoError(t, api.Stop(t, syscall.SIGTERM, 20*time.Second))
	tab.Until("the banner", `!document.querySelector('#banner').hidden && document.querySelector('#banner').textContent.includes('unreachable')`)
	s.waitReady(s.start("api", "api", s.api+"/readyz"))
	tab.Until("the banner gone and the list back", fmt.Sprintf(`document.querySelector('#banner').hidden &&
		!!document.querySelector('#task-rows tr[data-task-id=%q]')`, liveID))
	tab.Eval(`window.__sameDocument === true`, &same)
	require.True(t, same, "the page recovered without a reload")
	tab.CheckClean(s.api)

	// Sign out: a reload shows the sign-in page.
	tab.Run("sign out", chromedp.Click("#signout", chromedp.ByQuery), chromedp.WaitVisible("#signin-form", chromedp.ByQuery))
	tab.Run("reload", chromedp.Reload(), chromedp.WaitVisible("#signin-form", chromedp.ByQuery))
	var signedOut bool
	tab.Eval(`document.querySelector('#top').hidden && !document.querySelector('#task-rows') && sessionStorage.length === 0`, &signedOut)
	require.True(t, signedOut, "after sign-out a reload is signed out")

	// A viewer sees the screens but no control it cannot use.
	viewer := browser.Open(t, chrome, "viewer")
	viewer.Run("open the console", chromedp.Navigate(s.api+"/console/"))
	viewer.SignIn(viewerKey)
	noControls := `!document.querySelector('#new-task-link, #nav-new, #cancel-task, #retry-task, button[data-action], #schedule-form')`
	for screen, ready := range map[string]string{
		"#/tasks":     `!!document.querySelector('#task-rows td.empty')`, // a viewer lists its own tasks: none
		"#/dead":      `!!document.querySelector('#task-rows td.empty')`,
		"#/schedules": `!!document.querySelector('#schedule-rows tr[data-name="console-nightly"]')`,
		"#/stats":     `document.querySelectorAll('#queue-rows tr').length === 4`,
	} {
		viewer.Hash(screen)
		viewer.Until("the viewer's "+screen, ready)
		var none bool
		viewer.Eval(noControls, &none)
		require.True(t, none, "the viewer sees a control on %s", screen)
	}
	viewer.CheckClean(s.api)
}
