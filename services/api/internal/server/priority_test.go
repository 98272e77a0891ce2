package server

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCriticalIsForAdmins reproduces finding 6 and its fix: by default an
// operator may not put a task on the critical queue (the scheduler's, served
// first), an admin may; auth.max_priority changes the caps.
func TestCriticalIsForAdmins(t *testing.T) {
	t.Parallel()
	b := setup(t)
	create := func(b testBundle, token, priority string) (int, string) {
		code, body, _ := b.call(t, http.MethodPost, "/api/v1/tasks", token, `{"type":"refresh_all_prices","priority":"`+priority+`"}`)
		return code, body
	}
	code, body := create(b, tokOp, "critical")
	require.Equal(t, http.StatusForbidden, code, body)
	require.Contains(t, body, "auth.max_priority")
	code, body = create(b, tokOp, "high")
	require.Equal(t, http.StatusCreated, code, body)
	code, body = create(b, tokAdmin, "critical")
	require.Equal(t, http.StatusCreated, code, body)
	code, body = create(b, tokOp, "urgent")
	require.Equal(t, http.StatusUnprocessableEntity, code, "an unknown priority is still a 422: %s", body)
}
