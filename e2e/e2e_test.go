package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/notify/notifytest"
	"github.com/taskforge/taskforge/services/api/client"
)

// Generous bounds: a task of the demo data set takes well under a second, but
// the machine is shared.
const (
	taskWithin  = 60 * time.Second
	eventWithin = 30 * time.Second
)

// TestStack runs the whole stack and uses it as a user would.
func TestStack(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs PostgreSQL and Redis")
	}
	began := time.Now()
	s := startStack(t)
	t.Logf("stack ready in %s", time.Since(began).Round(100*time.Millisecond))

	admin := s.client(s.adminKey)
	operator := s.client(s.newKey(t, admin, "e2e-operator", client.CreateAPIKeyRequestRoleOperator))
	viewer := s.client(s.newKey(t, admin, "e2e-viewer", client.CreateAPIKeyRequestRoleViewer))

	t.Run("parts", func(t *testing.T) {
		s.lifecycle(t, admin, operator, viewer)
		t.Run("cli", func(t *testing.T) {
			t.Parallel()
			key := s.newKey(t, admin, "e2e-cli", client.CreateAPIKeyRequestRoleOperator)
			s.cli(t, s.client(key), key)
		})
		t.Run("workflow", func(t *testing.T) {
			t.Parallel()
			key := s.newKey(t, admin, "e2e-workflow", client.CreateAPIKeyRequestRoleOperator)
			s.dailyRefreshWorkflow(t, admin, s.client(key), key)
		})
	})
	t.Run("monitoring", func(t *testing.T) { s.monitoring(t, admin, operator) })
	require.Empty(t, s.errorLines(), "no service logs an error while the stack is used as documented")
	t.Logf("end-to-end run took %s", time.Since(began).Round(100*time.Millisecond))
}

// newKey creates an API key with role as the admin and returns the key.
// lifecycle runs, in parallel subtests of t, every task type, the cancel of a
// running task, a failure retried by hand and a schedule's runs.
func (s *stack) lifecycle(t *testing.T, admin, operator, viewer *client.ClientWithResponses) {
	t.Run("every task type", func(t *testing.T) {
		t.Parallel()
		s.everyTaskType(t, admin, operator, viewer)
	})
	t.Run("cancel a running task", func(t *testing.T) {
		t.Parallel()
		s.cancelRunning(t, operator)
	})
	t.Run("fail then retry by hand", func(t *testing.T) {
		t.Parallel()
		s.failThenRetry(t, operator)
	})
	t.Run("schedule", func(t *testing.T) {
		t.Parallel()
		s.scheduleRuns(t, admin, operator)
	})
}

func (s *stack) newKey(t *testing.T, admin *client.ClientWithResponses, name string, role client.CreateAPIKeyRequestRole) string {
	t.Helper()
	expires := time.Now().Add(time.Hour)
	resp, err := admin.CreateAPIKeyWithResponse(context.Background(), client.CreateAPIKeyRequest{Name: name, Role: role, ExpiresAt: &expires})
	require.NoError(t, err)
	require.Equalf(t, http.StatusCreated, resp.StatusCode(), "create API key: %s", resp.Body)
	require.Equal(t, client.APIKeyRole(role), resp.JSON201.Role)
	require.NotNil(t, resp.JSON201.Key)
	require.NotEmpty(t, *resp.JSON201.Key)
	return *resp.JSON201.Key
}

