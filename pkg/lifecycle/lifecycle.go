// Package lifecycle owns the transitions of a task row: every statement that
// changes a row of tasks is here, each conditional update takes its allowed
// current states from the state machine (tasks.From), so the rule is declared
// once (pkg/tasks) and enforced here; a terminal transition queues the task's
// completion callback (task_callbacks) in the same statement; and every change
// that commits is published (pkg/event) here, after its commit, so no caller
// can forget either.
//
// The task service and the reconciler call a Lifecycle's row transitions
// (Cancel, RequestCancel, Retry, Lose); the worker's state writer sends its
// flushes of Statements (Check, Start, Progress, Logs, Combined, Finish) with
// Send, and calls FailUnstarted and Unrecorded.
package lifecycle

import (
	"database/sql"
	"fmt"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/store"
)

// Publisher receives the events of committed changes of task rows
// (*event.Publisher); Publish must not block.
type Publisher interface {
	Publish(evs ...event.Event)
}

// Lifecycle runs the transitions of task rows on one database and publishes
// each change that commits. It is safe for concurrent use.
type Lifecycle struct {
	db     *gorm.DB
	sqlDB  *sql.DB
	events Publisher
}

// New returns the lifecycle of the task rows of db; events (may be nil)
// receives the change of every transition that commits.
func New(db *gorm.DB, events Publisher) (*Lifecycle, error) {
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("lifecycle: %w", err)
	}
	return &Lifecycle{db: db, sqlDB: sqlDB, events: events}, nil
}

// Changed is the event of a committed change of row.
func Changed(row store.Task) event.Event { return event.Task(row.ID, row.Version, row.Status) }

// Publish hands events of committed changes to the publisher. The lifecycle's
// own transitions call it; the task service calls it for the rows it
// inserts, the one change of a task row that is not a transition.
func (l *Lifecycle) Publish(evs ...event.Event) {
	if l.events != nil && len(evs) > 0 {
		l.events.Publish(evs...)
	}
}

// Publishers hands every change to each of its publishers in turn (e.g. the
// live event streams and the result cache).
type Publishers []Publisher

// Publish implements Publisher.
func (ps Publishers) Publish(evs ...event.Event) {
	for _, p := range ps {
		if p != nil {
			p.Publish(evs...)
		}
	}
}
