package taskservice

import (
	"context"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

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
