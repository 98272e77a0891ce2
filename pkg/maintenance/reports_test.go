package maintenance_test

import (
	"bytes"
	"encoding/csv"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledongthuc/pdf"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/lifecycle/lifecycletest"
	"github.com/taskforge/taskforge/pkg/maintenance"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// runReport runs generate_reports and returns its result and file.
func runReport(t *testing.T, b bundle, p *taskpb.GenerateReportsParams) (maintenance.ReportResult, []byte) {
	t.Helper()
	b.task(t, "task_report", "generate_reports", "running", 0)
	defer b.exec(t, `DELETE FROM tasks WHERE id = 'task_report'`)
	defer b.exec(t, `DELETE FROM results WHERE task_id = 'task_report'`)
	rec := &job.Recorder{ID: "task_report"}
	require.NoError(t, maintenance.NewReports(b.db, b.results, "http://api.test")(b.ctx, rec, p))
	res := decode[maintenance.ReportResult](t, rec)
	stored, err := b.results.Get(b.ctx, res.ResultID)
	require.NoError(t, err)
	rc, err := b.results.Open(b.ctx, stored)
	require.NoError(t, err)
	defer rc.Close()
	body, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.EqualValues(t, len(body), res.Size)
	require.Equal(t, "http://api.test/api/v1/tasks/task_report/result", res.DownloadURL)
	return res, body
}

func parseCSV(t *testing.T, body []byte) (header []string, rows map[string][]string) {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	require.NoError(t, err)
	require.NotEmpty(t, recs)
	rows = map[string][]string{}
	for _, r := range recs[1:] {
		rows[r[0]] = r
	}
	return recs[0], rows
}

func num(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	require.NoError(t, err, s)
	return f
}

// htmlCells returns the text of every table row's cells.
func htmlCells(t *testing.T, body []byte) [][]string {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(body))
	require.NoError(t, err)
	var rows [][]string
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "tr" {
			var row []string
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				if c.Type == html.ElementNode && (c.Data == "td" || c.Data == "th") {
					var sb strings.Builder
					for x := c.FirstChild; x != nil; x = x.NextSibling {
						if x.Type == html.TextNode {
							sb.WriteString(x.Data)
						}
					}
					row = append(row, sb.String())
				}
			}
			rows = append(rows, row)
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return rows
}

func TestPortfolioSummaryReport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.domain(t, 30)
	end := time.Now().UTC().Truncate(24 * time.Hour)
	start := end.AddDate(0, 0, -7)

	// Expected figures straight from the tables.
	type want struct{ qty, cost, close, startClose float64 }
	exp := map[string]*want{}
	rows, err := b.pg.SQL.Query(`SELECT h.asset_symbol, h.quantity, h.cost_basis,
		(SELECT close FROM prices p WHERE p.asset_symbol = h.asset_symbol AND p.date <= $1 ORDER BY date DESC LIMIT 1),
		(SELECT close FROM prices p WHERE p.asset_symbol = h.asset_symbol AND p.date <= $2 ORDER BY date DESC LIMIT 1)
		FROM holdings h WHERE portfolio_id = 'pf_main'`, end, start)
	require.NoError(t, err)
	var total float64
	for rows.Next() {
		var s string
		w := &want{}
		require.NoError(t, rows.Scan(&s, &w.qty, &w.cost, &w.close, &w.startClose))
		exp[s] = w
		total += w.qty * w.close
	}
	require.NoError(t, rows.Err())
	require.Len(t, exp, 2)

	res, body := runReport(t, b, &taskpb.GenerateReportsParams{Report: "portfolio_summary", PortfolioId: "pf_main",
		PeriodStart: start.Format(time.DateOnly), PeriodEnd: end.Format(time.DateOnly)})
	require.Equal(t, "csv", res.Format)
	require.Equal(t, 2, res.Rows)
	header, got := parseCSV(t, body)
	col := map[string]int{}
	for i, h := range header {
		col[h] = i
	}
	for sym, w := range exp {
		row := got[sym]
		require.NotNil(t, row, sym)
		mv := w.qty * w.close
		require.InDelta(t, w.close, num(t, row[col["last_close"]]), 0.005)
		require.InDelta(t, mv, num(t, row[col["market_value"]]), 0.005)
		require.InDelta(t, mv/total, num(t, row[col["weight"]]), 0.00005)
		require.InDelta(t, mv-w.cost, num(t, row[col["pnl"]]), 0.005)
		require.InDelta(t, (mv-w.cost)/w.cost, num(t, row[col["pnl_pct"]]), 0.00005)
		require.InDelta(t, w.close/w.startClose-1, num(t, row[col["period_change_pct"]]), 0.00005)
		require.Equal(t, end.Format(time.DateOnly), row[col["close_date"]])
	}
	require.InDelta(t, total, num(t, got["TOTAL"][col["market_value"]]), 0.005)
	require.InDelta(t, total, num(t, res.Summary["market_value"]), 0.005)

	// HTML: the same figures, names escaped.
	_, page := runReport(t, b, &taskpb.GenerateReportsParams{Report: "portfolio_summary", PortfolioId: "pf_main", Format: "html"})
	require.Contains(t, string(page), "Beta &lt;Fund&gt; &amp; Co")
	require.NotContains(t, string(page), "<Fund>")
	cells := htmlCells(t, page)
	require.Equal(t, header, cells[0])
	var found bool
	for _, r := range cells[1:] {
		if r[0] == "BBB" {
			found = true
			require.Equal(t, "Beta <Fund> & Co", r[1])
			require.InDelta(t, exp["BBB"].qty*exp["BBB"].close, num(t, r[col["market_value"]]), 0.005)
		}
	}
	require.True(t, found)
}