// everyTaskType creates one task of each of the twelve types (two reports),
// each by a caller allowed to, waits for each to complete and checks its
// documented result and side effects.
func (s *stack) everyTaskType(t *testing.T, admin, operator, viewer *client.ClientWithResponses) {
	now := time.Now().UTC()
	today := now.Format(time.DateOnly)
	webhookSecret := "whsec_" + randomHex(t, 16)
	// The operator reads its callback signing secret by rotating it.
	rotated, err := operator.RotateCallbackSecretWithResponse(context.Background())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, rotated.StatusCode(), string(rotated.Body))
	callbackSecret := rotated.JSON200.Secret
	callbackURL := s.hooks.srv.URL + "/callback/portfolio"

	// Operators create the data refresh and notification tasks.
	portfolio := newTask("refresh_portfolio", params{"portfolio_id": "pf_demo_balanced"})
	portfolio.CallbackUrl = &callbackURL
	byOperator := map[string]string{
		"refresh_all_prices": create(t, operator, newTask("refresh_all_prices", params{
			"symbols": []string{"AAPL", "MSFT", "NVDA", "SPY", "BTC-USD"}, "lookback_days": 7,
		})),
		"refresh_portfolio": create(t, operator, portfolio),
		"refresh_benchmark": create(t, operator, newTask("refresh_benchmark", params{"benchmark": "^SPX", "lookback_days": 7})),
		"calculate_metrics": create(t, operator, newTask("calculate_metrics", params{
			"portfolio_id": "pf_demo_growth", "window_days": 126, "benchmark": "^NDX", "risk_free_rate": 0.02,
		})),
		"send_alert": create(t, operator, newTask("send_alert", params{
			"channel": "slack", "title": "Drawdown on pf_demo_growth", "message": "Max drawdown passed 10% over 126 days",
			"severity": "warning",
		})),
		"webhook_callback": create(t, operator, newTask("webhook_callback", params{
			"url": s.hooks.srv.URL + "/webhook/portfolio-updated", "method": "POST",
			"headers": map[string]string{"X-Source": "taskforge-e2e"},
			"payload": map[string]any{"event": "portfolio.updated", "portfolio_id": "pf_demo_balanced", "tags": []string{"e2e"}},
			"secret":  webhookSecret,
		})),
		"generate_digest": create(t, operator, newTask("generate_digest", params{
			"period": "weekly", "date": today, "recipients": []string{"pm@example.test", "risk@example.test"},
		})),
	}
	// Maintenance types are admin-only.
	byAdmin := map[string]string{
		"cleanup_old_data": create(t, admin, newTask("cleanup_old_data", params{
			"older_than_days": 30, "targets": []string{"tasks", "task_logs", "audit"}, "dry_run": true,
		})),
		"optimize_database": create(t, admin, newTask("optimize_database", params{
			"tables": []string{"prices", "portfolio_values"}, "analyze_only": true,
		})),
		"backup_data": create(t, admin, newTask("backup_data", params{
			"tables": []string{"assets", "portfolios", "holdings"}, "format": "jsonl",
		})),
		"report_csv": create(t, admin, newTask("generate_reports", params{
			"report": "portfolio_summary", "portfolio_id": "pf_demo_income", "format": "csv",
		})),
		"report_html": create(t, admin, newTask("generate_reports", params{"report": "task_activity", "format": "html"})),
	}

	// The callers' rights, on the same API.
	resp, err := operator.CreateTaskWithResponse(context.Background(), nil, newTask("backup_data", params{}))
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, resp.StatusCode(), "operators may not create maintenance tasks: %s", resp.Body)
	resp, err = viewer.CreateTaskWithResponse(context.Background(), nil, newTask("refresh_portfolio", params{"portfolio_id": "pf_demo_income"}))
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, resp.StatusCode(), "viewers may not create tasks: %s", resp.Body)
	for _, c := range []*client.ClientWithResponses{viewer, operator} {
		got, err := c.GetTaskWithResponse(context.Background(), byAdmin["backup_data"])
		require.NoError(t, err)
		require.Equal(t, http.StatusNotFound, got.StatusCode(), "another caller's task is not found: %s", got.Body)
	}
	// An idempotent create: the same key and body from the same caller give
	// the original task, another body a conflict.
	key := "e2e-prices-" + randomHex(t, 4)
	idem := newTask("refresh_all_prices", params{"symbols": []string{"KO", "PEP"}, "lookback_days": 3})
	idem.IdempotencyKey = &key
	idemID := create(t, operator, idem)
	again, err := operator.CreateTaskWithResponse(context.Background(), nil, idem)
	require.NoError(t, err)
	require.Equalf(t, http.StatusOK, again.StatusCode(), "same idempotency key and body: %s", again.Body)
	require.Equal(t, idemID, again.JSON200.TaskId)
	other := newTask("refresh_all_prices", params{"symbols": []string{"KO"}, "lookback_days": 3})
	other.IdempotencyKey = &key
	again, err = operator.CreateTaskWithResponse(context.Background(), nil, other)
	require.NoError(t, err)
	require.Equalf(t, http.StatusConflict, again.StatusCode(), "same idempotency key, other body: %s", again.Body)
	byOperator["refresh_all_prices (idempotent)"] = idemID

	list, err := viewer.ListTasksWithResponse(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, list.StatusCode(), string(list.Body))
	require.Empty(t, list.JSON200.Items, "a viewer sees only its own tasks")

	// The email attaches the CSV report, so it is created once the report is
	// done (an unfinished attachment makes the attempt retry after the type's
	// retry delay).
	done := map[string]client.Task{}
	done["report_csv"] = s.waitStatus(t, admin, byAdmin["report_csv"], client.StatusCompleted, taskWithin)
	subject := "Weekly income report " + randomHex(t, 4)
	byAdmin["send_email"] = create(t, admin, newTask("send_email", params{
		"to": []string{"ops@example.test", "pm@example.test"}, "cc": []string{"audit@example.test"},
		"subject": subject, "body_text": "The income portfolio summary is attached.",
		"body_html":   "<p>The income portfolio summary is attached.</p>",
		"attachments": []string{byAdmin["report_csv"]},
	}))
	for name, id := range byOperator {
		done[name] = s.waitStatus(t, operator, id, client.StatusCompleted, taskWithin)
		checkCompleted(t, operator, done[name])
	}
	for name, id := range byAdmin {
		if _, ok := done[name]; !ok {
			done[name] = s.waitStatus(t, admin, id, client.StatusCompleted, taskWithin)
		}
		checkCompleted(t, admin, done[name])
	}
	workers := map[string]bool{}
	for _, task := range done {
		for _, a := range logs(t, admin, task.TaskId).Attempts {
			workers[a.Worker] = true
		}
	}
	t.Logf("%d tasks ran on %d worker(s)", len(done), len(workers))

	// Data refresh.
	res := result(t, done["refresh_all_prices"])
	require.EqualValues(t, 5, num(t, res, "assets_updated"), res)
	require.GreaterOrEqual(t, num(t, res, "prices_upserted"), 5.0, res)
	require.Empty(t, res["failed_symbols"], res)
	jsonResult(t, operator, done["refresh_all_prices"])

	res = result(t, done["refresh_portfolio"])
	require.Equal(t, "pf_demo_balanced", str(t, res, "portfolio_id"))
	require.Regexp(t, `^\d{4}-\d{2}-\d{2}$`, str(t, res, "as_of"))
	require.Greater(t, num(t, res, "market_value"), 0.0)
	require.EqualValues(t, 10, num(t, res, "holdings_valued"), res)
	require.Contains(t, res, "day_change")
	jsonResult(t, operator, done["refresh_portfolio"])

	res = result(t, done["refresh_benchmark"])
	require.EqualValues(t, 1, num(t, res, "assets_updated"), res)
	require.Greater(t, num(t, res, "prices_upserted"), 0.0, res)
	require.Empty(t, res["failed_symbols"], res)

	res = result(t, done["calculate_metrics"])
	require.Equal(t, "pf_demo_growth", str(t, res, "portfolio_id"))
	require.EqualValues(t, 126, num(t, res, "window_days"))
	require.Equal(t, "^NDX", str(t, res, "benchmark"))
	require.InDelta(t, 0.02, num(t, res, "risk_free_rate"), 1e-12)
	require.Greater(t, num(t, res, "returns"), 60.0, res)
	require.Greater(t, num(t, res, "annualised_volatility"), 0.0, res)
	for _, k := range []string{"annualised_return", "sharpe", "sortino", "max_drawdown", "var_95", "cvar_95", "beta", "alpha", "tracking_error"} {
		num(t, res, k)
	}
	require.GreaterOrEqual(t, num(t, res, "cvar_95"), num(t, res, "var_95"), "CVaR is the mean loss beyond VaR")
	require.Greater(t, num(t, res, "tracking_error"), 0.0)
	jsonResult(t, operator, done["calculate_metrics"])

	// Maintenance.
	res = result(t, done["cleanup_old_data"])
	require.Equal(t, true, res["dry_run"], res)
	targets := obj(t, res, "targets")
	require.ElementsMatch(t, []string{"tasks", "task_logs", "audit"}, keys(targets))
	for name := range targets {
		num(t, obj(t, targets, name), "rows")
	}
	jsonResult(t, admin, done["cleanup_old_data"])

	res = result(t, done["optimize_database"])
	require.Equal(t, true, res["analyze_only"], res)
	tables := obj(t, res, "tables")
	require.ElementsMatch(t, []string{"prices", "portfolio_values"}, keys(tables))
	require.Equal(t, true, obj(t, tables, "prices")["analyzed"], res)
	require.Greater(t, num(t, obj(t, tables, "prices"), "size_before"), 0.0)

	res = result(t, done["backup_data"])
	require.Equal(t, "jsonl", str(t, res, "format"))
	require.Regexp(t, `^[0-9a-f]{64}$`, str(t, res, "sha256"))
	require.True(t, strings.HasPrefix(str(t, res, "download_url"), s.api+"/api/v1/"), res)
	counts := obj(t, res, "tables")
	require.EqualValues(t, 36, num(t, counts, "assets"), res)
	require.EqualValues(t, 3, num(t, counts, "portfolios"), res)
	require.EqualValues(t, 36, num(t, counts, "holdings"), res)
	archive := fileResult(t, admin, done["backup_data"])
	require.NotEmpty(t, archive)

	res = result(t, done["report_csv"])
	require.Equal(t, "portfolio_summary", str(t, res, "report"))
	require.Equal(t, "csv", str(t, res, "format"))
	require.Equal(t, "pf_demo_income", str(t, res, "portfolio_id"))
	require.EqualValues(t, 15, num(t, res, "rows"), "one row per holding of pf_demo_income")
	reportName := str(t, res, "name")
	require.True(t, strings.HasSuffix(reportName, ".csv"), reportName)
	csvFile := fileResult(t, admin, done["report_csv"])
	require.GreaterOrEqual(t, strings.Count(string(csvFile), "\n"), 16, "a header and 15 rows:\n%s", csvFile)
	for _, sym := range []string{"KO", "PEP", "VWINX"} {
		require.Contains(t, string(csvFile), sym)
	}

	res = result(t, done["report_html"])
	require.Equal(t, "task_activity", str(t, res, "report"))
	require.Equal(t, "html", str(t, res, "format"))
	require.True(t, strings.HasSuffix(str(t, res, "name"), ".html"), res)
	htmlFile := fileResult(t, admin, done["report_html"])
	require.Contains(t, strings.ToLower(string(htmlFile)), "<table")

	// Notification: the email with its attachment, at the SMTP server.
	res = result(t, done["send_email"])
	require.EqualValues(t, 3, num(t, res, "recipients"))
	require.EqualValues(t, 1, num(t, res, "attachments"))
	require.EqualValues(t, len(csvFile), num(t, res, "attachment_bytes"))
	jsonResult(t, admin, done["send_email"])
	msg := s.mail.MessageBySubject(t, subject)
	require.ElementsMatch(t, []string{"ops@example.test", "pm@example.test"}, notifytest.Addresses(msg.To))
	require.ElementsMatch(t, []string{"audit@example.test"}, notifytest.Addresses(msg.Cc))
	require.Contains(t, msg.Text, "income portfolio summary")
	require.Len(t, msg.Attachments, 1)
	require.Equal(t, reportName, msg.Attachments[0].FileName)
	require.Equal(t, string(csvFile), string(s.mail.Part(t, msg.ID, msg.Attachments[0].PartID)))

	// The Slack alert reached the (local) incoming webhook.
	res = result(t, done["send_alert"])
	require.Equal(t, "slack", str(t, res, "channel"))
	slack := s.alerts.received("/slack/")
	require.Len(t, slack, 1)
	require.Contains(t, string(slack[0].Body), "Drawdown on pf_demo_growth")
	require.Contains(t, string(slack[0].Body), "warning")

	// The webhook: a body signed with the task's secret, which reads back
	// redacted.
	res = result(t, done["webhook_callback"])
	require.EqualValues(t, http.StatusOK, num(t, res, "status"))
	require.Equal(t, "***", done["webhook_callback"].Params["secret"], "secret params read back redacted")
	require.Equal(t, map[string]any{"X-Source": "***"}, done["webhook_callback"].Params["headers"], "header values read back redacted")
	hooks := s.hooks.received("/webhook/portfolio-updated")
	require.Len(t, hooks, 1)
	hook := hooks[0]
	require.Equal(t, http.MethodPost, hook.Method)
	require.Equal(t, "taskforge-e2e", hook.Header.Get("X-Source"))
	require.Equal(t, done["webhook_callback"].TaskId, hook.Header.Get("Idempotency-Key"))
	require.NoError(t, notify.Verify([]byte(webhookSecret), hook.Header.Get(notify.SignatureHeader), hook.Body, time.Now(), 0))
	require.Error(t, notify.Verify([]byte("another secret"), hook.Header.Get(notify.SignatureHeader), hook.Body, time.Now(), 0))
	require.JSONEq(t, `{"event":"portfolio.updated","portfolio_id":"pf_demo_balanced","tags":["e2e"]}`, string(hook.Body))

	// The digest, at the SMTP server.
	res = result(t, done["generate_digest"])
	require.Equal(t, "weekly", str(t, res, "period"))
	require.Equal(t, today, str(t, res, "end"))
	start := now.AddDate(0, 0, -6).Format(time.DateOnly)
	require.Equal(t, start, str(t, res, "start"))
	require.EqualValues(t, 2, num(t, res, "recipients"))
	require.EqualValues(t, 3, num(t, res, "portfolios"))
	require.GreaterOrEqual(t, num(t, res, "tasks"), 6.0, "the operator's other tasks of today: %v", res)
	digest := s.mail.MessageBySubject(t, "Taskforge weekly digest for "+start+" to "+today)
	require.ElementsMatch(t, []string{"pm@example.test", "risk@example.test"}, notifytest.Addresses(digest.To))
	require.Contains(t, digest.Text, "pf_demo_balanced")

	// The callback_url of the portfolio task got the final task, signed with
	// the operator's callback secret (Standard Webhooks).
	var cb recorded
	require.Eventuallyf(t, func() bool {
		got := s.hooks.received("/callback/portfolio")
		if len(got) > 0 {
			cb = got[0]
		}
		return len(got) > 0
	}, eventWithin, 50*time.Millisecond, "no callback delivered%s", s.logTails())
	require.NoError(t, client.VerifyCallback(callbackSecret, cb.Header, cb.Body, time.Now(), 0))
	require.ErrorIs(t, client.VerifyCallback(notify.FormatSecret(notify.NewSecret()), cb.Header, cb.Body, time.Now(), 0), client.ErrCallbackSignature)
	var final map[string]any
	require.NoError(t, json.Unmarshal(cb.Body, &final), string(cb.Body))
	require.Equal(t, done["refresh_portfolio"].TaskId, final["task_id"], string(cb.Body))
	require.Equal(t, "completed", final["status"], string(cb.Body))
	require.Equal(t, "refresh_portfolio", final["type"], string(cb.Body))
}

