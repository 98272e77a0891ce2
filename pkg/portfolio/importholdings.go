package portfolio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/upload"
)

// The modes of import_holdings.
const (
	ModeReplace = "replace"
	ModeMerge   = "merge"
)

// ErrNothingImported means no portfolio of an import_holdings file could be
// changed.
var ErrNothingImported = errors.New("portfolio: import holdings: nothing imported")

// ImportHoldingsResult is the result of import_holdings.
type ImportHoldingsResult struct {
	UploadID string `json:"upload_id"`
	Mode     string `json:"mode"`
	RowsRead int    `json:"rows_read"`
	// Portfolios are the portfolios changed, in id order.
	Portfolios   []HoldingsImported `json:"portfolios"`
	RowsRejected int                `json:"rows_rejected"`
	// Rejected lists the first MaxRejected rejected rows in file order.
	Rejected []Rejected `json:"rejected"`
	// UnknownSymbols and UnknownPortfolios list (up to MaxRejected each) the
	// symbols that are no asset and the portfolios that do not exist or are
	// not the task creator's.
	UnknownSymbols    []string `json:"unknown_symbols"`
	UnknownPortfolios []string `json:"unknown_portfolios"`
	// PortfoliosSkipped are left unchanged because some of their rows were
	// rejected: a replace from part of a file would drop positions.
	PortfoliosSkipped []string `json:"portfolios_skipped"`
}

// HoldingsImported is one portfolio's outcome.
type HoldingsImported struct {
	PortfolioID string `json:"portfolio_id"`
	// Before and After count the portfolio's positions.
	Before int64 `json:"holdings_before"`
	After  int64 `json:"holdings_after"`
	// Upserted counts the file's positions (inserted, updated or confirmed);
	// Removed those deleted by a replace.
	Upserted int   `json:"upserted"`
	Removed  int64 `json:"removed"`
}

// position is one row of an import_holdings file, parsed or rejected.
type position struct {
	line              int
	portfolio, symbol string
	quantity, cost    float64
	// reason is why the row is rejected ("" when it parsed); value the
	// offending value; spare is true for a rejected row that does not hold
	// its portfolio back (it names another than the task's portfolio_id).
	reason, value string
	spare         bool
}

