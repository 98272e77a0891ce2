package auth

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPriorityPolicy(t *testing.T) {
	t.Parallel()
	op := Principal{ID: "key_op", Role: Operator}
	admin := Principal{ID: "key_admin", Role: Admin}
	var zero PriorityPolicy
	pp, err := NewPriorityPolicy(nil)
	require.NoError(t, err)
	for _, p := range []PriorityPolicy{pp, zero} {
		require.False(t, p.Allows(op, "critical"), "critical is for admins by default")
		require.True(t, p.Allows(op, "high"))
		require.True(t, p.Allows(op, "low"))
		require.True(t, p.Allows(admin, "critical"))
		require.True(t, p.Allows(op, "urgent"), "unknown priorities are validation's business")
		require.False(t, p.Allows(Principal{}, "normal"), "no role, no priority")
	}
	pp, err = NewPriorityPolicy(map[string]string{"operator": "normal", "admin": "high"})
	require.NoError(t, err)
	require.False(t, pp.Allows(op, "high"))
	require.True(t, pp.Allows(op, "normal"))
	require.False(t, pp.Allows(admin, "critical"))
	require.Equal(t, "normal", pp.Max(op))

	_, err = NewPriorityPolicy(map[string]string{"root": "critical"})
	require.ErrorContains(t, err, "max_priority.root")
	_, err = NewPriorityPolicy(map[string]string{"operator": "urgent"})
	require.ErrorContains(t, err, "max_priority.operator")
}