// cancelRunning cancels a webhook_callback whose receiver holds the request
// open: the running handler's context is cancelled across processes (API →
// Redis/PostgreSQL → worker) and the task ends cancelled.
func (s *stack) cancelRunning(t *testing.T, operator *client.ClientWithResponses) {
	var arrived, aborted atomic.Int32
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		arrived.Add(1)
		select {
		case <-r.Context().Done():
			aborted.Add(1)
		case <-release:
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })

	timeout := 120
	req := newTask("webhook_callback", params{"url": slow.URL + "/slow", "payload": map[string]any{"n": 1}})
	req.TimeoutSeconds = &timeout
	id := create(t, operator, req)
	s.waitStatus(t, operator, id, client.StatusRunning, taskWithin)
	require.Eventuallyf(t, func() bool { return arrived.Load() == 1 }, eventWithin, 20*time.Millisecond,
		"the webhook request never arrived%s", s.logTails())

	resp, err := operator.CancelTaskWithResponse(context.Background(), id)
	require.NoError(t, err)
	require.Equalf(t, http.StatusAccepted, resp.StatusCode(), "cancel a running task: %s", resp.Body)
	require.True(t, resp.JSON202.CancelRequested)
	task := s.waitStatus(t, operator, id, client.StatusCancelled, eventWithin)
	require.NotNil(t, task.CompletedAt)
	require.Eventually(t, func() bool { return aborted.Load() == 1 }, eventWithin, 20*time.Millisecond,
		"the handler's request was not aborted")
	l := logs(t, operator, id)
	require.Equal(t, []client.AttemptOutcome{client.AttemptOutcomeCancelled}, outcomes(l))

	again, err := operator.CancelTaskWithResponse(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, http.StatusConflict, again.StatusCode(), "a cancelled task cannot be cancelled again: %s", again.Body)
	require.EqualValues(t, 1, arrived.Load(), "the cancelled task was not run again")
}

