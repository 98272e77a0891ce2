package taskservice

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// ListQuery selects and orders tasks.
type ListQuery struct {
	// Statuses keeps tasks in any of these states; empty keeps all.
	Statuses []string
	// Type and Priority keep tasks of that type or priority when not empty.
	Type     string
	Priority string
	// ScheduleID keeps the tasks fired by that schedule when not empty.
	ScheduleID string
	// TriggerID keeps the tasks created by that event trigger when not empty.
	TriggerID string
	// WorkflowID keeps the tasks of that workflow's steps when not empty.
	WorkflowID string
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
worker_id, cancel_requested, callback_url, schedule_id, fire_time, trigger_id, workflow_id, step_id, queue_wait_ms, duration_ms, version`

// queryList runs a page query (listColumns, "?" placeholders) and reads its
// rows. It is the list's hot path: GORM's reflective scan of a page of 50
// took about 40% of the API's CPU under scripts/bench/system-list.sh, and
// database/sql's conversion of every value most of the rest; pgx scans
// straight into the fields.
func (s *Service) queryList(ctx context.Context, query string, args []any) ([]store.Task, error) {
	out := make([]store.Task, 0, DefaultListLimit+1)
	err := store.WithPgx(ctx, s.db, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, numbered(query), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var t store.Task
			// The jsonb columns are read as their bytes ([]byte, store.JSON's
			// own type), not through store.JSON's sql.Scanner.
			if err := rows.Scan(&t.ID, &t.Type, &t.Status, &t.Priority, (*[]byte)(&t.Params), &t.KeyID, &t.CreatedBy, &t.IdempotencyKey, &t.RequestHash,
				&t.CreatedAt, &t.UpdatedAt, &t.ScheduledFor, &t.StartedAt, &t.CompletedAt, &t.Progress, &t.CurrentStep, (*[]byte)(&t.Messages), &t.Attempt,
				&t.RetryBase, &t.MaxRetries, (*[]byte)(&t.RetryPolicy), &t.TimeoutSeconds, &t.EstimatedDuration, &t.NextRetryAt, &t.ResultURL, (*[]byte)(&t.Error),
				&t.WorkerID, &t.CancelRequested, &t.CallbackURL, &t.ScheduleID, &t.FireTime, &t.TriggerID, &t.WorkflowID, &t.StepID, &t.QueueWaitMs, &t.DurationMs, &t.Version); err != nil {
				return err
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	return out, err
}

// numbered turns the "?" placeholders of query, as the where conditions
// write them (GORM's), into PostgreSQL's $1, $2, ... A list query holds no
// other question mark.
func numbered(query string) string {
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r != '?' {
			b.WriteRune(r)
			continue
		}
		n++
		b.WriteString("$" + strconv.Itoa(n))
	}
	return b.String()
}

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

	var (
		w  where
		eq []string // the columns w holds equal to a value, in this order
	)
	equal := func(col string, v any) {
		w.add(col+" = ?", v)
		eq = append(eq, col)
	}
	if !p.IsAdmin() {
		if p.ID == "" {
			return Page{Items: []store.Task{}}, nil
		}
		equal("created_by", p.ID)
	}
	if q.Type != "" {
		equal("type", q.Type)
	}
	if q.Priority != "" {
		equal("priority", q.Priority)
	}
	if q.ScheduleID != "" {
		equal("schedule_id", q.ScheduleID)
	}
	if q.TriggerID != "" {
		equal("trigger_id", q.TriggerID)
	}
	if q.WorkflowID != "" {
		equal("workflow_id", q.WorkflowID)
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
	if len(statuses) == 1 {
		eq = append(eq, "status")
	}
	if len(statuses) <= 1 && directIndexes[key+"|"+strings.Join(eq, ",")] {
		// One ordered range of an index that leads with the filter's
		// columns and then the sort key: the page's rows are read from it
		// directly.
		one := page
		if len(statuses) == 1 {
			one = page.with("status = ?", statuses[0])
		}
		sql := fmt.Sprintf("SELECT %s FROM tasks WHERE %s %s", listColumns, one.sql(), order)
		rows, err := s.queryList(ctx, sql, one.args)
		if err != nil {
			return Page{}, translate("list tasks", err)
		}
		return s.finishPage(ctx, rows, q, key, filters)
	}
	// Otherwise the page's ids come first, from an index (index-only where
	// it carries the filter's columns, as the owner's covering index does);
	// the rows are read after, by primary key, for those ids alone, so that
	// rows the filter refuses are never visited.
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
	rows, err := s.queryList(ctx, sql, args)
	if err != nil {
		return Page{}, translate("list tasks", err)
	}
	return s.finishPage(ctx, rows, q, key, filters)
}

// directIndexes are the (sort key | equality columns) a tasks index serves as
// one ordered range: it leads with those columns, then the key and id
// (pkg/store/migrations 00001 and 00015). A page of such a filter is read
// straight from the index: 51 rows cost a few buffers, where reading ids
// first and then each row by primary key costs 51 index descents (about
// 200 buffers, twice the page's CPU in PostgreSQL).
var directIndexes = map[string]bool{
	"created_at|": true, "created_at|status": true, "created_at|type": true, "created_at|priority": true,
	"created_at|created_by": true, "created_at|created_by,status": true, "created_at|trigger_id": true,
	"scheduled_for|": true, "scheduled_for|status": true,
}

// finishPage makes the page of rows (at most q.Limit+1): its cursor, the
// params redacted, the total of filters.
func (s *Service) finishPage(ctx context.Context, rows []store.Task, q ListQuery, key string, filters where) (Page, error) {
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
// estimate. An estimate is reused for TotalTTL (see totals).
func (s *Service) count(ctx context.Context, w where) (int64, bool, error) {
	key, now := w.key(), time.Now()
	if n, ok := s.totals.get(key, now); ok {
		return n, true, nil
	}
	est, err := s.estimate(ctx, w)
	if err != nil {
		return 0, false, err
	}
	if est > CountCap {
		s.totals.put(key, est, now)
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
