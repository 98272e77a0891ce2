package schedule

import (
	"encoding/json"

	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// Redacted replaces the value of a secret param in API responses.
const Redacted = "[redacted]"

// redact returns params with the type's secret fields masked. A schedule keeps
// its params in PostgreSQL to create each fire's task (the task service seals
// them then); they are never shown back.
func redact(spec tasks.Spec, params store.JSON) json.RawMessage {
	if len(params) == 0 {
		return json.RawMessage("{}")
	}
	if spec.NewParams == nil {
		return json.RawMessage(params)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(params, &m); err != nil {
		return json.RawMessage("{}")
	}
	fields := spec.NewParams().ProtoReflect().Descriptor().Fields()
	masked := false
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !tasks.IsSecret(fd) {
			continue
		}
		for _, name := range []string{string(fd.Name()), fd.JSONName()} {
			if _, ok := m[name]; ok {
				m[name] = json.RawMessage(`"` + Redacted + `"`)
				masked = true
			}
		}
	}
	if !masked {
		return json.RawMessage(params)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return json.RawMessage("{}")
	}
	return b
}
