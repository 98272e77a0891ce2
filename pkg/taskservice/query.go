package taskservice

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// Limits and defaults of the read operations.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
	DefaultLogLimit  = 100
	// CountCap bounds the exact count of a list: past it, total is the
	// planner's estimate and Page.TotalIsEstimate is set.
	CountCap = 10000
	// DefaultCountTimeout is Options.CountTimeout's default.
	DefaultCountTimeout = 5 * time.Millisecond
	DefaultWindow       = 24 * time.Hour
	MaxWindow           = 90 * 24 * time.Hour
	minWindow           = time.Minute
	maxTaskIDLength     = 64
	listSortDefault     = "-created_at"
	sortCreatedAt       = "created_at"
	sortScheduledFor    = "scheduled_for"
)

// InvalidQueryError is a list or logs query the service cannot run: a bad
// filter, sort, limit or cursor. The API answers it with 400.
type InvalidQueryError struct {
	Field   string
	Message string
}

func (e *InvalidQueryError) Error() string { return "invalid query: " + e.Field + ": " + e.Message }

func badQuery(field, format string, args ...any) error {
	return &InvalidQueryError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// ListQuery selects and orders tasks.
type ListQuery struct {
	// Statuses keeps tasks in any of these states; empty keeps all.
	Statuses []string
	// Type and Priority keep tasks of that type or priority when not empty.
	Type     string
	Priority string
	// ScheduleID keeps the tasks fired by that schedule when not empty.
	ScheduleID string
	// CreatedAfter and CreatedBefore bound created_at (inclusive, exclusive).
	CreatedAfter  *time.Time
	CreatedBefore *time.Time
	// Sort is created_at, -created_at, scheduled_for or -scheduled_for. If
	// empty, -created_at.
	Sort string
	// Limit is the page size, 1..MaxListLimit. If zero, DefaultListLimit.
	Limit int
	// Cursor is the NextCursor of the previous page.
	Cursor string
}

// Page is one page of tasks.
type Page struct {
	// Items have their params redacted and no result (GET one task for it).
	Items []store.Task
	// NextCursor continues the listing; empty on the last page.
	NextCursor string
	// Total counts every task matching the filters (not only this page). Up to
	// CountCap it is exact; beyond, it is PostgreSQL's estimate and
	// TotalIsEstimate is true.
	Total           int64
	TotalIsEstimate bool
}

// cursor is the position after the last row of a page: its sort value and id.
type cursor struct {
	Sort string    `json:"s"`
	At   time.Time `json:"t"`
	ID   string    `json:"i"`
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s, sort string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) > 512 || json.Unmarshal(b, &c) != nil || c.ID == "" {
		return c, badQuery("cursor", "is not a cursor of this listing")
	}
	// Only what encodeCursor produces is a cursor: JSON's case-insensitive
	// keys, unknown fields and loose base64 would otherwise pass.
	if encodeCursor(c) != s {
		return cursor{}, badQuery("cursor", "is not a cursor of this listing")
	}
	if c.Sort != sort {
		return c, badQuery("cursor", "was issued for sort %s", c.Sort)
	}
	return c, nil
}

// listColumns are the columns of a list item: everything but the result, which
// may be large.
const listColumns = `id, type, status, priority, params, key_id, created_by, idempotency_key, request_hash,
created_at, updated_at, scheduled_for, started_at, completed_at, progress, current_step, messages, attempt,
retry_base, max_retries, retry_policy, timeout_seconds, estimated_duration, next_retry_at, result_url, error,
worker_id, cancel_requested, callback_url, schedule_id, fire_time, queue_wait_ms, duration_ms, version`

// where is a conjunction of SQL conditions with their arguments.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

func (w where) sql() string {
	if len(w.conds) == 0 {
		return "TRUE"
	}
	return strings.Join(w.conds, " AND ")
}

func (w where) with(cond string, args ...any) where {
	out := where{conds: append(w.conds[:len(w.conds):len(w.conds)], cond), args: append(w.args[:len(w.args):len(w.args)], args...)}
	return out
}

