package taskservice

import (
	"context"

	"github.com/taskforge/taskforge/pkg/lifecycle"
	"github.com/taskforge/taskforge/pkg/store"
)

// Publisher receives the events of committed changes of task rows
// (*event.Publisher); the lifecycle publishes them.
type Publisher = lifecycle.Publisher

// ResultForgetter drops cached results of tasks (*result.Store).
type ResultForgetter interface {
	Forget(ctx context.Context, ids ...string) error
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
