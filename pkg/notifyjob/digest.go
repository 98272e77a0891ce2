package notifyjob

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// Digest periods.
const (
	PeriodDaily  = "daily"
	PeriodWeekly = "weekly"
)

// dateLayout is the params' and the digest's date format.
const dateLayout = "2006-01-02"

// DigestResult is generate_digest's result.
type DigestResult struct {
	Period string `json:"period"`
	// Start and End are the first and last day of the period (YYYY-MM-DD).
	Start string `json:"start"`
	End   string `json:"end"`
	// Recipients counts the addresses the digest was sent to.
	Recipients int `json:"recipients"`
	// Portfolios counts the portfolios summarised.
	Portfolios int `json:"portfolios"`
	// Tasks counts the tasks created in the period; Failed those of them that
	// failed.
	Tasks  int64 `json:"tasks"`
	Failed int64 `json:"failed"`
}

// Digest is the content of one digest mail. Its figures come from
// portfolio_values and tasks.
type Digest struct {
	Period     string
	Start, End time.Time
	// AllTasks is true when the digest covers every caller's tasks (its creator
	// is an admin); otherwise only the creator's own tasks are counted.
	AllTasks   bool
	Portfolios []PortfolioChange
	// MorePortfolios counts portfolios left out of the list.
	MorePortfolios int
	Tasks          int64
	ByStatus       []Count
	ByType         []TypeCount
	Failures       []Failure
}

// PortfolioChange is a portfolio's valuation over the period. Open is the last
// value before the period, Close the last value within it; either is nil when
// there is none.
type PortfolioChange struct {
	ID, Name, Currency string
	Open, Close        *Valuation
	// CashFlow is the money moved in (+) or out (-) during the period.
	CashFlow float64
}

// Valuation is a portfolio's market value on a day.
type Valuation struct {
	Date  time.Time
	Value float64
}

// Change is Close - Open, or nil without both.
func (p PortfolioChange) Change() *float64 {
	if p.Open == nil || p.Close == nil {
		return nil
	}
	c := p.Close.Value - p.Open.Value
	return &c
}

// Return is the change net of cash flows relative to Open, or nil without both
// values or with a zero opening value.
func (p PortfolioChange) Return() *float64 {
	c := p.Change()
	if c == nil || p.Open.Value == 0 {
		return nil
	}
	r := (*c - p.CashFlow) / p.Open.Value
	return &r
}

// Count is a number of tasks with a status.
type Count struct {
	Key string
	N   int64
}

// TypeCount is the tasks of one type.
type TypeCount struct {
	Type                     string
	Total, Completed, Failed int64
}

// Failure is a failed task.
type Failure struct {
	ID, Type, Message string
	CreatedAt         time.Time
}

