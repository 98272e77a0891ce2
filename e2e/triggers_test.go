package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/services/api/client"
)

// api sends a JSON request to the stack's API with key ("" sends none) and
// header, and returns the status and body.
func (s *stack) send(t *testing.T, method, path, key string, body []byte, header map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.api+path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

// createTrigger creates a trigger as the admin and returns its answer.
func (s *stack) createTrigger(t *testing.T, body string) map[string]any {
	t.Helper()
	code, out := s.send(t, http.MethodPost, "/api/v1/triggers", s.adminKey, []byte(body), nil)
	require.Equal(t, http.StatusCreated, code, string(out))
	var tr map[string]any
	require.NoError(t, json.Unmarshal(out, &tr))
	return tr
}

// triggerTasks lists the tasks a trigger created.
func triggerTasks(t *testing.T, c *client.ClientWithResponses, id string) []client.Task {
	t.Helper()
	resp, err := c.ListTasksWithResponse(t.Context(), &client.ListTasksParams{TriggerId: &id})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode(), string(resp.Body))
	return resp.JSON200.Items
}

// TestTriggers drives one trigger of each kind through the four binaries: a
// signed delivery to the API makes the webhook trigger's task (again the same
// one for the same webhook-id; an unsigned one is 401); a change to holdings
// made in PostgreSQL becomes a task through the scheduler's dispatcher; an
// uploaded CSV makes the upload trigger's import_prices, whose prices are
// then in the database. The workers run all three to completion.
func TestTriggers(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	admin := s.client(s.adminKey)

	// Webhook.
	hook := s.createTrigger(t, `{"name":"e2e-hook","kind":"webhook",
		"task":{"type":"refresh_portfolio","param_map":{"portfolio_id":"/body/portfolio"}}}`)
	id, hookURL := hook["trigger_id"].(string), hook["hook_url"].(string)
	secret, err := notify.ParseSecret(hook["secret"].(string))
	require.NoError(t, err)
	body := []byte(`{"portfolio":"pf_demo_growth","source":"e2e"}`)
	deliver := func(wid string, secrets ...[]byte) (int, []byte) {
		now := time.Now()
		h := map[string]string{notify.HeaderWebhookID: wid, notify.HeaderWebhookTimestamp: strconv.FormatInt(now.Unix(), 10)}
		if len(secrets) > 0 {
			h[notify.HeaderWebhookSignature] = notify.SignWebhook(wid, now, body, secrets...)
		}
		return s.send(t, http.MethodPost, hookURL, "", body, h)
	}
	code, out := deliver("e2e-1", secret)
	require.Equal(t, http.StatusAccepted, code, string(out))
	var accepted struct {
		TaskID string `json:"task_id"`
	}
	require.NoError(t, json.Unmarshal(out, &accepted))
	code, again := deliver("e2e-1", secret)
	require.Equal(t, http.StatusAccepted, code)
	require.JSONEq(t, string(out), string(again), "the same webhook-id gives the same task")
	code, _ = deliver("e2e-2")
	require.Equal(t, http.StatusUnauthorized, code, "an unsigned delivery")
	done := s.waitStatus(t, admin, accepted.TaskID, client.StatusCompleted, time.Minute)
	require.Equal(t, id, *done.TriggerId)
	require.Len(t, triggerTasks(t, admin, id), 1)

	// Database: a change to holdings, made in PostgreSQL as any other
	// program would, becomes a refresh_portfolio of the changed portfolio.
	db := s.createTrigger(t, `{"name":"e2e-holdings","kind":"database","table":"holdings","operations":["update"],
		"task":{"type":"refresh_portfolio","param_map":{"portfolio_id":"/row/portfolio_id"}}}`)
	dbID := db["trigger_id"].(string)
	require.NoError(t, s.pg.DB.Exec(`UPDATE holdings SET quantity = quantity + 1
		WHERE portfolio_id = 'pf_demo_income' AND asset_symbol = (SELECT min(asset_symbol) FROM holdings WHERE portfolio_id = 'pf_demo_income')`).Error)
	var made []client.Task
	require.Eventually(t, func() bool { made = triggerTasks(t, admin, dbID); return len(made) == 1 },
		time.Minute, pollEvery, "the scheduler's dispatcher makes the change's task%s", s.logTails())
	task := s.waitStatus(t, admin, made[0].TaskId, client.StatusCompleted, time.Minute)
	require.Equal(t, "pf_demo_income", task.Params["portfolio_id"])

	// Upload: a CSV matching the filter is imported.
	up := s.createTrigger(t, `{"name":"e2e-upload","kind":"upload","filter":{"content_type":"text/csv","name_glob":"prices-*.csv"},
		"task":{"type":"import_prices","params":{"create_assets":true},"param_map":{"upload_id":"/upload_id"}}}`)
	upID := up["trigger_id"].(string)
	csv := "symbol,date,open,high,low,close,volume\nE2ETRG,2024-01-02,10,11,9,10.5,1000\nE2ETRG,2024-01-03,10.5,12,10,11,1200\n"
	req, err := http.NewRequest(http.MethodPost, s.api+"/api/v1/uploads?name=prices-e2e.csv", bytes.NewReader([]byte(csv)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Authorization", "Bearer "+s.adminKey)
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	require.NoError(t, err)
	upBody, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(upBody))
	imports := triggerTasks(t, admin, upID)
	require.Len(t, imports, 1, "the upload made the trigger's task")
	s.waitStatus(t, admin, imports[0].TaskId, client.StatusCompleted, time.Minute)
	var prices int64
	require.NoError(t, s.pg.DB.Raw(`SELECT count(*) FROM prices WHERE asset_symbol = 'E2ETRG'`).Scan(&prices).Error)
	require.EqualValues(t, 2, prices)
}
