package schedule

import (
	"context"
	"encoding/json"
	"errors"

	"gorm.io/gorm"
)

// Seed is a schedule created on first start.
type Seed struct {
	Name   string
	Cron   string
	Type   string
	Params string
	// Workflow, instead of Type and Params, is the steps of the workflow
	// each fire starts ({"steps": [...]}).
	Workflow string
}

// DailyRefresh is the seeded daily_refresh schedule's workflow: prices,
// then the benchmarks, then every portfolio revalued, then each demo
// portfolio's metrics.
const DailyRefresh = `{"steps": [
  {"id": "prices", "type": "refresh_all_prices"},
  {"id": "benchmarks", "type": "refresh_benchmark", "depends_on": ["prices"]},
  {"id": "portfolios", "type": "refresh_portfolio", "params": {"all": true}, "depends_on": ["benchmarks"]},
  {"id": "metrics-balanced", "type": "calculate_metrics", "params": {"portfolio_id": "pf_demo_balanced"}, "depends_on": ["portfolios"]},
  {"id": "metrics-growth", "type": "calculate_metrics", "params": {"portfolio_id": "pf_demo_growth"}, "depends_on": ["portfolios"]},
  {"id": "metrics-income", "type": "calculate_metrics", "params": {"portfolio_id": "pf_demo_income"}, "depends_on": ["portfolios"]}
]}`

// Seeds are the specification's four schedules, in UTC.
var Seeds = []Seed{
	{Name: "daily_refresh", Cron: "0 9 * * *", Workflow: DailyRefresh},
	{Name: "hourly_update", Cron: "0 * * * *", Type: "refresh_portfolio", Params: `{"all": true}`},
	// The risk report covers every portfolio; portfolio_summary would need one.
	{Name: "weekly_report", Cron: "0 10 * * MON", Type: "generate_reports", Params: `{"report": "risk"}`},
	{Name: "monthly_cleanup", Cron: "0 2 1 * *", Type: "cleanup_old_data", Params: `{}`},
}

// seedLock is the advisory lock key that serialises seeding across replicas.
const seedLock = 0x5c4ed5eed

// SeedCreator is the principal recorded on seeded schedules.
const SeedCreator = "system"

// SeedDefaults creates seeds when the schedules table is empty (a first
// start) and reports how many it created. An installation that deletes every
// schedule gets them back on the next start unless scheduler.seed_schedules
// is off.
func (s *Store) SeedDefaults(ctx context.Context, seeds []Seed) (int, error) {
	n := 0
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(`SELECT pg_advisory_xact_lock(?)`, seedLock).Error; err != nil {
			return err
		}
		var any int64
		if err := tx.Raw(`SELECT count(*) FROM (SELECT 1 FROM schedules LIMIT 1) s`).Scan(&any).Error; err != nil {
			return err
		}
		if any > 0 {
			return nil
		}
		txs := &Store{db: tx, now: s.now}
		for _, sd := range seeds {
			name, cron, typ := sd.Name, sd.Cron, sd.Type
			in := Input{Name: &name, Cron: &cron, Type: &typ, Params: json.RawMessage(sd.Params)}
			if sd.Workflow != "" {
				in = Input{Name: &name, Cron: &cron, Workflow: json.RawMessage(sd.Workflow)}
			}
			if _, err := txs.Create(ctx, in, SeedCreator); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNameTaken) {
			return 0, err
		}
		return 0, translate("seed schedules", err)
	}
	return n, nil
}
