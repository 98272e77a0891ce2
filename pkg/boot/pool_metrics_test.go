package boot_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/boot"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestPoolMetrics: the pool's maximum and its connections in use are exported
// under the go_sql_* names the alert rules read.
func TestPoolMetrics(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	sqlDB, err := pg.DB.DB()
	require.NoError(t, err)
	sqlDB.SetMaxOpenConns(7)
	reg := prometheus.NewRegistry()
	require.NoError(t, boot.RegisterPoolMetrics(reg, pg.DB))
	conn, err := sqlDB.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()

	got := map[string]float64{}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			require.Equal(t, "db_name", m.GetLabel()[0].GetName())
			require.Equal(t, "taskforge", m.GetLabel()[0].GetValue())
			got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	require.EqualValues(t, 7, got["go_sql_max_open_connections"])
	require.GreaterOrEqual(t, got["go_sql_in_use_connections"], 1.0, "the held connection")
	require.Contains(t, got, "go_sql_wait_count_total")
}