// GenerateDigest is the generate_digest handler: it summarises the period —
// daily (the default) is one day, weekly the seven days ending on date, which
// defaults to yesterday (UTC) — and mails it as text and HTML.
//
// Portfolio changes cover every portfolio: the value before the period, the
// last value within it, the change, the cash flows and the return net of cash
// flows. Task activity counts the tasks created in the period, by status and by
// type, and lists the latest failures; it covers every caller's tasks when the
// digest's creator is an admin and only the creator's own tasks otherwise. The
// digest task itself is left out.
//
// Recipients are the params' recipients, else Options.DigestRecipients; with
// neither the task fails permanently with ErrNoRecipients. The handler only
// reads; once the digest is sent its recipients are recorded, so a retry of
// the task does not mail it again.
func (s *Service) GenerateDigest(ctx context.Context, r job.Reporter, p *taskpb.GenerateDigestParams) error {
	const op = "generate digest"
	if s.mailer == nil {
		return job.Permanent(fmt.Errorf("notifyjob: %s: %w", op, ErrEmailNotConfigured))
	}
	d, err := s.period(p)
	if err != nil {
		return job.Permanent(fmt.Errorf("notifyjob: %s: %w", op, err))
	}
	to := p.GetRecipients()
	if len(to) == 0 {
		to = s.digestTo
	}
	if len(to) == 0 {
		return job.Permanent(fmt.Errorf("notifyjob: %s: %w", op, ErrNoRecipients))
	}
	owner, err := s.taskOwner(ctx, op, r.TaskID())
	if err != nil {
		return err
	}
	if d.AllTasks, err = s.isAdmin(ctx, owner); err != nil {
		return fmt.Errorf("notifyjob: %s: %w", op, err)
	}

	r.Progress(0, stepPortfolios, "")
	if err := s.loadPortfolios(ctx, &d); err != nil {
		return fmt.Errorf("notifyjob: %s: %w", op, err)
	}
	r.Progress(0.3, stepActivity, fmt.Sprintf("%d portfolios", len(d.Portfolios)))
	if err := s.loadActivity(ctx, &d, owner, r.TaskID()); err != nil {
		return fmt.Errorf("notifyjob: %s: %w", op, err)
	}
	r.Progress(0.6, stepSending, fmt.Sprintf("%d tasks in the period", d.Tasks))

	text, html, err := d.render()
	if err != nil {
		return fmt.Errorf("notifyjob: %s: render: %w", op, err)
	}
	done, err := s.delivered(ctx, r.TaskID(), deliveryDigest, to)
	if err != nil {
		return err
	}
	if !allDelivered(done, to) {
		if err := s.mailer.Send(ctx, notify.Message{To: to, Subject: d.Subject(), Text: text, HTML: html}); err != nil {
			return deliveryError(op, err)
		}
		s.markDelivered(ctx, r, deliveryDigest, to...)
	}
	res := DigestResult{
		Period: d.Period, Start: d.Start.Format(dateLayout), End: d.End.Format(dateLayout),
		Recipients: len(to), Portfolios: len(d.Portfolios) + d.MorePortfolios, Tasks: d.Tasks, Failed: d.failed(),
	}
	r.Log(job.Info, "digest sent", map[string]any{
		"period": res.Period, "start": res.Start, "end": res.End, "recipients": res.Recipients,
		"portfolios": res.Portfolios, "tasks": res.Tasks,
	})
	s.log.Debug("digest sent", job.LogFields(r, zap.String("period", res.Period), zap.Int("recipients", res.Recipients))...)
	r.Progress(1, stepDone, fmt.Sprintf("Digest sent to %d recipients", len(to)))
	return setResult(r, op, res)
}

// period resolves the params' period and date.
func (s *Service) period(p *taskpb.GenerateDigestParams) (Digest, error) {
	d := Digest{Period: p.GetPeriod()}
	if d.Period == "" {
		d.Period = PeriodDaily
	}
	days := 1
	switch d.Period {
	case PeriodDaily:
	case PeriodWeekly:
		days = 7
	default:
		return d, fmt.Errorf("%w: period %q must be daily or weekly", ErrBadParams, d.Period)
	}
	if p.GetDate() == "" {
		now := s.now().UTC()
		d.End = time.Date(now.Year(), now.Month(), now.Day()-1, 0, 0, 0, 0, time.UTC)
	} else {
		end, err := time.Parse(dateLayout, p.GetDate())
		if err != nil {
			return d, fmt.Errorf("%w: date %q is not YYYY-MM-DD", ErrBadParams, p.GetDate())
		}
		d.End = end
	}
	d.Start = d.End.AddDate(0, 0, 1-days)
	return d, nil
}

// Subject is the digest mail's subject.
func (d Digest) Subject() string {
	if d.Start.Equal(d.End) {
		return fmt.Sprintf("Taskforge %s digest for %s", d.Period, d.End.Format(dateLayout))
	}
	return fmt.Sprintf("Taskforge %s digest for %s to %s", d.Period, d.Start.Format(dateLayout), d.End.Format(dateLayout))
}

// failed is the number of failed tasks.
func (d Digest) failed() int64 {
	for _, c := range d.ByStatus {
		if c.Key == "failed" {
			return c.N
		}
	}
	return 0
}

// portfoliosSQL values each portfolio before and at the end of the period.
const portfoliosSQL = `
SELECT p.id, p.name, p.base_currency,
       o.date AS open_date, o.market_value AS open_value,
       c.date AS close_date, c.market_value AS close_value,
       coalesce(f.flows, 0) AS cash_flow
FROM portfolios p
LEFT JOIN LATERAL (SELECT v.date, v.market_value FROM portfolio_values v
                   WHERE v.portfolio_id = p.id AND v.date < CAST(? AS date)
                   ORDER BY v.date DESC LIMIT 1) o ON true
LEFT JOIN LATERAL (SELECT v.date, v.market_value FROM portfolio_values v
                   WHERE v.portfolio_id = p.id AND v.date BETWEEN CAST(? AS date) AND CAST(? AS date)
                   ORDER BY v.date DESC LIMIT 1) c ON true
LEFT JOIN LATERAL (SELECT sum(v.cash_flow) AS flows FROM portfolio_values v
                   WHERE v.portfolio_id = p.id AND v.date BETWEEN CAST(? AS date) AND CAST(? AS date)) f ON true
ORDER BY p.id
LIMIT ?`

