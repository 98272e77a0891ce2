package notifyjob_test

import (
	"encoding/json"
	"fmt"
	"html"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/notify/notifytest"
	"github.com/taskforge/taskforge/pkg/notifyjob"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// seedValue is a portfolio_values row.
type seedValue struct {
	portfolio string
	date      string
	value     float64
	cashFlow  float64
}

// seedPortfolio is a portfolio with its values.
type seedPortfolio struct {
	id, name, currency string
}

var (
	digestPortfolios = []seedPortfolio{
		{"pf_alpha", "Alpha <Growth>", "USD"},
		{"pf_beta", "Beta Income", "EUR"},
		{"pf_empty", "Empty", "USD"},
	}
	digestValues = []seedValue{
		{"pf_alpha", "2026-11-10", 9800, 0},
		{"pf_alpha", "2026-11-13", 10000, 0},
		{"pf_alpha", "2026-11-16", 10200, 50},
		{"pf_alpha", "2026-11-19", 10400, 0},
		{"pf_alpha", "2026-11-20", 10550, 100},
		{"pf_alpha", "2026-11-23", 11000, 0},
		{"pf_beta", "2026-11-10", 5200, 0},
		{"pf_beta", "2026-11-18", 5000, -25},
		{"pf_beta", "2026-11-21", 999, 0},
	}
)

// digestTasks are the seeded tasks: some inside the week ending 2026-11-20,
// some outside it.
var digestTasks = []taskRow{
	{ID: "task_d01", Type: "refresh_portfolio", Status: "completed", CreatedBy: "key_alice", CreatedAt: at("2026-11-14T00:00:00Z")},
	{ID: "task_d02", Type: "refresh_portfolio", Status: "completed", CreatedBy: "key_alice", CreatedAt: at("2026-11-16T09:30:00Z")},
	{ID: "task_d03", Type: "refresh_portfolio", Status: "completed", CreatedBy: "key_bob", CreatedAt: at("2026-11-20T10:00:00Z")},
	{ID: "task_d04", Type: "refresh_portfolio", Status: "failed", CreatedBy: "key_bob", CreatedAt: at("2026-11-18T08:00:00Z"),
		Error: `{"message":"price provider timed out","kind":"error"}`},
	{ID: "task_d05", Type: "send_email", Status: "failed", CreatedBy: "key_alice", CreatedAt: at("2026-11-20T23:59:59Z"),
		Error: `{"message":"notify: email: 550 <mailbox> unavailable","kind":"permanent"}`},
	{ID: "task_d06", Type: "send_email", Status: "completed", CreatedBy: "key_alice", CreatedAt: at("2026-11-19T12:00:00Z")},
	{ID: "task_d07", Type: "webhook_callback", Status: "cancelled", CreatedBy: "key_bob", CreatedAt: at("2026-11-17T12:00:00Z")},
	{ID: "task_d08", Type: "calculate_metrics", Status: "pending", CreatedBy: "key_alice", CreatedAt: at("2026-11-20T12:00:00Z")},
	// Outside the week.
	{ID: "task_d09", Type: "refresh_portfolio", Status: "failed", CreatedBy: "key_alice", CreatedAt: at("2026-11-13T23:59:59Z"),
		Error: `{"message":"before the period"}`},
	{ID: "task_d10", Type: "send_email", Status: "failed", CreatedBy: "key_alice", CreatedAt: at("2026-11-21T00:00:00Z"),
		Error: `{"message":"after the period"}`},
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func seedDigest(t *testing.T, db *gorm.DB) {
	t.Helper()
	for _, p := range digestPortfolios {
		require.NoError(t, db.Exec(`INSERT INTO portfolios (id, name, owner, base_currency) VALUES (?, ?, 'demo', ?)`,
			p.id, p.name, p.currency).Error)
	}
	for _, v := range digestValues {
		require.NoError(t, db.Exec(`INSERT INTO portfolio_values (portfolio_id, date, market_value, cash_flow) VALUES (?, ?::date, ?, ?)`,
			v.portfolio, v.date, v.value, v.cashFlow).Error)
	}
	for _, row := range digestTasks {
		insertTask(t, db, row)
	}
	insertKey(t, db, "key_admin", "admin", false)
}

// expectedPortfolio computes, from the seed, a portfolio's line as the digest
// should show it for the days start..end.
func expectedPortfolio(p seedPortfolio, start, end string) (open, closing, change, flows, ret string) {
	var o, c *seedValue
	var sumFlows float64
	for i := range digestValues {
		v := &digestValues[i]
		if v.portfolio != p.id {
			continue
		}
		if v.date < start && (o == nil || v.date > o.date) {
			o = v
		}
		if v.date >= start && v.date <= end {
			sumFlows += v.cashFlow
			if c == nil || v.date > c.date {
				c = v
			}
		}
	}
	open, closing, change, ret = "n/a", "n/a", "n/a", "n/a"
	if o != nil {
		open = notifyjob.Money(o.value) + " (" + o.date + ")"
	}
	if c != nil {
		closing = notifyjob.Money(c.value) + " (" + c.date + ")"
	}
	if o != nil && c != nil {
		change = notifyjob.SignedMoney(c.value - o.value)
		ret = notifyjob.Percent((c.value - o.value - sumFlows) / o.value)
	}
	return open, closing, change, notifyjob.SignedMoney(sumFlows), ret
}

// expectedActivity counts the seeded tasks of the period, for creator (all
// when empty).
func expectedActivity(start, end, creator string) (total int, byStatus map[string]int, byType map[string][3]int, failures []taskRow) {
	from := at(start + "T00:00:00Z")
	to := at(end+"T00:00:00Z").AddDate(0, 0, 1)
	byStatus, byType = map[string]int{}, map[string][3]int{}
	for _, row := range digestTasks {
		if row.CreatedAt.Before(from) || !row.CreatedAt.Before(to) || (creator != "" && row.CreatedBy != creator) {
			continue
		}
		total++
		byStatus[row.Status]++
		c := byType[row.Type]
		c[0]++
		if row.Status == "completed" {
			c[1]++
		}
		if row.Status == "failed" {
			c[2]++
			failures = append(failures, row)
		}
		byType[row.Type] = c
	}
	return total, byStatus, byType, failures
}

func failureMessage(t *testing.T, row taskRow) string {
	t.Helper()
	var e struct{ Message string }
	require.NoError(t, json.Unmarshal([]byte(row.Error), &e))
	return e.Message
}

func TestGenerateDigest(t *testing.T) {
	t.Parallel()
	b := setupEmail(t)
	seedDigest(t, b.db)
	now := func() time.Time { return at("2026-11-21T08:00:00Z") }

	tests := []struct {
		name        string
		creator     string
		params      *taskpb.GenerateDigestParams
		start, end  string
		subject     string
		wantCreator string // "" = all tasks
	}{
		{
			name: "weekly by an admin", creator: "key_admin",
			params: &taskpb.GenerateDigestParams{Period: "weekly", Date: "2026-11-20", Recipients: []string{"ops@example.test", "cfo@example.test"}},
			start:  "2026-11-14", end: "2026-11-20", subject: "Taskforge weekly digest for 2026-11-14 to 2026-11-20",
		},
		{
			name: "daily by default for yesterday, by an operator", creator: "key_alice",
			params: &taskpb.GenerateDigestParams{Recipients: []string{"alice@example.test"}},
			start:  "2026-11-20", end: "2026-11-20", subject: "Taskforge daily digest for 2026-11-20", wantCreator: "key_alice",
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newService(t, notifyjob.Options{DB: b.db, Mailer: b.mailer, Now: now})
			id := fmt.Sprintf("task_digest_%d", i)
			insertTask(t, b.db, taskRow{ID: id, Type: "generate_digest", Status: "running", CreatedBy: tt.creator,
				CreatedAt: at(tt.end + "T06:00:00Z")})
			rec := &job.Recorder{ID: id}
			require.NoError(t, svc.GenerateDigest(t.Context(), rec, tt.params))

			got := b.mp.MessageBySubject(t, tt.subject)
			require.Equal(t, tt.params.Recipients, notifytest.Addresses(got.To))
			text := strings.ReplaceAll(got.Text, "\r\n", "\n")
			// html/template writes "+" as "&#43;", which renders the same.
			htmlBody := strings.ReplaceAll(got.HTML, "&#43;", "+")

			for _, p := range digestPortfolios {
				open, closing, change, flows, ret := expectedPortfolio(p, tt.start, tt.end)
				line := lineWith(t, text, "("+p.id+")")
				require.Equal(t, []string{p.name, "(" + p.id + ")", p.currency}, portfolioColumns(line), line)
				require.Contains(t, line, open)
				require.Contains(t, line, closing)
				require.Regexp(t, `\Q`+change+`\E\s+\Q`+flows+`\E\s+\Q`+ret+`\E\s*$`, line)
				require.Contains(t, htmlBody, "<td>"+html.EscapeString(p.name)+" ("+p.id+")</td><td>"+p.currency+"</td><td>"+
					open+"</td><td>"+closing+"</td><td>"+change+"</td><td>"+flows+"</td><td>"+ret+"</td>")
			}

			total, byStatus, byType, failures := expectedActivity(tt.start, tt.end, tt.wantCreator)
			require.NotZero(t, total)
			require.Contains(t, text, fmt.Sprintf("Tasks created: %d\n", total))
			for status, n := range byStatus {
				require.Contains(t, text, fmt.Sprintf("  %s: %d\n", status, n))
				require.Contains(t, htmlBody, fmt.Sprintf("<li>%s: %d</li>", status, n))
			}
			for typ, c := range byType {
				require.Regexp(t, fmt.Sprintf(`(?m)^  %s\s+%d\s+%d\s+%d\s*$`, typ, c[0], c[1], c[2]), text)
				require.Contains(t, htmlBody, fmt.Sprintf("<tr><td>%s</td><td>%d</td><td>%d</td><td>%d</td></tr>", typ, c[0], c[1], c[2]))
			}
			for _, f := range failures {
				msg := failureMessage(t, f)
				require.Contains(t, text, f.ID+" "+f.Type)
				require.Contains(t, text, msg)
				require.Contains(t, htmlBody, html.EscapeString(msg))
			}
			// Tasks outside the period or the creator's scope are not listed.
			for _, row := range digestTasks {
				inScope := tt.wantCreator == "" || row.CreatedBy == tt.wantCreator
				if row.Status == "failed" && (!inScope || !containsRow(failures, row.ID)) {
					require.NotContains(t, text, row.ID)
				}
			}
			require.NotContains(t, text, id, "the digest leaves itself out")

			wantPeriod := tt.params.GetPeriod()
			if wantPeriod == "" {
				wantPeriod = notifyjob.PeriodDaily
			}
			var res notifyjob.DigestResult
			require.NoError(t, json.Unmarshal(rec.Result(), &res))
			require.Equal(t, notifyjob.DigestResult{
				Period: wantPeriod, Start: tt.start, End: tt.end, Recipients: len(tt.params.Recipients),
				Portfolios: len(digestPortfolios), Tasks: int64(total), Failed: int64(byStatus["failed"]),
			}, res)
		})
	}
}

func TestGenerateDigestRejects(t *testing.T) {
	t.Parallel()
	b := setupEmail(t)
	insertTask(t, b.db, taskRow{ID: "task_digest_x", Type: "generate_digest", Status: "running", CreatedBy: "key_alice"})

	t.Run("default recipients", func(t *testing.T) {
		svc := newService(t, notifyjob.Options{DB: b.db, Mailer: b.mailer, DigestRecipients: []string{"team@example.test"}})
		rec := &job.Recorder{ID: "task_digest_x"}
		require.NoError(t, svc.GenerateDigest(t.Context(), rec, &taskpb.GenerateDigestParams{Date: "2026-01-05"}))
		got := b.mp.MessageBySubject(t, "Taskforge daily digest for 2026-01-05")
		require.Equal(t, []string{"team@example.test"}, notifytest.Addresses(got.To))
		require.Contains(t, got.Text, "No portfolios.")
		require.Contains(t, got.Text, "Tasks created: 0")
	})

	svc := newService(t, notifyjob.Options{DB: b.db, Mailer: b.mailer})
	tests := []struct {
		name   string
		svc    *notifyjob.Service
		id     string
		params *taskpb.GenerateDigestParams
		target error
	}{
		{name: "no recipients", svc: svc, id: "task_digest_x", params: &taskpb.GenerateDigestParams{}, target: notifyjob.ErrNoRecipients},
		{name: "bad period", svc: svc, id: "task_digest_x", params: &taskpb.GenerateDigestParams{Period: "monthly", Recipients: []string{"a@example.test"}}, target: notifyjob.ErrBadParams},
		{name: "bad date", svc: svc, id: "task_digest_x", params: &taskpb.GenerateDigestParams{Date: "20-11-2026", Recipients: []string{"a@example.test"}}, target: notifyjob.ErrBadParams},
		{name: "no task row", svc: svc, id: "task_digest_missing", params: &taskpb.GenerateDigestParams{Recipients: []string{"a@example.test"}}, target: notifyjob.ErrTaskNotFound},
		{name: "no mailer", svc: newService(t, notifyjob.Options{DB: b.db}), id: "task_digest_x", params: &taskpb.GenerateDigestParams{Recipients: []string{"a@example.test"}}, target: notifyjob.ErrEmailNotConfigured},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.svc.GenerateDigest(t.Context(), &job.Recorder{ID: tt.id}, tt.params)
			require.ErrorIs(t, err, tt.target)
			require.True(t, job.IsPermanent(err))
		})
	}
}

// lineWith returns the one line of text containing needle.
func lineWith(t *testing.T, text, needle string) string {
	t.Helper()
	var found []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, needle) {
			found = append(found, l)
		}
	}
	require.Len(t, found, 1, "lines with %q in:\n%s", needle, text)
	return found[0]
}

// portfolioColumns splits the start of a portfolio line: the name (which may
// hold spaces) up to the id, the id and the currency.
func portfolioColumns(line string) []string {
	i := strings.Index(line, " (pf_")
	if i < 0 {
		return nil
	}
	rest := strings.Fields(line[i+1:])
	if len(rest) < 2 {
		return nil
	}
	return []string{line[:i], rest[0], rest[1]}
}

func containsRow(rows []taskRow, id string) bool {
	for _, r := range rows {
		if r.ID == id {
			return true
		}
	}
	return false
}
