package portfolio

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// Valuation is the result of refresh_portfolio for one portfolio.
type Valuation struct {
	PortfolioID string `json:"portfolio_id"`
	// AsOf is the valuation date (YYYY-MM-DD), nil when no holding has a price.
	AsOf *string `json:"as_of"`
	// MarketValue is Σ quantity × close.
	MarketValue float64 `json:"market_value"`
	// DayChange is the change since the previous price date, nil without one.
	DayChange *float64 `json:"day_change"`
	// HoldingsValued counts the holdings with a close.
	HoldingsValued int `json:"holdings_valued"`
}

// AllValuations is the result of refresh_portfolio with all: true.
type AllValuations struct {
	Portfolios []Valuation `json:"portfolios"`
}

// RefreshPortfolio is the refresh_portfolio handler: it values one portfolio's
// holdings (or every portfolio's, with all) at the latest close and upserts
// portfolio_values.
func (s *Service) RefreshPortfolio(ctx context.Context, r job.Reporter, p *taskpb.RefreshPortfolioParams) error {
	if !p.GetAll() {
		if p.GetPortfolioId() == "" {
			return job.Permanent(errors.New("portfolio: refresh portfolio: portfolio_id is required unless all is true"))
		}
		r.Progress(0, progressStepValuing, "Valuing "+p.GetPortfolioId())
		v, err := s.valuePortfolio(ctx, r, p.GetPortfolioId())
		if err != nil {
			return err
		}
		r.Progress(1, progressStepDone, valuationMessage(v))
		if err := r.SetResult(v); err != nil {
			return fmt.Errorf("portfolio: refresh portfolio: set result: %w", err)
		}
		return nil
	}
	var total int64
	if err := s.db.WithContext(ctx).Model(&store.Portfolio{}).Count(&total).Error; err != nil {
		return fmt.Errorf("portfolio: refresh portfolios: count: %w", err)
	}
	r.Progress(0, progressStepValuing, fmt.Sprintf("Valuing %d portfolios", total))
	out := AllValuations{Portfolios: []Valuation{}}
	after := ""
	for {
		var ids []string
		if err := s.db.WithContext(ctx).Model(&store.Portfolio{}).Where("id > ?", after).Order("id").
			Limit(s.opts.BatchSize).Pluck("id", &ids).Error; err != nil {
			return fmt.Errorf("portfolio: refresh portfolios: list: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		after = ids[len(ids)-1]
		for _, id := range ids {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("portfolio: refresh portfolios: cancelled after %d of %d: %w", len(out.Portfolios), total, err)
			}
			v, err := s.valuePortfolio(ctx, r, id)
			if errors.Is(err, ErrUnknownPortfolio) {
				continue // deleted since it was listed
			}
			if err != nil {
				return err
			}
			out.Portfolios = append(out.Portfolios, v)
			r.Progress(float64(len(out.Portfolios))/float64(max(total, int64(len(out.Portfolios)))), progressStepValuing, valuationMessage(v))
		}
	}
	r.Progress(1, progressStepDone, fmt.Sprintf("Valued %d portfolios", len(out.Portfolios)))
	if err := r.SetResult(out); err != nil {
		return fmt.Errorf("portfolio: refresh portfolios: set result: %w", err)
	}
	return nil
}

func valuationMessage(v Valuation) string {
	if v.AsOf == nil {
		return fmt.Sprintf("%s: no holding has a price", v.PortfolioID)
	}
	return fmt.Sprintf("%s: %.2f on %s from %d holdings", v.PortfolioID, v.MarketValue, *v.AsOf, v.HoldingsValued)
}

// valuationSQL values a portfolio's holdings at the latest price date of any of
// them, each at its latest close on or before that date, and sums the change
// from the previous price date over the holdings priced on both.
const valuationSQL = `
WITH h AS (
    SELECT asset_symbol, quantity FROM holdings WHERE portfolio_id = ?
), asof AS (
    SELECT max(l.d) AS d FROM h
    CROSS JOIN LATERAL (SELECT max(p.date) AS d FROM prices p WHERE p.asset_symbol = h.asset_symbol) l
), prev AS (
    SELECT max(l.d) AS d FROM h CROSS JOIN asof
    CROSS JOIN LATERAL (SELECT max(p.date) AS d FROM prices p
                        WHERE p.asset_symbol = h.asset_symbol AND p.date < asof.d) l
)
SELECT asof.d AS as_of, count(*) AS holdings, count(c.close) AS valued,
       coalesce(sum(h.quantity * c.close), 0) AS market_value,
       sum(h.quantity * (c.close - pc.close)) AS day_change
FROM h CROSS JOIN asof CROSS JOIN prev
LEFT JOIN LATERAL (SELECT p.close FROM prices p WHERE p.asset_symbol = h.asset_symbol AND p.date <= asof.d
                   ORDER BY p.date DESC LIMIT 1) c ON true
LEFT JOIN LATERAL (SELECT p.close FROM prices p WHERE p.asset_symbol = h.asset_symbol AND p.date <= prev.d
                   ORDER BY p.date DESC LIMIT 1) pc ON true
GROUP BY asof.d`

// upsertValueSQL stores a valuation; cash_flow is left as it is.
const upsertValueSQL = `
INSERT INTO portfolio_values (portfolio_id, date, market_value, day_change, holdings_valued, updated_at)
VALUES (?, ?, ?, ?, ?, now())
ON CONFLICT (portfolio_id, date) DO UPDATE
SET market_value = excluded.market_value, day_change = excluded.day_change,
    holdings_valued = excluded.holdings_valued, updated_at = now()
WHERE (portfolio_values.market_value, portfolio_values.day_change, portfolio_values.holdings_valued)
   IS DISTINCT FROM (excluded.market_value, excluded.day_change, excluded.holdings_valued)`

// valuePortfolio values one portfolio and stores the value, in one transaction.
func (s *Service) valuePortfolio(ctx context.Context, r job.Reporter, id string) (Valuation, error) {
	v := Valuation{PortfolioID: id}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&store.Portfolio{}).Where("id = ?", id).Count(&n).Error; err != nil {
			return fmt.Errorf("look up: %w", err)
		}
		if n == 0 {
			return job.Permanent(fmt.Errorf("portfolio %q does not exist: %w", id, ErrUnknownPortfolio))
		}
		var row struct {
			AsOf        *time.Time
			Holdings    int
			Valued      int
			MarketValue float64
			DayChange   *float64
		}
		if err := tx.Raw(valuationSQL, id).Scan(&row).Error; err != nil {
			return fmt.Errorf("value: %w", err)
		}
		if row.AsOf == nil {
			r.Log(job.Warn, "no holding has a price", map[string]any{"portfolio_id": id, "holdings": row.Holdings})
			return nil
		}
		asOf := row.AsOf.UTC().Format(time.DateOnly)
		v.AsOf, v.MarketValue, v.DayChange, v.HoldingsValued = &asOf, row.MarketValue, row.DayChange, row.Valued
		if row.Valued < row.Holdings {
			r.Log(job.Warn, "holdings without a price", map[string]any{"portfolio_id": id, "unpriced": row.Holdings - row.Valued})
		}
		if err := tx.Exec(upsertValueSQL, id, civil(row.AsOf.UTC()), v.MarketValue, v.DayChange, v.HoldingsValued).Error; err != nil {
			return fmt.Errorf("store value: %w", err)
		}
		r.Log(job.Info, "portfolio valued", map[string]any{"portfolio_id": id, "as_of": asOf,
			"market_value": v.MarketValue, "holdings_valued": v.HoldingsValued})
		return nil
	})
	if err != nil {
		if job.IsPermanent(err) {
			return v, err
		}
		return v, fmt.Errorf("portfolio: refresh portfolio %s: %w", id, err)
	}
	return v, nil
}