// failThenRetry runs a webhook_callback against a receiver answering 500: one
// retry, then failed; a manual retry once the receiver answers 200 completes.
func (s *stack) failThenRetry(t *testing.T, operator *client.ClientWithResponses) {
	var status atomic.Int32
	status.Store(http.StatusInternalServerError)
	var mu sync.Mutex
	var calls []time.Time
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		calls = append(calls, time.Now())
		mu.Unlock()
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(flaky.Close)
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(calls) }

	one, no := 1, false
	req := newTask("webhook_callback", params{"url": flaky.URL + "/flaky", "payload": map[string]any{"try": true}})
	req.RetryPolicy = &client.RetryPolicyInput{MaxRetries: &one, RetryDelay: &one, MaxRetryDelay: &one, ExponentialBackoff: &no}
	id := create(t, operator, req)

	failed := s.waitStatus(t, operator, id, client.StatusFailed, taskWithin)
	require.Equal(t, 2, failed.Attempts)
	require.Equal(t, 1, failed.MaxRetries)
	require.NotNil(t, failed.Error)
	require.Contains(t, failed.Error.Message, "500")
	l := logs(t, operator, id)
	require.Equal(t, []client.AttemptOutcome{client.AttemptOutcomeRetrying, client.AttemptOutcomeFailed}, outcomes(l))
	require.Equal(t, 1, l.Metrics.Retries)
	require.Equal(t, 2, count())

	status.Store(http.StatusOK)
	resp, err := operator.RetryTaskWithResponse(context.Background(), id)
	require.NoError(t, err)
	require.Equalf(t, http.StatusOK, resp.StatusCode(), "manual retry: %s", resp.Body)
	require.Contains(t, []client.Status{client.StatusPending, client.StatusRunning, client.StatusCompleted}, resp.JSON200.Status)
	task := s.waitStatus(t, operator, id, client.StatusCompleted, taskWithin)
	checkCompleted(t, operator, task)
	require.Equal(t, 3, task.Attempts)
	require.EqualValues(t, http.StatusOK, num(t, result(t, task), "status"))
	l = logs(t, operator, id)
	require.Equal(t, []client.AttemptOutcome{client.AttemptOutcomeRetrying, client.AttemptOutcomeFailed, client.AttemptOutcomeCompleted}, outcomes(l))
	require.Equal(t, 3, count())
}

