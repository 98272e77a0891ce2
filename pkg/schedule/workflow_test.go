package schedule_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/workflow"
)

// TestScheduleStartsAWorkflow: a schedule may start a workflow at each fire
// instead of a task. Its steps' secret params are kept sealed and shown
// redacted; a fire starts the workflow once, owned by the schedule, with the
// secrets opened for the task service; a second start of the same fire
// returns the first workflow. A workflow beside a type, or a bad graph, is
// refused naming the field.
func TestScheduleStartsAWorkflow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	k, err := secret.NewKeyring(map[string][]byte{"s1": []byte(strings.Repeat("k", 32))}, "s1")
	require.NoError(t, err)
	st, err := schedule.NewSealedStore(b.pg.DB, k)
	require.NoError(t, err)

	name, cron := "nightly-flow", "@every 1s"
	steps := `{"steps": [
		{"id": "notify", "type": "webhook_callback", "params": {"url": "https://hooks.example/a", "secret": "flow-secret"}},
		{"id": "metrics", "type": "calculate_metrics", "params": {"portfolio_id": "pf_x"}, "depends_on": ["notify"]}]}`
	s, err := st.Create(ctx, schedule.Input{Name: &name, Cron: &cron, Workflow: json.RawMessage(steps)}, "key_admin")
	require.NoError(t, err)
	require.Empty(t, s.Type)
	require.NotContains(t, string(s.Workflow), "flow-secret", "shown redacted")
	require.Contains(t, string(s.Workflow), `"metrics"`)
	row, err := st.Row(ctx, s.ID)
	require.NoError(t, err)
	require.NotContains(t, string(row.Workflow), "flow-secret", "kept sealed")
	// An edit that keeps the steps seals them once, as a task schedule's.
	off := false
	_, err = st.Patch(ctx, s.ID, schedule.Input{Enabled: &off})
	require.NoError(t, err)
	on := true
	_, err = st.Patch(ctx, s.ID, schedule.Input{Enabled: &on})
	require.NoError(t, err)

	wf, err := workflow.New(b.pg.DB, b.svc, b.log, workflow.Options{Keyring: k})
	require.NoError(t, err)
	row, err = st.Row(ctx, s.ID)
	require.NoError(t, err)
	// One tick due: the first whole second after the watermark.
	clock := row.FiredThrough.Truncate(time.Second).Add(1500 * time.Millisecond)
	f := b.firer(t, schedule.FireOptions{CatchUp: 1, Skew: -1, Keyring: k, Workflows: wf, Now: func() time.Time { return clock }})
	out, err := f.FireJob(ctx, s.ID)
	require.NoError(t, err)
	require.Len(t, out.Created, 1)

	var flows []store.Workflow
	require.NoError(t, b.pg.DB.Where("schedule_id = ?", s.ID).Find(&flows).Error)
	require.Len(t, flows, 1, "one workflow for the fire")
	require.Equal(t, "schedule:"+s.ID, flows[0].CreatedBy)
	require.Equal(t, name, flows[0].Name)
	var first store.Task
	require.NoError(t, b.pg.DB.Where("workflow_id = ? AND step_id = 'notify'", flows[0].ID).Take(&first).Error)
	require.Equal(t, first.ID, out.Created[0].ID, "the schedule's last run is the first step's task")
	require.Contains(t, string(first.Params), "flow-secret", "the task service got the secret opened")
	_, existing, err := wf.CreateForFire(ctx, workflow.Definition{Name: name, Steps: []workflow.Step{{ID: "x",
		Task: taskservice.CreateRequest{Type: tasks.TypeRefreshAllPrices}}}}, workflow.Fire{ScheduleID: s.ID, Time: *flows[0].FireTime})
	require.NoError(t, err)
	require.True(t, existing, "a fire starts its workflow once")

	for field, in := range map[string]schedule.Input{
		"type":                                  {Name: ptr("both"), Cron: &cron, Type: ptr(tasks.TypeRefreshAllPrices), Workflow: json.RawMessage(steps)},
		"workflow.steps[0].depends_on":          {Name: ptr("cycle"), Cron: &cron, Workflow: json.RawMessage(`{"steps": [{"id": "a", "type": "refresh_all_prices", "depends_on": ["b"]}, {"id": "b", "type": "refresh_all_prices", "depends_on": ["a"]}]}`)},
		"workflow.steps[0].params.portfolio_id": {Name: ptr("params"), Cron: &cron, Workflow: json.RawMessage(`{"steps": [{"id": "a", "type": "calculate_metrics"}]}`)},
	} {
		_, err := st.Create(ctx, in, "key_admin")
		v, ok := tasks.AsValidation(err)
		require.Truef(t, ok, "%s: %v", field, err)
		require.Equal(t, field, v.Errors[0].Field)
	}
}
