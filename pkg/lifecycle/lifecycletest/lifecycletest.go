// Package lifecycletest runs the worker's lifecycle statements in tests that
// race them against the task service and the reconciler.
package lifecycletest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/lifecycle"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// RunAttempt runs attempt 1 of task id with the worker's production
// statements (lifecycle.StartAttempts, then lifecycle.Finish with outcome,
// which is completed or failed), each sent as one flush of the worker's
// writer sends it; it does nothing more when the start is refused or turns
// into the cancel.
func RunAttempt(ctx context.Context, lc *lifecycle.Lifecycle, conn *pgx.Conn, id string, outcome tasks.Status) error {
	started := false
	start := lifecycle.StartAttempts([]lifecycle.Start{{ID: id, Worker: "w1", Attempt: 1, At: time.Now().UTC()}},
		func(s lifecycle.Started) { started = !s.Cancelled })
	if err := lc.Send(ctx, conn, start); err != nil || !started {
		return err
	}
	o := lifecycle.Outcome{ID: id, Attempt: 1, Status: outcome, At: time.Now().UTC(), DurationMs: 1, Outcome: outcome}
	if outcome == tasks.StatusCompleted {
		o.Result = []byte(`{"ok":true}`)
	} else {
		o.Error = []byte(`{"message":"boom","kind":"error","attempt":1}`)
	}
	return lc.Send(ctx, conn, lifecycle.Finish([]lifecycle.Outcome{o}, func(lifecycle.Moved) {}))
}

// Force puts task id's row in a state for a test by assigning set (SQL, with
// GORM ? placeholders for args), outside the state machine: the arrange step
// of a test, never a transition.
func Force(db *gorm.DB, id, set string, args ...any) error {
	res := db.Exec("UPDATE tasks SET "+set+" WHERE id = ?", append(args, id)...)
	if res.Error != nil {
		return fmt.Errorf("lifecycletest: force %s: %w", id, res.Error)
	}
	if res.RowsAffected != 1 {
		return fmt.Errorf("lifecycletest: force %s: no such task", id)
	}
	return nil
}

// Recorder is a lifecycle.Publisher that keeps what it is given.
type Recorder struct {
	mu  sync.Mutex
	evs []event.Event
}

// Publish implements lifecycle.Publisher.
func (r *Recorder) Publish(evs ...event.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, evs...)
}

// Events returns what was published so far, of task id only when id is not
// empty.
func (r *Recorder) Events(id string) []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event.Event
	for _, e := range r.evs {
		if id == "" || e.TaskID == id {
			out = append(out, e)
		}
	}
	return out
}

// Reset forgets what was published.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = nil
}