// List returns a page of the tasks p may see. Pages are keyset pages ordered by
// (sort value, id), so inserts while a caller pages never make a page skip or
// repeat a task.
func (s *Service) List(ctx context.Context, p auth.Principal, q ListQuery) (Page, error) {
	if q.Limit == 0 {
		q.Limit = DefaultListLimit
	}
	if q.Limit < 1 || q.Limit > MaxListLimit {
		return Page{}, badQuery("limit", "must be between 1 and %d", MaxListLimit)
	}
	if q.Sort == "" {
		q.Sort = listSortDefault
	}
	desc := strings.HasPrefix(q.Sort, "-")
	key := strings.TrimPrefix(q.Sort, "-")
	if key != sortCreatedAt && key != sortScheduledFor {
		return Page{}, badQuery("sort", "must be created_at, -created_at, scheduled_for or -scheduled_for")
	}
	statuses := dedupe(q.Statuses)
	for _, st := range statuses {
		if !tasks.ValidStatus(st) {
			return Page{}, badQuery("status", "%q is not a status", st)
		}
	}
	if q.Priority != "" && !queue.ValidPriority(q.Priority) {
		return Page{}, badQuery("priority", "must be critical, high, normal or low")
	}

	var w where
	if !p.IsAdmin() {
		if p.ID == "" {
			return Page{Items: []store.Task{}}, nil
		}
		w.add("created_by = ?", p.ID)
	}
	if q.Type != "" {
		w.add("type = ?", q.Type)
	}
	if q.Priority != "" {
		w.add("priority = ?", q.Priority)
	}
	if q.ScheduleID != "" {
		w.add("schedule_id = ?", q.ScheduleID)
	}
	if q.CreatedAfter != nil {
		w.add("created_at >= ?", q.CreatedAfter.UTC())
	}
	if q.CreatedBefore != nil {
		w.add("created_at < ?", q.CreatedBefore.UTC())
	}
	filters := w
	if len(statuses) > 0 {
		filters = w.with("status IN ?", statuses)
	}
	page := w
	if q.Cursor != "" {
		c, err := decodeCursor(q.Cursor, q.Sort)
		if err != nil {
			return Page{}, err
		}
		op := ">"
		if desc {
			op = "<"
		}
		page = w.with(fmt.Sprintf("(%s, id) %s (?, ?)", key, op), c.At.UTC(), c.ID)
	}

	dir := "ASC"
	if desc {
		dir = "DESC"
	}
	order := fmt.Sprintf("ORDER BY %s %s, id %s LIMIT %d", key, dir, dir, q.Limit+1)
	// The page's ids come first, from an index (often index-only); the rows
	// are read after, by primary key, for those ids alone.
	var (
		inner string
		args  []any
	)
	switch len(statuses) {
	case 0:
		inner, args = fmt.Sprintf("SELECT id FROM tasks WHERE %s %s", page.sql(), order), page.args
	case 1:
		one := page.with("status = ?", statuses[0])
		inner, args = fmt.Sprintf("SELECT id FROM tasks WHERE %s %s", one.sql(), order), one.args
	default:
		// One ordered index range per status, merged: each branch reads at
		// most a page from its (status, key, id) index.
		parts := make([]string, len(statuses))
		for i, st := range statuses {
			one := page.with("status = ?", st)
			parts[i] = fmt.Sprintf("(SELECT id, %s FROM tasks WHERE %s %s)", key, one.sql(), order)
			args = append(args, one.args...)
		}
		inner = fmt.Sprintf("SELECT id FROM (%s) u %s", strings.Join(parts, " UNION ALL "), order)
	}
	sql := fmt.Sprintf("SELECT %s FROM tasks WHERE id IN (%s) ORDER BY %s %s, id %s", listColumns, inner, key, dir, dir)
	rows := make([]store.Task, 0, q.Limit+1)
	if err := s.db.WithContext(ctx).Raw(sql, args...).Scan(&rows).Error; err != nil {
		return Page{}, translate("list tasks", err)
	}
	out := Page{Items: rows}
	if len(rows) > q.Limit {
		out.Items = rows[:q.Limit]
		last := out.Items[q.Limit-1]
		at := last.CreatedAt
		if key == sortScheduledFor {
			at = last.ScheduledFor
		}
		out.NextCursor = encodeCursor(cursor{Sort: q.Sort, At: at, ID: last.ID})
	}
	for i := range out.Items {
		out.Items[i].Params = RedactParams(out.Items[i].Type, out.Items[i].Params)
	}
	total, estimated, err := s.count(ctx, filters)
	if err != nil {
		return Page{}, err
	}
	out.Total, out.TotalIsEstimate = total, estimated
	return out, nil
}