// scheduleRuns creates a schedule firing every second, waits for two completed
// runs, disables it and checks that it fires no more.
func (s *stack) scheduleRuns(t *testing.T, admin, operator *client.ClientWithResponses) {
	ctx := context.Background()
	p := map[string]any{"benchmark": "^NDX", "lookback_days": 3}
	in := client.ScheduleInput{Name: "e2e-benchmark-every-second", Cron: "@every 1s", Type: ptr("refresh_benchmark"), Params: &p}
	denied, err := operator.CreateScheduleWithResponse(ctx, in)
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, denied.StatusCode(), "operators may not create schedules: %s", denied.Body)
	created, err := admin.CreateScheduleWithResponse(ctx, in)
	require.NoError(t, err)
	require.Equalf(t, http.StatusCreated, created.StatusCode(), "create schedule: %s", created.Body)
	sch := created.JSON201
	require.True(t, sch.Enabled)
	require.NotNil(t, sch.NextRunAt)

	runs := func() []client.ScheduleRun {
		limit := 100
		resp, err := admin.ListScheduleRunsWithResponse(ctx, sch.Id, &client.ListScheduleRunsParams{Limit: &limit})
		require.NoError(t, err)
		if resp.StatusCode() == http.StatusTooManyRequests {
			return nil
		}
		require.Equalf(t, http.StatusOK, resp.StatusCode(), "schedule runs: %s", resp.Body)
		return resp.JSON200.Items
	}
	var completed []client.ScheduleRun
	require.Eventuallyf(t, func() bool {
		completed = completed[:0]
		for _, r := range runs() {
			if r.Status == client.StatusCompleted {
				completed = append(completed, r)
			}
		}
		return len(completed) >= 2
	}, taskWithin, 200*time.Millisecond, "fewer than 2 completed runs of the schedule%s", s.logTails())
	for _, r := range completed {
		task, ok := getTask(t, admin, r.TaskId)
		if !ok {
			continue
		}
		require.Equal(t, "refresh_benchmark", task.Type)
		require.NotNil(t, task.ScheduleId)
		require.Equal(t, sch.Id, *task.ScheduleId)
		require.Equal(t, "^NDX", task.Params["benchmark"])
		require.EqualValues(t, 1, num(t, result(t, task), "assets_updated"))
	}

	off := false
	patched, err := admin.PatchScheduleWithResponse(ctx, sch.Id, client.SchedulePatch{Enabled: &off})
	require.NoError(t, err)
	require.Equalf(t, http.StatusOK, patched.StatusCode(), "disable schedule: %s", patched.Body)
	require.False(t, patched.JSON200.Enabled)
	require.Nil(t, patched.JSON200.NextRunAt)
	disabled := time.Now()
	// A fire already under way when the schedule was disabled may still land;
	// none may be due later than that. Three sync intervals of quiet.
	require.Neverf(t, func() bool {
		for _, r := range runs() {
			if r.FireTime.After(disabled.Add(time.Second)) {
				return true
			}
		}
		return false
	}, 3*syncInterval, 200*time.Millisecond, "the disabled schedule fired again")
	t.Logf("schedule ran %d times, %d completed when checked", len(runs()), len(completed))
}

