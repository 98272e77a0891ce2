package maintenance

import (
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// Report names.
const (
	ReportPortfolioSummary = "portfolio_summary"
	ReportRisk             = "risk"
	ReportTaskActivity     = "task_activity"
)

// ErrNoPortfolio is returned when a report's portfolio does not exist.
var ErrNoPortfolio = errors.New("portfolio not found")

// Report is a rendered table: what generate_reports writes as CSV or HTML.
type Report struct {
	Title string
	// Meta are label/value lines shown above the table.
	Meta    [][2]string
	Columns []string
	Rows    [][]string
	// Totals is an optional last row.
	Totals []string
}

// ReportResult is generate_reports' result.
type ReportResult struct {
	Report      string            `json:"report"`
	Format      string            `json:"format"`
	PortfolioID string            `json:"portfolio_id,omitempty"`
	PeriodStart string            `json:"period_start"`
	PeriodEnd   string            `json:"period_end"`
	Rows        int               `json:"rows"`
	Summary     map[string]string `json:"summary,omitempty"`
	Name        string            `json:"name"`
	Size        int64             `json:"size"`
	SHA256      string            `json:"sha256"`
	ResultID    string            `json:"result_id"`
	DownloadURL string            `json:"download_url"`
	ExpiresAt   time.Time         `json:"expires_at"`
}

// NewReports returns the generate_reports handler.
func NewReports(db *gorm.DB, results *result.Store, publicURL string) func(context.Context, job.Reporter, *taskpb.GenerateReportsParams) error {
	return func(ctx context.Context, r job.Reporter, p *taskpb.GenerateReportsParams) error {
		if results == nil {
			return job.Permanent(errors.New("maintenance: reports need result storage"))
		}
		format := p.GetFormat()
		switch format {
		case "":
			format = "csv"
		case "csv", "html", "pdf":
		default:
			return job.Permanent(fmt.Errorf("maintenance: report format %q is not csv, html or pdf", format))
		}
		end := time.Now().UTC().Truncate(24 * time.Hour)
		if p.GetPeriodEnd() != "" {
			var err error
			if end, err = time.Parse(time.DateOnly, p.GetPeriodEnd()); err != nil {
				return job.Permanent(fmt.Errorf("maintenance: period_end: %w", err))
			}
		}
		start := end.AddDate(0, 0, -7)
		if p.GetPeriodStart() != "" {
			var err error
			if start, err = time.Parse(time.DateOnly, p.GetPeriodStart()); err != nil {
				return job.Permanent(fmt.Errorf("maintenance: period_start: %w", err))
			}
		}
		if start.After(end) {
			return job.Permanent(errors.New("maintenance: period_end is before period_start"))
		}
		sdb, err := sqlDB(db)
		if err != nil {
			return err
		}
		r.Progress(0.1, "query", "")
		q := reportQuery{db: sdb, portfolio: p.GetPortfolioId(), start: start, end: end}
		var rep Report
		var summary map[string]string
		switch p.GetReport() {
		case ReportPortfolioSummary:
			if q.portfolio == "" {
				return job.Permanent(errors.New("maintenance: portfolio_summary needs portfolio_id"))
			}
			rep, summary, err = q.portfolioSummary(ctx)
		case ReportRisk:
			rep, err = q.risk(ctx)
		case ReportTaskActivity:
			rep, summary, err = q.taskActivity(ctx)
		default:
			return job.Permanent(fmt.Errorf("maintenance: unknown report %q", p.GetReport()))
		}
		if err != nil {
			return err
		}
		r.Progress(0.6, "render", fmt.Sprintf("%d rows", len(rep.Rows)))
		name := p.GetReport()
		if q.portfolio != "" {
			name += "-" + q.portfolio
		}
		name += "-" + end.Format(time.DateOnly) + "." + format
		contentType := "text/csv; charset=utf-8"
		render := rep.WriteCSV
		switch format {
		case "html":
			contentType, render = "text/html; charset=utf-8", rep.WriteHTML
		case "pdf":
			contentType, render = "application/pdf", rep.WritePDF
		}
		res, err := putStream(ctx, results, r.TaskID(), name, contentType, render)
		if err != nil {
			return err
		}
		r.Log(job.Info, "report stored", map[string]any{"report": p.GetReport(), "format": format, "rows": len(rep.Rows), "result_id": res.ID})
		r.Progress(1, "done", fmt.Sprintf("report %s: %d rows", res.Name, len(rep.Rows)))
		return r.SetResult(ReportResult{
			Report: p.GetReport(), Format: format, PortfolioID: q.portfolio,
			PeriodStart: start.Format(time.DateOnly), PeriodEnd: end.Format(time.DateOnly),
			Rows: len(rep.Rows), Summary: summary, Name: res.Name, Size: res.Size, SHA256: res.SHA256,
			ResultID: res.ID, ExpiresAt: res.ExpiresAt,
			DownloadURL: strings.TrimRight(publicURL, "/") + "/api/v1/tasks/" + r.TaskID() + "/result",
		})
	}
}

type reportQuery struct {
	db         *sql.DB
	portfolio  string
	start, end time.Time
}

func money(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
func ratio(v float64) string { return strconv.FormatFloat(v, 'f', 4, 64) }

func optRatio(v sql.NullFloat64) string {
	if !v.Valid {
		return ""
	}
	return ratio(v.Float64)
}

// portfolioSummary values each holding at its last close on or before the
// period's end: market value, weight, profit against cost basis, and the
// close's change over the period.
func (q reportQuery) portfolioSummary(ctx context.Context) (Report, map[string]string, error) {
	var name, currency string
	err := q.db.QueryRowContext(ctx, `SELECT name, base_currency FROM portfolios WHERE id = $1`, q.portfolio).Scan(&name, &currency)
	if errors.Is(err, sql.ErrNoRows) {
		return Report{}, nil, job.Permanent(fmt.Errorf("maintenance: portfolio %q: %w", q.portfolio, ErrNoPortfolio))
	}
	if err != nil {
		return Report{}, nil, fmt.Errorf("maintenance: report: %w", store.Translate(err))
	}
	rows, err := q.db.QueryContext(ctx, `
		SELECT h.asset_symbol, a.name, a.currency, h.quantity, h.cost_basis, e.date, e.close, s.close
		FROM holdings h
		JOIN assets a ON a.symbol = h.asset_symbol
		LEFT JOIN LATERAL (SELECT date, close FROM prices p WHERE p.asset_symbol = h.asset_symbol AND p.date <= $2
			ORDER BY date DESC LIMIT 1) e ON true
		LEFT JOIN LATERAL (SELECT close FROM prices p WHERE p.asset_symbol = h.asset_symbol AND p.date <= $3
			ORDER BY date DESC LIMIT 1) s ON true
		WHERE h.portfolio_id = $1
		ORDER BY h.asset_symbol`, q.portfolio, q.end, q.start)
	if err != nil {
		return Report{}, nil, fmt.Errorf("maintenance: report: %w", store.Translate(err))
	}
	defer rows.Close()
	type line struct {
		symbol, name, currency string
		qty, cost              float64
		date                   sql.NullTime
		close, startClose      sql.NullFloat64
	}
	var lines []line
	var total, totalCost float64
	for rows.Next() {
		var l line
		if err := rows.Scan(&l.symbol, &l.name, &l.currency, &l.qty, &l.cost, &l.date, &l.close, &l.startClose); err != nil {
			return Report{}, nil, err
		}
		if l.close.Valid {
			total += l.qty * l.close.Float64
		}
		totalCost += l.cost
		lines = append(lines, l)
	}
	if err := rows.Err(); err != nil {
		return Report{}, nil, fmt.Errorf("maintenance: report: %w", store.Translate(err))
	}
	rep := Report{
		Title: "Portfolio summary: " + name,
		Meta: [][2]string{{"Portfolio", q.portfolio}, {"Currency", currency},
			{"Period", q.start.Format(time.DateOnly) + " to " + q.end.Format(time.DateOnly)}},
		Columns: []string{"symbol", "name", "currency", "quantity", "last_close", "close_date", "market_value",
			"weight", "cost_basis", "pnl", "pnl_pct", "period_change_pct"},
	}
	for _, l := range lines {
		row := []string{l.symbol, l.name, l.currency, strconv.FormatFloat(l.qty, 'f', -1, 64), "", "", "", "", money(l.cost), "", "", ""}
		if l.close.Valid {
			mv := l.qty * l.close.Float64
			row[4], row[5], row[6] = money(l.close.Float64), l.date.Time.Format(time.DateOnly), money(mv)
			if total > 0 {
				row[7] = ratio(mv / total)
			}
			row[9] = money(mv - l.cost)
			if l.cost > 0 {
				row[10] = ratio((mv - l.cost) / l.cost)
			}
			if l.startClose.Valid && l.startClose.Float64 > 0 {
				row[11] = ratio(l.close.Float64/l.startClose.Float64 - 1)
			}
		}
		rep.Rows = append(rep.Rows, row)
	}
	rep.Totals = []string{"TOTAL", "", "", "", "", "", money(total), ratio(boolF(total > 0)), money(totalCost), money(total - totalCost), "", ""}
	if totalCost > 0 {
		rep.Totals[10] = ratio((total - totalCost) / totalCost)
	}
	return rep, map[string]string{"market_value": money(total), "cost_basis": money(totalCost), "pnl": money(total - totalCost),
		"holdings": strconv.Itoa(len(lines))}, nil
}

func boolF(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// risk lists the latest risk_metrics row on or before the period's end per
// portfolio, window and benchmark (one portfolio or all).
func (q reportQuery) risk(ctx context.Context) (Report, error) {
	if q.portfolio != "" {
		var n int
		if err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM portfolios WHERE id = $1`, q.portfolio).Scan(&n); err != nil {
			return Report{}, fmt.Errorf("maintenance: report: %w", store.Translate(err))
		}
		if n == 0 {
			return Report{}, job.Permanent(fmt.Errorf("maintenance: portfolio %q: %w", q.portfolio, ErrNoPortfolio))
		}
	}
	rows, err := q.db.QueryContext(ctx, `
		SELECT DISTINCT ON (m.portfolio_id, m.window_days, m.benchmark_symbol)
			m.portfolio_id, p.name, m.as_of, m.window_days, COALESCE(m.benchmark_symbol, ''), m.returns,
			m.annualised_return, m.annualised_volatility, m.sharpe, m.sortino, m.max_drawdown,
			m.var_95, m.cvar_95, m.beta, m.alpha, m.tracking_error
		FROM risk_metrics m JOIN portfolios p ON p.id = m.portfolio_id
		WHERE ($1 = '' OR m.portfolio_id = $1) AND m.as_of <= $2
		ORDER BY m.portfolio_id, m.window_days, m.benchmark_symbol, m.as_of DESC`, q.portfolio, q.end)
	if err != nil {
		return Report{}, fmt.Errorf("maintenance: report: %w", store.Translate(err))
	}
	defer rows.Close()
	rep := Report{
		Title: "Risk metrics",
		Meta:  [][2]string{{"As of", q.end.Format(time.DateOnly)}},
		Columns: []string{"portfolio_id", "portfolio", "as_of", "window_days", "benchmark", "returns",
			"annualised_return", "annualised_volatility", "sharpe", "sortino", "max_drawdown", "var_95", "cvar_95",
			"beta", "alpha", "tracking_error"},
	}
	if q.portfolio != "" {
		rep.Meta = append(rep.Meta, [2]string{"Portfolio", q.portfolio})
	}
	for rows.Next() {
		var id, name, bench string
		var asOf time.Time
		var window, returns int
		var ret, vol, mdd, v95, cv95 float64
		var sharpe, sortino, beta, alpha, te sql.NullFloat64
		if err := rows.Scan(&id, &name, &asOf, &window, &bench, &returns, &ret, &vol, &sharpe, &sortino, &mdd,
			&v95, &cv95, &beta, &alpha, &te); err != nil {
			return Report{}, err
		}
		rep.Rows = append(rep.Rows, []string{id, name, asOf.Format(time.DateOnly), strconv.Itoa(window), bench,
			strconv.Itoa(returns), ratio(ret), ratio(vol), optRatio(sharpe), optRatio(sortino), ratio(mdd),
			ratio(v95), ratio(cv95), optRatio(beta), optRatio(alpha), optRatio(te)})
	}
	if err := rows.Err(); err != nil {
		return Report{}, fmt.Errorf("maintenance: report: %w", store.Translate(err))
	}
	return rep, nil
}

// taskActivity counts the tasks created in the period per type: by outcome,
// success rate (completed over completed and failed) and mean duration of
// completed runs.
func (q reportQuery) taskActivity(ctx context.Context) (Report, map[string]string, error) {
	to := q.end.AddDate(0, 0, 1) // the end date is inclusive
	rows, err := q.db.QueryContext(ctx, `
		SELECT type, count(*),
			count(*) FILTER (WHERE status = 'completed'),
			count(*) FILTER (WHERE status = 'failed'),
			count(*) FILTER (WHERE status = 'cancelled'),
			count(*) FILTER (WHERE status IN ('pending', 'running', 'retrying')),
			avg(duration_ms) FILTER (WHERE status = 'completed' AND duration_ms IS NOT NULL)
		FROM tasks WHERE created_at >= $1 AND created_at < $2
		GROUP BY type ORDER BY type`, q.start, to)
	if err != nil {
		return Report{}, nil, fmt.Errorf("maintenance: report: %w", store.Translate(err))
	}
	defer rows.Close()
	rep := Report{
		Title: "Task activity",
		Meta:  [][2]string{{"Period", q.start.Format(time.DateOnly) + " to " + q.end.Format(time.DateOnly)}},
		Columns: []string{"type", "total", "completed", "failed", "cancelled", "open", "success_rate",
			"avg_duration_ms"},
	}
	var all, done, failed int64
	for rows.Next() {
		var typ string
		var total, completed, fail, cancelled, open int64
		var avg sql.NullFloat64
		if err := rows.Scan(&typ, &total, &completed, &fail, &cancelled, &open, &avg); err != nil {
			return Report{}, nil, err
		}
		all, done, failed = all+total, done+completed, failed+fail
		rate := ""
		if completed+fail > 0 {
			rate = ratio(float64(completed) / float64(completed+fail))
		}
		mean := ""
		if avg.Valid {
			mean = strconv.FormatFloat(avg.Float64, 'f', 0, 64)
		}
		rep.Rows = append(rep.Rows, []string{typ, itoa(total), itoa(completed), itoa(fail), itoa(cancelled), itoa(open), rate, mean})
	}
	if err := rows.Err(); err != nil {
		return Report{}, nil, fmt.Errorf("maintenance: report: %w", store.Translate(err))
	}
	summary := map[string]string{"tasks": itoa(all), "completed": itoa(done), "failed": itoa(failed)}
	if done+failed > 0 {
		summary["success_rate"] = ratio(float64(done) / float64(done+failed))
	}
	return rep, summary, nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// WriteCSV writes the report as CSV: a header row, the rows, then the totals.
// Text cells that a spreadsheet would run as a formula are prefixed with a
// quote.
func (r Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(r.Columns); err != nil {
		return err
	}
	rows := r.Rows
	if r.Totals != nil {
		rows = append(rows[:len(rows):len(rows)], r.Totals)
	}
	for _, row := range rows {
		safe := make([]string, len(row))
		for i, c := range row {
			safe[i] = csvSafe(c)
		}
		if err := cw.Write(safe); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvSafe neutralises cells that start like a formula, leaving numbers alone.
func csvSafe(s string) string {
	if s == "" || !strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return s
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return s
	}
	return "'" + s
}

var reportHTML = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:4px 8px}td.n{text-align:right}tfoot td{font-weight:bold}</style>
</head><body>
<h1>{{.Title}}</h1>
<dl>{{range .Meta}}<dt>{{index . 0}}</dt><dd>{{index . 1}}</dd>{{end}}</dl>
<table>
<thead><tr>{{range .Columns}}<th>{{.}}</th>{{end}}</tr></thead>
<tbody>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody>
{{if .Totals}}<tfoot><tr>{{range .Totals}}<td>{{.}}</td>{{end}}</tr></tfoot>{{end}}
</table>
</body></html>
`))

// WriteHTML writes the report as an HTML page; every value is escaped.
func (r Report) WriteHTML(w io.Writer) error { return reportHTML.Execute(w, r) }