// TestReportAsPDF: format pdf stores a PDF that a PDF reader opens, with the
// title, the header and every row's figures in its text.
func TestReportAsPDF(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.domain(t, 30)
	res, body := runReport(t, b, &taskpb.GenerateReportsParams{Report: "portfolio_summary", PortfolioId: "pf_main", Format: "pdf"})
	require.Equal(t, "pdf", res.Format)
	require.True(t, strings.HasSuffix(res.Name, ".pdf"), res.Name)
	_, csvBody := runReport(t, b, &taskpb.GenerateReportsParams{Report: "portfolio_summary", PortfolioId: "pf_main"})
	header, rows := parseCSV(t, csvBody)

	r, err := pdf.NewReader(bytes.NewReader(body), int64(len(body)))
	require.NoError(t, err, "the stored file is a PDF")
	require.GreaterOrEqual(t, r.NumPage(), 1)
	var text strings.Builder
	for i := 1; i <= r.NumPage(); i++ {
		s, err := r.Page(i).GetPlainText(nil)
		require.NoError(t, err)
		text.WriteString(s)
	}
	got := text.String()
	require.Contains(t, got, "Portfolio summary")
	for _, h := range header[:3] {
		require.Contains(t, got, h)
	}
	for sym, row := range rows {
		require.Contains(t, got, sym)
		require.Contains(t, got, row[2], "row %s", sym)
	}
}

func TestRiskReport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.domain(t, 5)
	// An older row for the same key is superseded by the latest.
	b.exec(t, `INSERT INTO risk_metrics (portfolio_id, as_of, window_days, benchmark_symbol, start_date, returns,
		annualised_return, annualised_volatility, max_drawdown, var_95, cvar_95)
		VALUES ('pf_main', current_date - 30, 252, 'IDX', current_date - 400, 250, 0.5, 0.5, 0.5, 0.5, 0.5)`)
	var sharpe, beta, vol float64
	require.NoError(t, b.pg.SQL.QueryRow(`SELECT sharpe, beta, annualised_volatility FROM risk_metrics
		WHERE portfolio_id = 'pf_main' ORDER BY as_of DESC LIMIT 1`).Scan(&sharpe, &beta, &vol))

	res, page := runReport(t, b, &taskpb.GenerateReportsParams{Report: "risk", PortfolioId: "pf_main", Format: "html"})
	require.Equal(t, 1, res.Rows)
	cells := htmlCells(t, page)
	require.Len(t, cells, 2)
	col := map[string]int{}
	for i, h := range cells[0] {
		col[h] = i
	}
	row := cells[1]
	require.Equal(t, "pf_main", row[col["portfolio_id"]])
	require.Equal(t, "IDX", row[col["benchmark"]])
	require.InDelta(t, sharpe, num(t, row[col["sharpe"]]), 0.00005)
	require.InDelta(t, beta, num(t, row[col["beta"]]), 0.00005)
	require.InDelta(t, vol, num(t, row[col["annualised_volatility"]]), 0.00005)
}

