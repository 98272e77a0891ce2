package taskservice

import (
	"context"

	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/store"
)

// Publisher receives the events of committed changes of task rows
// (*event.Publisher); Publish must not block.
type Publisher interface {
	Publish(evs ...event.Event)
}

// Changed is the event of a committed change of row.
func Changed(row store.Task) event.Event { return event.Task(row.ID, row.Version, row.Status) }

// publish tells the live event streams that rows changed; call it after the
// change committed.
func (s *Service) publish(rows ...store.Task) {
	if s.opts.Events == nil || len(rows) == 0 {
		return
	}
	evs := make([]event.Event, len(rows))
	for i, r := range rows {
		evs[i] = Changed(r)
	}
	s.opts.Events.Publish(evs...)
}

// Load reads the rows of ids that exist, params redacted, whoever owns them:
// the live event streams render them after their own authorization.
func (s *Service) Load(ctx context.Context, ids []string) (map[string]store.Task, error) {
	out := make(map[string]store.Task, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	var rows []store.Task
	if err := s.db.WithContext(ctx).Where("id IN ?", ids).Find(&rows).Error; err != nil {
		return nil, translate("load tasks", err)
	}
	for _, r := range rows {
		r.Params = RedactParams(r.Type, r.Params)
		out[r.ID] = r
	}
	return out, nil
}
