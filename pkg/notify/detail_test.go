package notify_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/notify"
)

// TestFailingReceiverBodyNotInError checks that a receiver's error body never
// reaches the error (which becomes the task's error): only the status code.
func TestFailingReceiverBodyNotInError(t *testing.T) {
	t.Parallel()

	const canary = "internal-stack-trace db=10.9.8.7 CANARY"
	p := newFakeProvider(t, func(recorded) (int, string) {
		return http.StatusInternalServerError, canary
	})
	status, err := notify.PostJSON(t.Context(), guardedClient(t), p.srv.URL+"/hook", "", nil, []byte(`{}`), nil)
	require.Equal(t, http.StatusInternalServerError, status)
	require.Error(t, err)
	require.Contains(t, err.Error(), "status 500")
	require.NotContains(t, err.Error(), "CANARY")
	require.NotContains(t, err.Error(), "10.9.8.7")
	require.True(t, notify.IsRetryable(err))
}
