package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/trigger"
	"github.com/taskforge/taskforge/pkg/workflow"
	"github.com/taskforge/taskforge/services/api/client"
)

// insertWorkflow writes a pending workflow of one step owned by owner and
// returns its id.
func insertWorkflow(t *testing.T, b testBundle, owner string) string {
	t.Helper()
	now := time.Now().UTC()
	wf := store.Workflow{ID: workflow.NewID(), Name: "matrix", Status: workflow.StatusPending, CreatedBy: owner, CreatedAt: now, UpdatedAt: now}
	require.NoError(t, b.pg.DB.Create(&wf).Error)
	require.NoError(t, b.pg.DB.Create(&store.WorkflowStep{WorkflowID: wf.ID, StepID: "a", Type: "refresh_all_prices",
		Params: store.JSON(`{}`), ParamsFrom: store.JSON(`{}`), DependsOn: store.JSON(`[]`)}).Error)
	return wf.ID
}

// TestWorkflowsOverHTTP: an operator creates a workflow (its root step's
// task exists at once and lists by workflow_id), reads it and cancels it;
// the bad ones are 422s naming the step and field; another operator and a
// viewer do not see it; the create and cancel are audited.
func TestWorkflowsOverHTTP(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	op, op2, viewer := b.client(t, tokOp), b.client(t, tokOp2), b.client(t, tokViewer)
	later := func(id string, deps ...string) client.WorkflowStepInput {
		d := deps
		return client.WorkflowStepInput{Id: id, Type: "refresh_portfolio", DependsOn: &d,
			Params: &map[string]interface{}{"portfolio_id": "pf_" + id}}
	}
	resp, err := op.CreateWorkflowWithResponse(ctx, client.WorkflowInput{Name: "nightly", Steps: []client.WorkflowStepInput{
		later("b", "a"), later("a"),
	}})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode(), string(resp.Body))
	wf := resp.JSON201
	require.Equal(t, "/api/v1/workflows/"+wf.WorkflowId, resp.HTTPResponse.Header.Get("Location"))
	require.Equal(t, client.WorkflowStatusRunning, wf.Status)
	require.Len(t, *wf.Steps, 2)
	a, bStep := (*wf.Steps)[0], (*wf.Steps)[1]
	require.Equal(t, "a", a.Id, "steps are listed dependencies first")
	require.NotNil(t, a.TaskId)
	require.Nil(t, bStep.TaskId)
	require.Equal(t, client.WorkflowStepStatusPending, bStep.Status)

	tasks, err := op.ListTasksWithResponse(ctx, &client.ListTasksParams{WorkflowId: &wf.WorkflowId})
	require.NoError(t, err)
	require.Len(t, tasks.JSON200.Items, 1)
	require.Equal(t, *a.TaskId, tasks.JSON200.Items[0].TaskId)
	require.Equal(t, wf.WorkflowId, *tasks.JSON200.Items[0].WorkflowId)
	require.Equal(t, "a", *tasks.JSON200.Items[0].StepId)

	got, err := op.GetWorkflowWithResponse(ctx, wf.WorkflowId)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, got.StatusCode())
	for _, other := range []*client.ClientWithResponses{op2, viewer} {
		r, err := other.GetWorkflowWithResponse(ctx, wf.WorkflowId)
		require.NoError(t, err)
		require.Equal(t, http.StatusNotFound, r.StatusCode(), "another caller does not see it")
		d, err := other.CancelWorkflowWithResponse(ctx, wf.WorkflowId)
		require.NoError(t, err)
		require.Equal(t, http.StatusNotFound, d.StatusCode())
	}
	mine, err := op2.ListWorkflowsWithResponse(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, mine.JSON200.Items)
	all, err := b.client(t, tokAdmin).ListWorkflowsWithResponse(ctx, nil)
	require.NoError(t, err)
	require.Len(t, all.JSON200.Items, 1)
	require.Nil(t, all.JSON200.Items[0].Steps, "a list shows no steps")

	cancelled, err := op.CancelWorkflowWithResponse(ctx, wf.WorkflowId)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, cancelled.StatusCode(), string(cancelled.Body))
	require.Equal(t, client.WorkflowStatusCancelled, cancelled.JSON200.Status, "a pending root task is cancelled at once")
	for _, s := range *cancelled.JSON200.Steps {
		require.Equal(t, client.WorkflowStepStatusCancelled, s.Status, s.Id)
	}
	again, err := op.CancelWorkflowWithResponse(ctx, wf.WorkflowId)
	require.NoError(t, err)
	require.Equal(t, http.StatusConflict, again.StatusCode())

	// Bad workflows: 422 naming the step and the field; nothing written.
	for body, field := range map[string]string{
		`{"name":"c","steps":[{"id":"a","type":"refresh_all_prices","depends_on":["b"]},{"id":"b","type":"refresh_all_prices","depends_on":["a"]}]}`: "steps[0].depends_on",
		`{"name":"u","steps":[{"id":"a","type":"refresh_all_prices","depends_on":["zz"]}]}`:                                                          "steps[0].depends_on[0]",
		`{"name":"d","steps":[{"id":"a","type":"refresh_all_prices"},{"id":"a","type":"refresh_all_prices"}]}`:                                       "steps[1].id",
		`{"name":"p","steps":[{"id":"a","type":"calculate_metrics","params":{"portfolio_id":"x","window_days":1}}]}`:                                 "steps[0].params.window_days",
		`{"name":"f","steps":[{"id":"a","type":"refresh_all_prices","callback_url":"https://example.com"}]}`:                                         "steps[0].callback_url",
		`{"name":"t","steps":[{"id":"a","type":"nope"}]}`:                                                                                            "steps[0].type",
		`{"name":"m","steps":[{"id":"a","type":"optimize_database"}]}`:                                                                               "steps[0].type",
		`{"steps":[]}`: "name",
	} {
		code, out, _ := b.call(t, http.MethodPost, "/api/v1/workflows", tokOp, body)
		require.Equal(t, http.StatusUnprocessableEntity, code, body+" → "+out)
		require.Contains(t, out, `"field":"`+field+`"`, body+" → "+out)
	}
	code, _, _ := b.call(t, http.MethodPost, "/api/v1/workflows", tokOp, `{"name":`)
	require.Equal(t, http.StatusBadRequest, code)
	var n int64
	require.NoError(t, b.pg.DB.Table("workflows").Count(&n).Error)
	require.EqualValues(t, 1, n, "no refused workflow was written")

	var actions []string
	require.NoError(t, b.pg.DB.Table("audit_log").Where("resource_type = ?", audit.ResourceWorkflow).
		Order("id").Pluck("action", &actions).Error)
	require.Contains(t, strings.Join(actions, " "), audit.ActionWorkflowCreate+" "+audit.ActionWorkflowCancel)
}