// ImportHoldings is the import_holdings handler: it reads the upload's
// positions, checks the portfolios (they must exist and be the task
// creator's, admins any) and symbols, and writes every portfolio whose rows
// are all good in one transaction: replace makes its holdings exactly the
// file's, merge adds and updates the file's positions and keeps the others.
// Re-running it leaves the same holdings.
func (im *Importer) ImportHoldings(ctx context.Context, r job.Reporter, p *taskpb.ImportHoldingsParams) error {
	owner, admin, err := im.creator(ctx, r)
	if err != nil {
		return err
	}
	up, err := im.upload(ctx, p.GetUploadId(), owner, admin)
	if err != nil {
		return err
	}
	mode := p.GetMode()
	if mode == "" {
		mode = ModeReplace
	}
	only := p.GetPortfolioId()
	if only != "" {
		ok, err := im.mayWrite(ctx, []string{only}, owner, admin)
		if err != nil {
			return err
		}
		if !ok[only] {
			return job.Permanent(fmt.Errorf("%w: %s", ErrUnknownPortfolio, only))
		}
	}
	r.Progress(0, progressStepCheck, fmt.Sprintf("Reading %d bytes of %s", up.Size, up.ID))
	res := ImportHoldingsResult{UploadID: up.ID, Mode: mode, Portfolios: []HoldingsImported{},
		UnknownSymbols: []string{}, UnknownPortfolios: []string{}, PortfoliosSkipped: []string{}}
	positions, err := im.readPositions(ctx, up, only, &res)
	if err != nil {
		return err
	}

	// The portfolios and symbols the rows name.
	var pids, symbols []string
	for _, ps := range positions {
		if ps.portfolio != "" && !slices.Contains(pids, ps.portfolio) {
			pids = append(pids, ps.portfolio)
		}
		if ps.reason == "" && !slices.Contains(symbols, ps.symbol) {
			symbols = append(symbols, ps.symbol)
		}
	}
	writable, err := im.mayWrite(ctx, pids, owner, admin)
	if err != nil {
		return err
	}
	known, err := knownSymbols(ctx, im.db, symbols)
	if err != nil {
		return fmt.Errorf("portfolio: import holdings: %w", err)
	}
	// The rows in file order: rejected, for an unknown portfolio, for an
	// unknown symbol (which holds its portfolio back), or good.
	var rej rejections
	bad := map[string]bool{} // portfolios with a rejected row
	var good []position
	for _, ps := range positions {
		switch {
		case ps.reason != "":
			rej.add(ps.line, ps.reason, ps.value)
			if !ps.spare {
				bad[ps.portfolio] = true
				if ps.portfolio != "" && !writable[ps.portfolio] {
					appendCapped(&res.UnknownPortfolios, ps.portfolio)
				}
			}
		case !writable[ps.portfolio]:
			rej.add(ps.line, "unknown portfolio", ps.portfolio)
			appendCapped(&res.UnknownPortfolios, ps.portfolio)
		case !known[ps.symbol]:
			rej.add(ps.line, "unknown symbol", ps.symbol)
			appendCapped(&res.UnknownSymbols, ps.symbol)
			bad[ps.portfolio] = true
		default:
			good = append(good, ps)
		}
	}
	byPortfolio := map[string][]position{}
	for _, ps := range good {
		if !bad[ps.portfolio] {
			byPortfolio[ps.portfolio] = append(byPortfolio[ps.portfolio], ps)
		}
	}
	for pid := range bad {
		if writable[pid] {
			res.PortfoliosSkipped = append(res.PortfoliosSkipped, pid)
		}
	}
	slices.Sort(res.PortfoliosSkipped)
	// A replace of the named portfolio from a file without rows empties it.
	if only != "" && mode == ModeReplace && res.RowsRead == 0 {
		byPortfolio[only] = nil
	}
	res.RowsRejected, res.Rejected = rej.n, rej.list()
	for _, rj := range res.Rejected[:min(len(res.Rejected), maxLoggedRejections)] {
		r.Log(job.Warn, "row rejected", map[string]any{"line": rj.Line, "reason": rj.Reason})
	}
	if len(byPortfolio) == 0 {
		_ = r.SetResult(res)
		msg := "no rows"
		if len(res.Rejected) > 0 {
			msg = fmt.Sprintf("%d of %d rows rejected; first: line %d: %s", res.RowsRejected, res.RowsRead, res.Rejected[0].Line, res.Rejected[0].Reason)
		}
		return job.Permanent(fmt.Errorf("%w: %s", ErrNothingImported, msg))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("portfolio: import holdings: cancelled before writing: %w", err)
	}
	r.Progress(0.5, progressStepImport, fmt.Sprintf("Writing the holdings of %d portfolios (%s)", len(byPortfolio), mode))
	ids := make([]string, 0, len(byPortfolio))
	for pid := range byPortfolio {
		ids = append(ids, pid)
	}
	slices.Sort(ids)
	err = im.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for _, pid := range ids {
			out, err := writeHoldings(tx, pid, mode, byPortfolio[pid])
			if err != nil {
				return fmt.Errorf("portfolio: import holdings: %s: %w", pid, err)
			}
			res.Portfolios = append(res.Portfolios, out)
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.Log(job.Info, "holdings imported", map[string]any{
		"portfolios": len(res.Portfolios), "rows_read": res.RowsRead, "rows_rejected": res.RowsRejected, "mode": mode,
	})
	r.Progress(1, progressStepDone, fmt.Sprintf("Imported the holdings of %d portfolios; %d rows rejected", len(res.Portfolios), res.RowsRejected))
	return r.SetResult(res)
}

// appendCapped appends v to a list once, up to MaxRejected entries.
func appendCapped(list *[]string, v string) {
	if len(*list) < MaxRejected && !slices.Contains(*list, v) {
		*list = append(*list, v)
	}
}

// readPositions parses the file into its rows in file order: those with bad
// values, the wrong width or a second position in the same (portfolio,
// symbol) carry the reason they are rejected.
func (im *Importer) readPositions(ctx context.Context, up upload.Upload, only string, res *ImportHoldingsResult) ([]position, error) {
	rc, err := im.open(ctx, up)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	optional := []string{"portfolio_id", "cost_basis"}
	f, err := openCSV(rc, csvLimits{MaxLineBytes: im.o.MaxLineBytes, MaxRows: min(im.o.MaxRows, MaxHoldingRows)},
		[]string{"symbol", "quantity"}, optional)
	if err != nil {
		return nil, job.Permanent(err)
	}
	if only == "" && !f.has("portfolio_id") {
		return nil, job.Permanent(fmt.Errorf("%w: the header lacks the portfolio_id column and no portfolio_id param is given", ErrBadHeader))
	}
	first := map[[2]string]int{}
	var out []position
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("portfolio: import holdings: cancelled while reading: %w", err)
		}
		rec, line, ok, err := f.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, job.Permanent(err)
		}
		res.RowsRead++
		pid := ""
		if ok {
			pid = f.field(rec, "portfolio_id")
		}
		if pid == "" {
			pid = only
		}
		reject := func(reason, value string) {
			out = append(out, position{line: line, portfolio: pid, reason: reason, value: value})
		}
		if !ok {
			reject(fieldCountReason(len(rec), f.width), joined(rec))
			continue
		}
		ps := position{line: line, portfolio: pid, symbol: f.field(rec, "symbol")}
		if only != "" && pid != only {
			out = append(out, position{line: line, portfolio: pid, spare: true,
				reason: "names portfolio " + pid + ", not the task's portfolio_id", value: pid})
			continue
		}
		if pid == "" {
			reject("portfolio_id is empty", "")
			continue
		}
		if !symbolPattern.MatchString(ps.symbol) {
			reject("invalid symbol", ps.symbol)
			continue
		}
		q := f.field(rec, "quantity")
		if ps.quantity, err = strconv.ParseFloat(q, 64); err != nil || !(ps.quantity > 0 && ps.quantity < math.Inf(1)) {
			reject("quantity must be a positive number", q)
			continue
		}
		if c := f.field(rec, "cost_basis"); c != "" {
			if ps.cost, err = strconv.ParseFloat(c, 64); err != nil || !(ps.cost >= 0 && ps.cost < math.Inf(1)) {
				reject("cost_basis must be a number not below 0", c)
				continue
			}
		}
		k := [2]string{pid, ps.symbol}
		if l, dup := first[k]; dup {
			reject(fmt.Sprintf("a second position in %s (first on line %d)", ps.symbol, l), ps.symbol)
			continue
		}
		first[k] = line
		out = append(out, ps)
	}
	return out, nil
}

