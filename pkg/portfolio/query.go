package portfolio

import (
	"context"
	"database/sql/driver"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/price"
)

// pgArray passes a slice to PostgreSQL as one array parameter. GORM would expand
// a plain slice into a list of parameters; a driver.Valuer is handed to the
// driver as it is, and pgx encodes the slice as an array.
type pgArray[T any] []T

// Value implements driver.Valuer.
func (a pgArray[T]) Value() (driver.Value, error) { return []T(a), nil }

// assetRef is what the price refresh needs to know about an asset.
type assetRef struct {
	Symbol      string
	Kind        string
	Currency    string
	StooqSymbol *string
}

// assetFilter selects the assets of a price refresh.
type assetFilter struct {
	// where is a SQL condition on assets (alias a), with args.
	where string
	args  []any
	// join adds a join, e.g. with benchmarks.
	join string
}

// activeAssets selects every active asset.
func activeAssets() assetFilter { return assetFilter{where: "a.active"} }

// listedAssets selects the assets among symbols, active or not.
func listedAssets(symbols []string) assetFilter {
	return assetFilter{where: "a.symbol = ANY(?)", args: []any{pgArray[string](symbols)}}
}

// benchmarkAssets selects the benchmark indices, or the one named symbol.
func benchmarkAssets(symbol string) assetFilter {
	f := assetFilter{join: "JOIN benchmarks b ON b.symbol = a.symbol", where: "true"}
	if symbol != "" {
		f.where, f.args = "a.symbol = ?", []any{symbol}
	}
	return f
}

// count returns the number of assets the filter selects.
func (f assetFilter) count(ctx context.Context, db *gorm.DB) (int, error) {
	var n int64
	err := db.WithContext(ctx).Raw("SELECT count(*) FROM assets a "+f.join+" WHERE "+f.where, f.args...).Scan(&n).Error
	if err != nil {
		return 0, fmt.Errorf("count assets: %w", err)
	}
	return int(n), nil
}

// page returns up to limit selected assets whose symbol sorts after after, in
// symbol order: keyset pagination on the primary key.
func (f assetFilter) page(ctx context.Context, db *gorm.DB, after string, limit int) ([]assetRef, error) {
	var out []assetRef
	args := append(append([]any(nil), f.args...), after, limit)
	err := db.WithContext(ctx).Raw(
		"SELECT a.symbol, a.kind, a.currency, a.stooq_symbol FROM assets a "+f.join+
			" WHERE ("+f.where+") AND a.symbol > ? ORDER BY a.symbol LIMIT ?", args...).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("list assets: %w", err)
	}
	return out, nil
}

// barRows holds bars of several symbols as columns, ready for upsertBars.
type barRows struct {
	symbols                []string
	dates                  []time.Time
	opens, highs, lows, cl []float64
	volumes                []int64
}

func (r *barRows) add(symbol string, bars []price.Bar) {
	for _, b := range bars {
		r.symbols = append(r.symbols, symbol)
		r.dates = append(r.dates, b.Date)
		r.opens = append(r.opens, b.Open)
		r.highs = append(r.highs, b.High)
		r.lows = append(r.lows, b.Low)
		r.cl = append(r.cl, b.Close)
		r.volumes = append(r.volumes, b.Volume)
	}
}

func (r *barRows) len() int { return len(r.symbols) }

// upsertBarsSQL inserts the bars, or updates a stored bar that differs; a stored
// bar equal to the new one is not rewritten, so a re-run leaves no dead rows.
const upsertBarsSQL = `
INSERT INTO prices (asset_symbol, date, open, high, low, close, volume)
SELECT * FROM unnest(?::text[], ?::date[], ?::float8[], ?::float8[], ?::float8[], ?::float8[], ?::int8[])
ON CONFLICT (asset_symbol, date) DO UPDATE
SET open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close, volume = excluded.volume
WHERE (prices.open, prices.high, prices.low, prices.close, prices.volume)
   IS DISTINCT FROM (excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume)`

// upsertBars writes the rows in one statement and returns how many rows were
// inserted or changed.
func upsertBars(ctx context.Context, tx *gorm.DB, r *barRows) (int64, error) {
	if r.len() == 0 {
		return 0, nil
	}
	res := tx.WithContext(ctx).Exec(upsertBarsSQL,
		pgArray[string](r.symbols), pgArray[time.Time](r.dates), pgArray[float64](r.opens),
		pgArray[float64](r.highs), pgArray[float64](r.lows), pgArray[float64](r.cl), pgArray[int64](r.volumes))
	if res.Error != nil {
		return 0, fmt.Errorf("upsert prices: %w", res.Error)
	}
	return res.RowsAffected, nil
}
