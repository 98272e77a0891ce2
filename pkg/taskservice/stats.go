package taskservice

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/queue"
)

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

// ErrUnknownQueue means a queue name is not one of the priority queues.
var ErrUnknownQueue = errors.New("unknown queue")

// SetQueuePaused pauses (paused true) or resumes one priority queue and
// returns its state afterwards. Workers stop taking tasks from a paused queue;
// tasks already running finish, and new tasks are still accepted and wait.
// Pausing a paused queue, or resuming a running one, changes nothing and is not
// an error. The caller decides who may do it.
func (s *Service) SetQueuePaused(ctx context.Context, name string, paused bool) (QueueStats, error) {
	if indexOf(queue.Queues, name) < 0 {
		return QueueStats{}, fmt.Errorf("%w: %q", ErrUnknownQueue, name)
	}
	var err error
	if paused {
		err = s.inspector.PauseQueue(name)
	} else {
		err = s.inspector.UnpauseQueue(name)
	}
	// Asynq refuses a pause of a paused queue and a resume of a running one;
	// for the caller both already hold.
	if err != nil && !strings.Contains(err.Error(), "already paused") && !strings.Contains(err.Error(), "is not paused") {
		return QueueStats{}, fmt.Errorf("%w: redis: pause queue %s: %v", ErrUnavailable, name, err)
	}
	qs, err := s.Queues(ctx)
	if err != nil {
		return QueueStats{}, err
	}
	return qs[indexOf(queue.Queues, name)], nil
}