// loadPortfolios reads the portfolio changes of the period.
func (s *Service) loadPortfolios(ctx context.Context, d *Digest) error {
	var rows []struct {
		ID, Name, BaseCurrency string
		OpenDate, CloseDate    *time.Time
		OpenValue, CloseValue  *float64
		CashFlow               float64
	}
	start, end := d.Start.Format(dateLayout), d.End.Format(dateLayout)
	err := s.db.WithContext(ctx).Raw(portfoliosSQL, start, start, end, start, end, maxPortfoliosListed+1).
		Scan(&rows).Error
	if err != nil {
		return fmt.Errorf("portfolio changes: %w", err)
	}
	if len(rows) > maxPortfoliosListed {
		var total int64
		if err := s.db.WithContext(ctx).Table("portfolios").Count(&total).Error; err != nil {
			return fmt.Errorf("count portfolios: %w", err)
		}
		rows = rows[:maxPortfoliosListed]
		d.MorePortfolios = int(total) - maxPortfoliosListed
	}
	for _, row := range rows {
		pc := PortfolioChange{ID: row.ID, Name: row.Name, Currency: row.BaseCurrency, CashFlow: row.CashFlow}
		if row.OpenDate != nil && row.OpenValue != nil {
			pc.Open = &Valuation{Date: *row.OpenDate, Value: *row.OpenValue}
		}
		if row.CloseDate != nil && row.CloseValue != nil {
			pc.Close = &Valuation{Date: *row.CloseDate, Value: *row.CloseValue}
		}
		d.Portfolios = append(d.Portfolios, pc)
	}
	return nil
}

// loadActivity counts the tasks created in the period.
func (s *Service) loadActivity(ctx context.Context, d *Digest, owner, self string) error {
	from, to := d.Start, d.End.AddDate(0, 0, 1)
	scope := func() *gorm.DB {
		q := s.db.WithContext(ctx).Table("tasks").Where("created_at >= ? AND created_at < ? AND id <> ?", from, to, self)
		if !d.AllTasks {
			q = q.Where("created_by = ?", owner)
		}
		return q
	}
	if err := scope().Select("status AS key, count(*) AS n").Group("status").Order("status").
		Scan(&d.ByStatus).Error; err != nil {
		return fmt.Errorf("tasks by status: %w", err)
	}
	for _, c := range d.ByStatus {
		d.Tasks += c.N
	}
	if err := scope().Select(`type, count(*) AS total,
		count(*) FILTER (WHERE status = 'completed') AS completed,
		count(*) FILTER (WHERE status = 'failed') AS failed`).
		Group("type").Order("type").Scan(&d.ByType).Error; err != nil {
		return fmt.Errorf("tasks by type: %w", err)
	}
	if err := scope().Select("id, type, coalesce(error->>'message', '') AS message, created_at").
		Where("status = 'failed'").Order("created_at DESC, id DESC").Limit(maxFailuresListed).
		Scan(&d.Failures).Error; err != nil {
		return fmt.Errorf("failed tasks: %w", err)
	}
	for i := range d.Failures {
		d.Failures[i].Message = shorten(d.Failures[i].Message, 200)
	}
	return nil
}

// shorten cuts s to n runes on one line.
func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// Money formats an amount with two decimals.
func Money(v float64) string { return fmt.Sprintf("%.2f", v) }

// SignedMoney formats a change with its sign and two decimals.
func SignedMoney(v float64) string { return fmt.Sprintf("%+.2f", v) }

// Percent formats a fraction as a signed percentage with two decimals.
func Percent(v float64) string { return fmt.Sprintf("%+.2f%%", v*100) }

// render returns the digest's text and HTML bodies.
func (d Digest) render() (string, string, error) {
	var html bytes.Buffer
	if err := digestHTML.Execute(&html, d); err != nil {
		return "", "", err
	}
	return d.text(), html.String(), nil
}