// mayWrite reports which of the portfolios exist and may be written by
// owner (admins: every one).
func (im *Importer) mayWrite(ctx context.Context, ids []string, owner string, admin bool) (map[string]bool, error) {
	out := map[string]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	var rows []struct{ ID, Owner string }
	if err := im.db.WithContext(ctx).Raw(`SELECT id, owner FROM portfolios WHERE id = ANY(?)`, pgArray[string](ids)).
		Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("portfolio: import holdings: look up portfolios: %w", err)
	}
	for _, r := range rows {
		out[r.ID] = admin || (r.Owner != "" && r.Owner == owner)
	}
	return out, nil
}

// writeHoldings writes one portfolio's positions within tx.
func writeHoldings(tx *gorm.DB, pid, mode string, positions []position) (HoldingsImported, error) {
	out := HoldingsImported{PortfolioID: pid, Upserted: len(positions)}
	// The portfolio's row is locked so that concurrent imports of it queue.
	if err := tx.Exec(`SELECT 1 FROM portfolios WHERE id = ? FOR UPDATE`, pid).Error; err != nil {
		return out, err
	}
	if err := tx.Raw(`SELECT count(*) FROM holdings WHERE portfolio_id = ?`, pid).Scan(&out.Before).Error; err != nil {
		return out, err
	}
	symbols := make([]string, len(positions))
	qty := make([]float64, len(positions))
	cost := make([]float64, len(positions))
	for i, ps := range positions {
		symbols[i], qty[i], cost[i] = ps.symbol, ps.quantity, ps.cost
	}
	if mode == ModeReplace {
		res := tx.Exec(`DELETE FROM holdings WHERE portfolio_id = ? AND NOT (asset_symbol = ANY(?::text[]))`, pid, pgArray[string](symbols))
		if res.Error != nil {
			return out, res.Error
		}
		out.Removed = res.RowsAffected
	}
	if len(positions) > 0 {
		err := tx.Exec(`INSERT INTO holdings (portfolio_id, asset_symbol, quantity, cost_basis)
			SELECT ?, * FROM unnest(?::text[], ?::float8[], ?::float8[])
			ON CONFLICT (portfolio_id, asset_symbol) DO UPDATE
			SET quantity = excluded.quantity, cost_basis = excluded.cost_basis, updated_at = now()
			WHERE (holdings.quantity, holdings.cost_basis) IS DISTINCT FROM (excluded.quantity, excluded.cost_basis)`,
			pid, pgArray[string](symbols), pgArray[float64](qty), pgArray[float64](cost)).Error
		if err != nil {
			return out, err
		}
	}
	if err := tx.Raw(`SELECT count(*) FROM holdings WHERE portfolio_id = ?`, pid).Scan(&out.After).Error; err != nil {
		return out, err
	}
	return out, nil
}