func TestTaskActivityReport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	type seed struct {
		typ, status string
		ms          int64
	}
	seeds := []seed{
		{"refresh_portfolio", "completed", 1000}, {"refresh_portfolio", "completed", 3000},
		{"refresh_portfolio", "failed", 500}, {"refresh_portfolio", "running", 0},
		{"send_email", "completed", 200}, {"send_email", "cancelled", 0},
	}
	for i, s := range seeds {
		b.task(t, id("task_s", i), s.typ, s.status, time.Hour)
		require.NoError(t, lifecycletest.Force(b.db, id("task_s", i), `duration_ms = ?`, s.ms))
	}
	// Outside the period.
	b.task(t, "task_old", "send_email", "failed", 40*day)

	_, body := runReport(t, b, &taskpb.GenerateReportsParams{Report: "task_activity"})
	header, got := parseCSV(t, body)
	col := map[string]int{}
	for i, h := range header {
		col[h] = i
	}
	// Expected, from the seeds.
	for _, typ := range []string{"refresh_portfolio", "send_email"} {
		var total, completed, failed, sum int64
		for _, s := range seeds {
			if s.typ != typ {
				continue
			}
			total++
			switch s.status {
			case "completed":
				completed++
				sum += s.ms
			case "failed":
				failed++
			}
		}
		row := got[typ]
		require.NotNil(t, row, typ)
		require.Equal(t, strconv.FormatInt(total, 10), row[col["total"]], typ)
		require.Equal(t, strconv.FormatInt(completed, 10), row[col["completed"]], typ)
		require.InDelta(t, float64(completed)/float64(completed+failed), num(t, row[col["success_rate"]]), 0.00005, typ)
		require.InDelta(t, float64(sum)/float64(completed), num(t, row[col["avg_duration_ms"]]), 0.5, typ)
	}
	// The report task itself is counted under its type; nothing else is.
	require.Len(t, got, 3)
}

func TestReportErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.task(t, "task_report", "generate_reports", "running", 0)
	h := maintenance.NewReports(b.db, b.results, "")
	cases := []struct {
		name string
		p    *taskpb.GenerateReportsParams
		want error
	}{
		{"unknown format", &taskpb.GenerateReportsParams{Report: "risk", Format: "docx"}, nil},
		{"no portfolio", &taskpb.GenerateReportsParams{Report: "portfolio_summary", PortfolioId: "pf_nope"}, maintenance.ErrNoPortfolio},
		{"missing portfolio id", &taskpb.GenerateReportsParams{Report: "portfolio_summary"}, nil},
		{"unknown report", &taskpb.GenerateReportsParams{Report: "everything"}, nil},
		{"bad date", &taskpb.GenerateReportsParams{Report: "risk", PeriodEnd: "tomorrow"}, nil},
	}
	for _, tc := range cases {
		err := h(b.ctx, &job.Recorder{ID: "task_report"}, tc.p)
		require.Error(t, err, tc.name)
		require.True(t, job.IsPermanent(err), tc.name)
		if tc.want != nil {
			require.ErrorIs(t, err, tc.want, tc.name)
		}
	}
	require.Zero(t, b.count(t, `SELECT count(*) FROM results`))
}

func TestCSVNeutralisesFormulas(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	r := maintenance.Report{Columns: []string{"a", "b"}, Rows: [][]string{{"=HYPERLINK(\"x\")", "-0.25"}, {"@SUM(A1)", "+1"}}}
	require.NoError(t, r.WriteCSV(&buf))
	recs, err := csv.NewReader(&buf).ReadAll()
	require.NoError(t, err)
	require.Equal(t, `'=HYPERLINK("x")`, recs[1][0])
	require.Equal(t, "-0.25", recs[1][1])
	require.Equal(t, "'@SUM(A1)", recs[2][0])
	require.Equal(t, "+1", recs[2][1])
}
