package worker

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/queue"
)

// cancelRequested reads the cancel_requested flag of a's task.
func (r *Runtime) cancelRequested(a attempt) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var flag bool
	if err := r.db.QueryRowContext(ctx, `SELECT cancel_requested FROM tasks WHERE id = $1`, a.id).Scan(&flag); err != nil {
		r.log.Warn("cancel flag not read", a.fields(zap.Error(err))...)
		return false
	}
	return flag
}

// removeFromAsynq deletes a cancelled task from Asynq once its processor has
// moved it out of the active set (to retry or, on the last delivery, to the
// archive): a cancelled task must not stay a dead letter.
func (r *Runtime) removeFromAsynq(a attempt) {
	qname, id := a.queue, a.id
	if qname == "" {
		return
	}
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		for i := 0; i < 50; i++ {
			got, err := queue.Remove(r.inspector, qname, id)
			if err != nil {
				r.log.Warn("cancelled task not removed from the queue; its next delivery will be revoked", a.fields(zap.Error(err))...)
				return
			}
			if got != queue.Active {
				return
			}
			select {
			case <-time.After(100 * time.Millisecond):
			case <-r.stop:
				if i > 20 {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
}

func (r *Runtime) track(id string, t *activeTask) {
	if t.started.IsZero() {
		t.started = time.Now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active[id] = t
}

func (r *Runtime) untrack(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.active, id)
}

// pollCancels reads cancel_requested for every lifecycle task running in this
// process, in one query a tick, and cancels the handlers of flagged ones: a
// cancel sent while no worker listened to Asynq's pub/sub still takes effect.
// It also refreshes the over-timeout and oldest-running gauges.
func (r *Runtime) pollCancels() {
	defer r.bg.Done()
	t := time.NewTicker(r.opts.CancelPollInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		var ids []string
		over := map[string]int{}
		oldest := map[string]time.Duration{}
		r.mu.Lock()
		for id, a := range r.active {
			if a.lifecycle {
				ids = append(ids, id)
			}
			if age := now.Sub(a.started); age > oldest[a.typ] {
				oldest[a.typ] = age
			}
			if !a.deadline.IsZero() && now.After(a.deadline) {
				over[a.typ]++
			}
		}
		for typ, n := range r.stuck {
			over[typ] += n
		}
		r.mu.Unlock()
		r.metrics.overTimeout.Reset()
		for typ, n := range over {
			r.metrics.overTimeout.WithLabelValues(typ).Set(float64(n))
		}
		r.metrics.oldestRunning.Reset()
		for typ, age := range oldest {
			r.metrics.oldestRunning.WithLabelValues(typ).Set(age.Seconds())
		}
		if len(ids) == 0 {
			continue
		}
		flagged, err := r.flagged(ids)
		if err != nil {
			r.log.Warn("cancel flags not read", zap.Error(err))
			continue
		}
		r.mu.Lock()
		for _, id := range flagged {
			if a := r.active[id]; a != nil {
				a.cancel(errCancelRequested)
			}
		}
		r.mu.Unlock()
	}
}

func (r *Runtime) flagged(ids []string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows, err := r.db.QueryContext(ctx, `SELECT id FROM tasks WHERE id = ANY($1) AND cancel_requested`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
