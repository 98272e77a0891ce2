package lifecycle

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/tasks"
)

// TestStatementsTakeTheirStatesFromTheStateMachine: the lists a conditional
// update allows are tasks.From's, so a change of the state machine changes the
// production statements.
func TestStatementsTakeTheirStatesFromTheStateMachine(t *testing.T) {
	t.Parallel()
	list := func(states []tasks.Status) string {
		q := make([]string, len(states))
		for i, s := range states {
			q[i] = "'" + s + "'"
		}
		return "status IN (" + strings.Join(q, ", ") + ")"
	}
	require.Contains(t, startSQL, list(tasks.From(tasks.StatusRunning)))
	require.Contains(t, startSQL, list(tasks.From(tasks.StatusCancelled)))
	require.Contains(t, combinedSQL, list(tasks.From(tasks.StatusRunning)))
	require.Contains(t, unrecordedSQL, list(tasks.From(tasks.StatusRunning)))
	require.Contains(t, failUnstartedSQL, "status IN ('pending', 'retrying')")
	require.Contains(t, finishSQL, "'completed', 'failed', 'cancelled'")
}
