package maintenance_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// bundle is what a maintenance test works with.
type bundle struct {
	pg      testenv.Postgres
	db      *gorm.DB
	results *result.Store
	signer  *result.Signer
	ctx     context.Context
}

func setup(t testing.TB) bundle {
	t.Helper()
	pg := testenv.NewPostgres(t)
	l, err := result.NewLocal(t.TempDir())
	require.NoError(t, err)
	signer, err := result.NewSigner([]byte("test-signing-key-0123456789abcdef"), "http://api.test", time.Minute)
	require.NoError(t, err)
	st, err := result.New(pg.DB, l, result.Options{TTL: time.Hour, Signer: signer})
	require.NoError(t, err)
	return bundle{pg: pg, db: pg.DB, results: st, signer: signer, ctx: context.Background()}
}

// exec runs SQL and fails the test on error.
func (b bundle) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	require.NoError(t, b.db.Exec(q, args...).Error, q)
}

// count returns a single integer from SQL.
func (b bundle) count(t *testing.T, q string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, b.pg.SQL.QueryRow(q, args...).Scan(&n), q)
	return n
}

// task inserts a task in a status, completed (or last updated) age ago.
func (b bundle) task(t *testing.T, id, typ, status string, age time.Duration) {
	t.Helper()
	at := time.Now().Add(-age)
	var completed any
	if status == "completed" || status == "failed" || status == "cancelled" {
		completed = at
	}
	b.exec(t, `INSERT INTO tasks (id, type, status, priority, max_retries, retry_policy, timeout_seconds,
		created_at, updated_at, started_at, completed_at, duration_ms, created_by)
		VALUES (?, ?, ?, 'low', 3, '{}', 60, ?, ?, ?, ?, ?, 'key_admin')`,
		id, typ, status, at.Add(-time.Minute), at, at.Add(-30*time.Second), completed, 30000)
}

// logLine adds a log line to a task, age ago.
func (b bundle) logLine(t *testing.T, taskID string, age time.Duration) {
	t.Helper()
	b.exec(t, `INSERT INTO task_logs (task_id, attempt, ts, level, message) VALUES (?, 1, ?, 'info', 'line')`,
		taskID, time.Now().Add(-age))
}

// domain loads a small portfolio data set: two assets with prices over days
// days, a portfolio holding both, a benchmark and one risk_metrics row.
func (b bundle) domain(t *testing.T, days int) {
	t.Helper()
	b.exec(t, `INSERT INTO assets (symbol, name, kind) VALUES ('AAA', 'Alpha Corp', 'equity'), ('BBB', 'Beta <Fund> & Co', 'etf'), ('IDX', 'Index', 'index')`)
	b.exec(t, `INSERT INTO benchmarks (symbol, name) VALUES ('IDX', 'The Index')`)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	for d := days - 1; d >= 0; d-- {
		date := today.AddDate(0, 0, -d).Format(time.DateOnly)
		for i, sym := range []string{"AAA", "BBB", "IDX"} {
			c := 100 + float64(i*10) + float64(days-d)
			b.exec(t, `INSERT INTO prices (asset_symbol, date, open, high, low, close, volume) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				sym, date, c, c+1, c-1, c, 1000+d)
		}
	}
	b.exec(t, `INSERT INTO portfolios (id, name, owner) VALUES ('pf_main', 'Main', 'key_admin')`)
	b.exec(t, `INSERT INTO holdings (portfolio_id, asset_symbol, quantity, cost_basis) VALUES ('pf_main', 'AAA', 10, 900), ('pf_main', 'BBB', 5, 700)`)
	b.exec(t, `INSERT INTO portfolio_values (portfolio_id, date, market_value, holdings_valued) VALUES ('pf_main', ?, 2000, 2)`, today.Format(time.DateOnly))
	b.exec(t, `INSERT INTO risk_metrics (portfolio_id, as_of, window_days, benchmark_symbol, start_date, returns,
		annualised_return, annualised_volatility, sharpe, sortino, max_drawdown, var_95, cvar_95, beta, alpha, tracking_error)
		VALUES ('pf_main', ?, 252, 'IDX', ?, 251, 0.12, 0.2, 0.6, 0.9, 0.15, 0.02, 0.03, 1.1, 0.01, 0.05)`,
		today.Format(time.DateOnly), today.AddDate(-1, 0, 0).Format(time.DateOnly))
}

// decode unmarshals a recorder's result.
func decode[T any](t testing.TB, r *job.Recorder) T {
	t.Helper()
	var v T
	require.NotNil(t, r.Result(), "no result set")
	require.NoError(t, json.Unmarshal(r.Result(), &v))
	return v
}

func id(prefix string, i int) string { return fmt.Sprintf("%s_%03d", prefix, i) }