// text renders the plain-text body.
func (d Digest) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", d.Subject())
	b.WriteString("PORTFOLIOS\n")
	if len(d.Portfolios) == 0 {
		b.WriteString("No portfolios.\n")
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	if len(d.Portfolios) > 0 {
		fmt.Fprintln(tw, "Portfolio\tCurrency\tOpen\tClose\tChange\tCash flow\tReturn")
	}
	for _, p := range d.Portfolios {
		fmt.Fprintf(tw, "%s (%s)\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.ID, p.Currency,
			valuationText(p.Open), valuationText(p.Close), optText(p.Change(), SignedMoney),
			SignedMoney(p.CashFlow), optText(p.Return(), Percent))
	}
	_ = tw.Flush()
	if d.MorePortfolios > 0 {
		fmt.Fprintf(&b, "… and %d more portfolios.\n", d.MorePortfolios)
	}
	scope := "your tasks"
	if d.AllTasks {
		scope = "all tasks"
	}
	fmt.Fprintf(&b, "\nTASK ACTIVITY (%s)\nTasks created: %d\n", scope, d.Tasks)
	for _, c := range d.ByStatus {
		fmt.Fprintf(&b, "  %s: %d\n", c.Key, c.N)
	}
	if len(d.ByType) > 0 {
		b.WriteString("\nBy type:\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  Type\tTotal\tCompleted\tFailed")
		for _, t := range d.ByType {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\n", t.Type, t.Total, t.Completed, t.Failed)
		}
		_ = tw.Flush()
	}
	if len(d.Failures) > 0 {
		b.WriteString("\nLatest failures:\n")
		for _, f := range d.Failures {
			fmt.Fprintf(&b, "  %s %s (%s): %s\n", f.ID, f.Type, f.CreatedAt.UTC().Format(time.RFC3339), f.Message)
		}
	}
	return b.String()
}

// valuationText formats a value with its date, or "n/a".
func valuationText(v *Valuation) string {
	if v == nil {
		return "n/a"
	}
	return Money(v.Value) + " (" + v.Date.Format(dateLayout) + ")"
}

// optText formats an optional figure, or "n/a".
func optText(v *float64, format func(float64) string) string {
	if v == nil {
		return "n/a"
	}
	return format(*v)
}

// digestHTML is the HTML body; html/template escapes every value.
var digestHTML = template.Must(template.New("digest").Funcs(template.FuncMap{
	"money":      Money,
	"signed":     SignedMoney,
	"percent":    Percent,
	"valuation":  valuationText,
	"optSigned":  func(v *float64) string { return optText(v, SignedMoney) },
	"optPercent": func(v *float64) string { return optText(v, Percent) },
	"date":       func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}).Parse(`<!DOCTYPE html>
<html><body style="font-family: sans-serif">
<h1>{{.Subject}}</h1>
<h2>Portfolios</h2>
{{if .Portfolios}}<table border="1" cellpadding="4" cellspacing="0">
<tr><th>Portfolio</th><th>Currency</th><th>Open</th><th>Close</th><th>Change</th><th>Cash flow</th><th>Return</th></tr>
{{range .Portfolios}}<tr><td>{{.Name}} ({{.ID}})</td><td>{{.Currency}}</td><td>{{valuation .Open}}</td><td>{{valuation .Close}}</td><td>{{optSigned .Change}}</td><td>{{signed .CashFlow}}</td><td>{{optPercent .Return}}</td></tr>
{{end}}</table>{{else}}<p>No portfolios.</p>{{end}}
{{if .MorePortfolios}}<p>… and {{.MorePortfolios}} more portfolios.</p>{{end}}
<h2>Task activity ({{if .AllTasks}}all tasks{{else}}your tasks{{end}})</h2>
<p>Tasks created: {{.Tasks}}</p>
{{if .ByStatus}}<ul>{{range .ByStatus}}<li>{{.Key}}: {{.N}}</li>{{end}}</ul>{{end}}
{{if .ByType}}<table border="1" cellpadding="4" cellspacing="0">
<tr><th>Type</th><th>Total</th><th>Completed</th><th>Failed</th></tr>
{{range .ByType}}<tr><td>{{.Type}}</td><td>{{.Total}}</td><td>{{.Completed}}</td><td>{{.Failed}}</td></tr>
{{end}}</table>{{end}}
{{if .Failures}}<h3>Latest failures</h3><ul>
{{range .Failures}}<li>{{.ID}} {{.Type}} ({{date .CreatedAt}}): {{.Message}}</li>
{{end}}</ul>{{end}}
</body></html>
`))
