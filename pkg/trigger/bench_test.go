package trigger_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/portfolio"
	"github.com/taskforge/taskforge/pkg/price"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/trigger"
)

// BenchmarkPriceRefreshTableTrigger measures what the prices table's
// statement triggers cost a refresh_all_prices of 1,000 symbols × 5 days
// (simulated provider, batches of 100 symbols): without the table triggers
// (the anchor: prices before migration 00015), with no database trigger
// watching prices (the functions only look for one), with one (each statement
// also diffs its transition tables and writes one change event), and a
// refresh of identical prices with one watching (rows updated, none changed,
// no event). It reports the change events written per run.
func BenchmarkPriceRefreshTableTrigger(b *testing.B) {
	for _, mode := range []string{"no-table-triggers", "no-trigger", "trigger", "trigger-unchanged"} {
		b.Run(mode, func(b *testing.B) {
			e := newEnvB(b)
			require.NoError(b, e.db.Exec(`INSERT INTO assets (symbol, name, kind)
				SELECT format('S%s', lpad(i::text, 5, '0')), 'bench', 'equity' FROM generate_series(1, 1000) i`).Error)
			if mode == "no-table-triggers" {
				// The anchor: the prices table as before migration 00015.
				for _, op := range []string{"insert", "update", "delete"} {
					require.NoError(b, e.db.Exec("DROP TRIGGER prices_events_"+op+" ON prices").Error)
				}
			}
			if mode == "trigger" || mode == "trigger-unchanged" {
				_, err := e.svc.Store().Create(ctx, trigger.Input{Name: ptr("bench"), Kind: ptr(trigger.KindDatabase),
					Table: ptr("prices"), DebounceSeconds: ptr(60),
					Task: &trigger.Template{Type: "refresh_all_prices"}}, operator)
				require.NoError(b, err)
			}
			day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
			svc, err := portfolio.New(e.db, price.NewSimulated(), nil, portfolio.Options{Now: func() time.Time { return day }})
			require.NoError(b, err)
			refresh := func() {
				require.NoError(b, svc.RefreshAllPrices(ctx, &job.Recorder{}, &taskpb.RefreshAllPricesParams{LookbackDays: 7}))
			}
			if mode == "trigger-unchanged" {
				refresh()
			}
			var events int64
			for b.Loop() {
				b.StopTimer()
				if mode != "trigger-unchanged" {
					require.NoError(b, e.db.Exec("TRUNCATE prices").Error)
				}
				require.NoError(b, e.db.Exec("DELETE FROM trigger_events").Error)
				b.StartTimer()
				refresh()
				b.StopTimer()
				var n int64
				require.NoError(b, e.db.Model(&store.TriggerEvent{}).Count(&n).Error)
				events += n
				b.StartTimer()
			}
			b.ReportMetric(float64(events)/float64(b.N), "events/op")
		})
	}
}