// TestScheduleWithAWorkflowOverHTTP: an admin creates a schedule that starts
// a workflow; the answer shows its steps and no task type; a workflow beside
// a type is a 422 naming type.
func TestScheduleWithAWorkflowOverHTTP(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	admin := b.client(t, tokAdmin)
	deps := []string{"prices"}
	resp, err := admin.CreateScheduleWithResponse(ctx, client.ScheduleInput{Name: "flow", Cron: "0 9 * * *",
		Workflow: &client.ScheduleWorkflow{Steps: []client.WorkflowStepInput{
			{Id: "prices", Type: "refresh_all_prices"},
			{Id: "all", Type: "refresh_portfolio", DependsOn: &deps, Params: &map[string]interface{}{"all": true}},
		}}})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode(), string(resp.Body))
	require.Empty(t, resp.JSON201.Type)
	require.NotNil(t, resp.JSON201.Workflow)
	require.Len(t, resp.JSON201.Workflow.Steps, 2)
	got, err := admin.GetScheduleWithResponse(ctx, resp.JSON201.Id)
	require.NoError(t, err)
	require.Equal(t, "all", got.JSON200.Workflow.Steps[1].Id)

	code, out, _ := b.call(t, http.MethodPost, "/api/v1/schedules", tokAdmin,
		`{"name":"both","cron":"0 9 * * *","type":"refresh_all_prices","workflow":{"steps":[{"id":"a","type":"refresh_all_prices"}]}}`)
	require.Equal(t, http.StatusUnprocessableEntity, code, out)
	require.Contains(t, out, `"field":"type"`)
}

