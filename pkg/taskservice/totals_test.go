package taskservice

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTotalsRemembered(t *testing.T) {
	t.Parallel()
	tt := newTotals()
	now := time.Now()
	owner := where{}.with("created_by = ?", "key_a")
	other := where{}.with("created_by = ?", "key_b")
	require.NotEqual(t, owner.key(), other.key(), "the arguments are part of the key")

	_, ok := tt.get(owner.key(), now)
	require.False(t, ok)
	tt.put(owner.key(), 123456, now)
	n, ok := tt.get(owner.key(), now.Add(TotalTTL-time.Millisecond))
	require.True(t, ok)
	require.EqualValues(t, 123456, n)
	_, ok = tt.get(other.key(), now)
	require.False(t, ok, "another owner's filter")
	_, ok = tt.get(owner.key(), now.Add(TotalTTL))
	require.False(t, ok, "expired")

	// Bounded (pkg/memo).
	for i := range maxTotals + 10 {
		tt.put(fmt.Sprint(i), int64(i), now)
	}
	require.LessOrEqual(t, tt.m.Len(), maxTotals)
	n, ok = tt.get(fmt.Sprint(maxTotals+9), now)
	require.True(t, ok, "the newest entry is kept")
	require.EqualValues(t, maxTotals+9, n)
}