// count answers a list's total. It asks the planner's estimate first (no
// scan); when that exceeds CountCap the estimate is the answer. Otherwise it
// counts exactly through a LIMITed subquery that stops at CountCap+1 rows,
// within CountTimeout: a filter PostgreSQL cannot count quickly (say, an owner
// and a type together, which no single index serves) falls back to the
// estimate rather than making the page slow. The second result reports an
// estimate.
func (s *Service) count(ctx context.Context, w where) (int64, bool, error) {
	est, err := s.estimate(ctx, w)
	if err != nil {
		return 0, false, err
	}
	if est > CountCap {
		return est, true, nil
	}
	var n int64
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(fmt.Sprintf("SET LOCAL statement_timeout = %d", max(1, s.opts.CountTimeout.Milliseconds()))).Error; err != nil {
			return err
		}
		return tx.Raw(fmt.Sprintf("SELECT count(*) FROM (SELECT 1 FROM tasks WHERE %s LIMIT %d) c", w.sql(), CountCap+1), w.args...).
			Scan(&n).Error
	})
	var pgErr *pgconn.PgError
	switch {
	case err != nil && errors.As(err, &pgErr) && pgErr.Code == queryCanceled && ctx.Err() == nil:
		return est, true, nil
	case err != nil:
		return 0, false, translate("count tasks", err)
	case n > CountCap:
		return max(n, est), true, nil
	}
	return n, false, nil
}

// queryCanceled is PostgreSQL's code for a statement_timeout.
const queryCanceled = "57014"

// estimate is the planner's row estimate for the rows matching w.
func (s *Service) estimate(ctx context.Context, w where) (int64, error) {
	var plan string
	err := s.db.WithContext(ctx).Raw(fmt.Sprintf("EXPLAIN (FORMAT JSON) SELECT 1 FROM tasks WHERE %s", w.sql()), w.args...).
		Row().Scan(&plan)
	if err != nil {
		return 0, translate("estimate tasks", err)
	}
	var parsed []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		} `json:"Plan"`
	}
	if err := json.Unmarshal([]byte(plan), &parsed); err != nil || len(parsed) == 0 {
		return 0, fmt.Errorf("taskservice: estimate tasks: unexpected plan %.100q", plan)
	}
	return int64(parsed[0].Plan.Rows), nil
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	out := make([]string, 0, len(in))
	for _, s := range in {
		s = strings.TrimSpace(s)
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// Get returns the task with id if p may see it, params redacted; otherwise
// ErrNotFound (also for tasks of other callers).
func (s *Service) Get(ctx context.Context, p auth.Principal, id string) (store.Task, error) {
	row, err := s.find(ctx, s.db, p, id)
	if err != nil {
		return row, err
	}
	row.Params = RedactParams(row.Type, row.Params)
	return row, nil
}

// find reads the row of a task p may see, params as stored.
func (s *Service) find(ctx context.Context, db *gorm.DB, p auth.Principal, id string) (store.Task, error) {
	var row store.Task
	if !strings.HasPrefix(id, "task_") || len(id) > maxTaskIDLength || (!p.IsAdmin() && p.ID == "") {
		return row, ErrNotFound
	}
	q := db.WithContext(ctx).Where("id = ?", id)
	if !p.IsAdmin() {
		q = q.Where("created_by = ?", p.ID)
	}
	if err := q.Take(&row).Error; err != nil {
		return row, translate("get task "+id, err)
	}
	return row, nil
}

// RedactParams returns params (as stored: JSON with proto field names) with
// every secret value of the type's message replaced by "***"
// (secret.RedactJSON, the one redaction of stored params). Params that do not
// parse come back as an empty object, never as they were.
func RedactParams(typ string, params store.JSON) store.JSON {
	return store.JSON(secret.RedactJSON(typ, json.RawMessage(params)))
}

// LogQuery selects a task's log lines.
type LogQuery struct {
	// Level keeps lines at this level or above (debug < info < warn < error).
	Level string
	// Attempt keeps the lines of one attempt when not nil.
	Attempt *int
	// Limit is the page size, 1..MaxListLimit. If zero, DefaultLogLimit.
	Limit int
	// Cursor is the NextCursor of the previous page.
	Cursor string
}

// LogMetrics are a task's timings.
type LogMetrics struct {
	// QueueWaitMs is the time from scheduled_for to the first start.
	QueueWaitMs *int64
	// RunMs is the time spent running, summed over attempts.
	RunMs *int64
	// TotalMs is the time from creation to the end (or to now, if running).
	TotalMs *int64
	// Retries counts attempts after the first.
	Retries int
}

// Logs are a task's log lines, attempts and timings.
type Logs struct {
	TaskID     string
	Lines      []store.TaskLog
	Attempts   []store.TaskAttempt
	Metrics    LogMetrics
	NextCursor string
}

var logLevels = []string{"debug", "info", "warn", "error"}

// Logs returns the log lines (oldest first), attempts and timings of a task p
// may see.
func (s *Service) Logs(ctx context.Context, p auth.Principal, id string, q LogQuery) (Logs, error) {
	if q.Limit == 0 {
		q.Limit = DefaultLogLimit
	}
	if q.Limit < 1 || q.Limit > MaxListLimit {
		return Logs{}, badQuery("limit", "must be between 1 and %d", MaxListLimit)
	}
	var levels []string
	if q.Level != "" {
		i := indexOf(logLevels, q.Level)
		if i < 0 {
			return Logs{}, badQuery("level", "must be debug, info, warn or error")
		}
		levels = logLevels[i:]
	}
	var after int64
	if q.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if err != nil || len(b) > 32 {
			return Logs{}, badQuery("cursor", "is not a cursor of this listing")
		}
		if _, err := fmt.Sscanf(string(b), "log:%d", &after); err != nil || after < 0 {
			return Logs{}, badQuery("cursor", "is not a cursor of this listing")
		}
	}
	row, err := s.find(ctx, s.db, p, id)
	if err != nil {
		return Logs{}, err
	}
	db := s.db.WithContext(ctx)
	lq := db.Where("task_id = ? AND id > ?", row.ID, after)
	if levels != nil {
		lq = lq.Where("level IN ?", levels)
	}
	if q.Attempt != nil {
		lq = lq.Where("attempt = ?", *q.Attempt)
	}
	lines := make([]store.TaskLog, 0, q.Limit+1)
	if err := lq.Order("id").Limit(q.Limit + 1).Find(&lines).Error; err != nil {
		return Logs{}, translate("task logs", err)
	}
	out := Logs{TaskID: row.ID, Lines: lines, Attempts: []store.TaskAttempt{}}
	if len(lines) > q.Limit {
		out.Lines = lines[:q.Limit]
		out.NextCursor = base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "log:%d", out.Lines[q.Limit-1].ID))
	}
	if err := db.Where("task_id = ?", row.ID).Order("attempt").Find(&out.Attempts).Error; err != nil {
		return Logs{}, translate("task attempts", err)
	}
	out.Metrics = metrics(row, out.Attempts)
	return out, nil
}

