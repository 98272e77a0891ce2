package reconcile_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLastPassTimestamp: the gauge the "no reconciliation" alert reads stays 0
// while another replica holds the lock and takes the clock's time once a pass
// of this replica has run.
func TestLastPassTimestamp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	last := func() float64 {
		mfs, err := b.reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "taskforge_reconciler_last_pass_timestamp_seconds" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("taskforge_reconciler_last_pass_timestamp_seconds not exported")
		return 0
	}
	require.Zero(t, last(), "before any pass")

	conn, err := b.pg.SQL.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, 0x7ec0c11e)
	require.NoError(t, err)
	rep, err := b.rec.Pass(ctx)
	require.NoError(t, err)
	require.False(t, rep.Ran)
	require.Zero(t, last(), "a pass another replica held is not this replica's")
	_, err = conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, 0x7ec0c11e)
	require.NoError(t, err)

	rep, err = b.rec.Pass(ctx)
	require.NoError(t, err)
	require.True(t, rep.Ran)
	// setup's clock runs a minute ahead.
	require.InDelta(t, float64(time.Now().Add(time.Minute).Unix()), last(), 5)
}