// TestTriggerStartsAWorkflow: a webhook trigger may start a workflow at each
// delivery; its first step takes a param from the delivery's body; the same
// webhook-id starts no second workflow; a secret in a step's static params is
// refused naming the field.
func TestTriggerStartsAWorkflow(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	code, body, _ := b.call(t, http.MethodPost, "/api/v1/triggers", tokOp, `{"name":"flow-hook","kind":"webhook",
		"workflow":{"steps":[
			{"id":"value","type":"refresh_portfolio","params_from":{"portfolio_id":"/event/body/portfolio"}},
			{"id":"metrics","type":"calculate_metrics","depends_on":["value"],"params_from":{"portfolio_id":"/steps/value/result/portfolio_id"}}]}}`)
	require.Equal(t, http.StatusCreated, code, body)
	var tr trigger.Trigger
	require.NoError(t, json.Unmarshal([]byte(body), &tr))
	require.Contains(t, string(tr.Workflow), `"metrics"`)
	require.Empty(t, tr.Task.Type)
	key, err := notify.ParseSecret(tr.Secret)
	require.NoError(t, err)

	payload := []byte(`{"portfolio":"pf_from_hook"}`)
	for range 2 {
		code, out := b.deliver(t, tr.ID, "msg_flow_1", payload, time.Now(), "application/json", key)
		require.Equal(t, http.StatusAccepted, code, out)
	}
	var flows []store.Workflow
	require.NoError(t, b.pg.DB.Where("trigger_id = ?", tr.ID).Find(&flows).Error)
	require.Len(t, flows, 1, "one workflow per webhook-id")
	require.Equal(t, "key_op", flows[0].CreatedBy, "owned by the trigger's owner")
	var first store.Task
	require.NoError(t, b.pg.DB.Where("workflow_id = ? AND step_id = 'value'", flows[0].ID).Take(&first).Error)
	require.JSONEq(t, `{"portfolio_id":"pf_from_hook"}`, string(first.Params))
	require.NotNil(t, first.TriggerID)
	require.Equal(t, tr.ID, *first.TriggerID, "a step of a trigger's workflow is among the trigger's tasks")
	code, out, _ := b.call(t, http.MethodGet, "/api/v1/tasks?trigger_id="+tr.ID, tokOp, "")
	require.Equal(t, http.StatusOK, code, out)
	require.Contains(t, out, first.ID)

	code, out, _ = b.call(t, http.MethodPost, "/api/v1/triggers", tokOp, `{"name":"secret-flow","kind":"webhook",
		"workflow":{"steps":[{"id":"a","type":"webhook_callback","params":{"url":"https://hooks.example/x","secret":"kept-in-clear"}}]}}`)
	require.Equal(t, http.StatusUnprocessableEntity, code, out)
	require.Contains(t, out, `"field":"workflow.steps[0].params"`)
	code, out, _ = b.call(t, http.MethodPost, "/api/v1/triggers", tokOp, `{"name":"stray","kind":"webhook",
		"workflow":{"steps":[{"id":"a","type":"refresh_portfolio","params_from":{"portfolio_id":"/steps/b/result/x"}}]}}`)
	require.Equal(t, http.StatusUnprocessableEntity, code, out)
	require.Contains(t, out, `"field":"workflow.steps[0].params_from.portfolio_id"`)
}