// monitoring checks the monitor's Asynqmon API, the API's queue list and the
// Prometheus endpoints of the api, the workers and the monitor.
func (s *stack) monitoring(t *testing.T, admin, operator *client.ClientWithResponses) {
	queues := []string{"critical", "high", "normal", "low"}
	code, body := s.get(t, s.monitor+"/monitoring/api/queues", s.adminKey)
	require.Equal(t, http.StatusOK, code, body)
	var asynqmon struct {
		Queues []struct {
			Queue     string `json:"queue"`
			Processed int    `json:"processed"`
		} `json:"queues"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &asynqmon), body)
	var names []string
	for _, q := range asynqmon.Queues {
		names = append(names, q.Queue)
	}
	require.ElementsMatch(t, queues, names, body)
	code, _ = s.get(t, s.monitor+"/monitoring/api/queues", "")
	require.Equal(t, http.StatusUnauthorized, code, "Asynqmon needs credentials")

	list, err := admin.ListQueuesWithResponse(context.Background())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, list.StatusCode(), string(list.Body))
	names = names[:0]
	for _, q := range list.JSON200.Items {
		names = append(names, string(q.Name))
	}
	require.ElementsMatch(t, queues, names)

	metrics, err := admin.MetricsWithResponse(context.Background())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, metrics.StatusCode())
	require.Regexp(t, regexp.MustCompile(`(?m)^taskforge_\w+`), string(metrics.Body))
	denied, err := operator.MetricsWithResponse(context.Background())
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, denied.StatusCode(), "the API's /metrics is for admins")

	window := "1h"
	stats, err := admin.GetStatsWithResponse(context.Background(), &client.GetStatsParams{Window: &window})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, stats.StatusCode(), string(stats.Body))
	perType := map[string]client.TypeStats{}
	for _, ts := range stats.JSON200.Types {
		if ts.Type != nil {
			perType[*ts.Type] = ts
		}
	}
	for _, typ := range []string{"refresh_all_prices", "refresh_portfolio", "refresh_benchmark", "calculate_metrics",
		"cleanup_old_data", "optimize_database", "backup_data", "generate_reports",
		"send_email", "send_alert", "webhook_callback", "generate_digest"} {
		require.GreaterOrEqualf(t, perType[typ].Completed, int64(1), "stats of %s: %s", typ, stats.Body)
	}
	require.GreaterOrEqual(t, perType["webhook_callback"].Failed+perType["webhook_callback"].Cancelled, int64(1), string(stats.Body))

	processed := 0
	for _, w := range s.workers {
		code, body := s.get(t, w+"/metrics", "")
		require.Equal(t, http.StatusOK, code)
		require.Contains(t, body, "taskforge_worker_up 1")
		processed += strings.Count(body, `taskforge_tasks_processed_total{outcome="completed"`)
	}
	require.Positive(t, processed, "the workers count completed tasks")

	require.Eventually(t, func() bool {
		code, body := s.get(t, s.monitor+"/metrics", "")
		return code == http.StatusOK && strings.Contains(body, `taskforge_queue_size{queue="high",state="pending"}`) &&
			strings.Contains(body, `taskforge_queue_processed_total{queue="normal"}`)
	}, eventWithin, 100*time.Millisecond, "the monitor's queue metrics")
}

// get fetches url, with a bearer token when key is set.
func (s *stack) get(t *testing.T, url, key string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// keys returns a map's keys.
func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