func metrics(row store.Task, attempts []store.TaskAttempt) LogMetrics {
	m := LogMetrics{QueueWaitMs: row.QueueWaitMs, Retries: max(0, row.Attempt-1)}
	if m.QueueWaitMs == nil && row.StartedAt != nil {
		w := max(0, row.StartedAt.Sub(row.ScheduledFor).Milliseconds())
		m.QueueWaitMs = &w
	}
	var run int64
	seen := false
	for _, a := range attempts {
		switch {
		case a.DurationMs != nil:
			run += *a.DurationMs
			seen = true
		case a.FinishedAt == nil && row.Status == tasks.StatusRunning:
			run += time.Since(a.StartedAt).Milliseconds()
			seen = true
		}
	}
	if !seen && row.DurationMs != nil {
		run, seen = *row.DurationMs, true
	}
	if seen {
		m.RunMs = &run
	}
	end := time.Now()
	if row.CompletedAt != nil {
		end = *row.CompletedAt
	}
	total := max(0, end.Sub(row.CreatedAt).Milliseconds())
	m.TotalMs = &total
	return m
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// QueueStats is one Asynq queue's state.
type QueueStats struct {
	Name      string
	Size      int
	Pending   int
	Running   int
	Scheduled int
	Retrying  int
	Dead      int
	// Latency is the age of the oldest pending task.
	Latency time.Duration
	Paused  bool
}

// Queues returns the state of the four priority queues; a queue Asynq has not
// seen yet is empty.
func (s *Service) Queues(ctx context.Context) ([]QueueStats, error) {
	known, err := s.inspector.Queues()
	if err != nil {
		return nil, fmt.Errorf("%w: redis: queues: %v", ErrUnavailable, err)
	}
	out := make([]QueueStats, 0, len(queue.Queues))
	for _, name := range queue.Queues {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		st := QueueStats{Name: name}
		if indexOf(known, name) >= 0 {
			info, err := s.inspector.GetQueueInfo(name)
			switch {
			case err != nil && strings.Contains(err.Error(), asynq.ErrQueueNotFound.Error()):
			case err != nil:
				return nil, fmt.Errorf("%w: redis: queue %s: %v", ErrUnavailable, name, err)
			default:
				st = QueueStats{Name: name, Size: info.Size, Pending: info.Pending, Running: info.Active,
					Scheduled: info.Scheduled, Retrying: info.Retry, Dead: info.Archived, Latency: info.Latency, Paused: info.Paused}
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// TypeStats are the figures of one task type (or of all, when Type is empty)
// over a window.
type TypeStats struct {
	Type      string
	Completed int64
	Failed    int64
	Cancelled int64
	// ThroughputPerMin is finished (completed or failed) tasks per minute.
	ThroughputPerMin float64
	// SuccessRate is completed / (completed + failed); nil when both are zero.
	SuccessRate *float64
	// AvgDurationMs and P95DurationMs cover completed runs; nil without any.
	AvgDurationMs *float64
	P95DurationMs *float64
}

// Stats are task figures over a window ending now.
type Stats struct {
	Window time.Duration
	From   time.Time
	To     time.Time
	Types  []TypeStats
	Total  TypeStats
}

// ParseWindow reads a stats window: a Go duration ("90m", "24h") or a number of
// days ("7d"), between a minute and MaxWindow. Empty means DefaultWindow.
func ParseWindow(s string) (time.Duration, error) {
	if s == "" {
		return DefaultWindow, nil
	}
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		if _, err := fmt.Sscanf(n, "%d", &days); err != nil || fmt.Sprint(days) != n {
			return 0, badQuery("window", "must be a duration such as 1h, 24h or 7d")
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, badQuery("window", "must be a duration such as 1h, 24h or 7d")
		}
	}
	if d < minWindow || d > MaxWindow {
		return 0, badQuery("window", "must be between 1m and 90d")
	}
	return d, nil
}

// Stats computes per-type throughput, success rate and durations of the tasks
// that finished within window, over the tasks p may see.
func (s *Service) Stats(ctx context.Context, p auth.Principal, window time.Duration) (Stats, error) {
	if window < minWindow || window > MaxWindow {
		return Stats{}, badQuery("window", "must be between 1m and 90d")
	}
	to := time.Now().UTC().Truncate(time.Microsecond)
	from := to.Add(-window)
	w := where{}
	w.add("completed_at >= ? AND completed_at <= ?", from, to)
	if !p.IsAdmin() {
		if p.ID == "" {
			return Stats{Window: window, From: from, To: to, Types: []TypeStats{}, Total: TypeStats{}}, nil
		}
		w.add("created_by = ?", p.ID)
	}
	type statRow struct {
		Type      *string
		Completed int64
		Failed    int64
		Cancelled int64
		AvgMs     *float64
		P95Ms     *float64
	}
	var rows []statRow
	err := s.db.WithContext(ctx).Raw(fmt.Sprintf(`
SELECT type,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed')    AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       avg(duration_ms) FILTER (WHERE status = 'completed' AND duration_ms IS NOT NULL) AS avg_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)
           FILTER (WHERE status = 'completed' AND duration_ms IS NOT NULL) AS p95_ms
FROM tasks
WHERE %s
GROUP BY GROUPING SETS ((type), ())
ORDER BY type NULLS LAST`, w.sql()), w.args...).Scan(&rows).Error
	if err != nil {
		return Stats{}, translate("stats", err)
	}
	out := Stats{Window: window, From: from, To: to, Types: []TypeStats{}, Total: TypeStats{}}
	minutes := window.Minutes()
	for _, r := range rows {
		ts := TypeStats{Completed: r.Completed, Failed: r.Failed, Cancelled: r.Cancelled,
			ThroughputPerMin: float64(r.Completed+r.Failed) / minutes, AvgDurationMs: r.AvgMs, P95DurationMs: r.P95Ms}
		if done := r.Completed + r.Failed; done > 0 {
			rate := float64(r.Completed) / float64(done)
			ts.SuccessRate = &rate
		}
		if r.Type == nil {
			out.Total = ts
			continue
		}
		ts.Type = *r.Type
		out.Types = append(out.Types, ts)
	}
	return out, nil
}
