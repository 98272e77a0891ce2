package taskservice_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

// TestPushAlertToOthersNeedsAnAdmin: a push alert naming another principal
// is a 422 naming the field unless an admin creates it (the worker would fail
// it for good); naming oneself, or an admin naming anyone, is created.
func TestPushAlertToOthersNeedsAnAdmin(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	req := func(role, creator string, principals ...string) taskservice.CreateRequest {
		params, err := json.Marshal(map[string]any{"channel": "push", "title": "t", "message": "m", "principals": principals})
		require.NoError(t, err)
		return taskservice.CreateRequest{Type: "send_alert", Params: params, CreatedBy: creator, Role: role}
	}
	_, err := b.svc.Create(ctx, req("operator", "key_op", "key_op", "key_other"))
	v, ok := tasks.AsValidation(err)
	require.True(t, ok, "%v", err)
	require.Len(t, v.Errors, 1)
	require.Equal(t, "params.principals[1]", v.Errors[0].Field)

	_, err = b.svc.Create(ctx, req("operator", "key_op", "key_op"))
	require.NoError(t, err)
	_, err = b.svc.Create(ctx, req("admin", "key_admin", "key_op", "key_other"))
	require.NoError(t, err)
}
