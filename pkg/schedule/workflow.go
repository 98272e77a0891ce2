package schedule

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/workflow"
)

// A schedule that starts a workflow keeps its steps in row.Workflow as
// {"steps": [...]}; each step's params are sealed, opened and redacted like
// a task schedule's params, by the step's type.

// mapSteps rewrites the params of every step of raw with f(type, params).
func mapSteps(raw store.JSON, f func(typ string, params json.RawMessage) (json.RawMessage, error)) (store.JSON, error) {
	var body struct {
		Steps []map[string]json.RawMessage `json:"steps"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, fmt.Errorf("schedule: stored workflow: %w", err)
	}
	for i, st := range body.Steps {
		var typ string
		_ = json.Unmarshal(st["type"], &typ)
		p, err := f(typ, st["params"])
		if err != nil {
			return nil, err
		}
		if p != nil {
			body.Steps[i]["params"] = p
		}
	}
	b, err := json.Marshal(body)
	return store.JSON(b), err
}

// sealSteps seals every step's secret params exactly once (opening those a
// patch kept sealed first).
func sealSteps(keys Keyring, raw store.JSON) (store.JSON, error) {
	return mapSteps(raw, func(typ string, params json.RawMessage) (json.RawMessage, error) {
		msg, err := openStepParams(keys, typ, params)
		if err != nil {
			return nil, err
		}
		if _, err := keys.Seal(msg); err != nil {
			return nil, fmt.Errorf("schedule: seal params: %w", err)
		}
		return tasks.ParamsJSON(msg)
	})
}

// openStepParams decodes a step's stored params with their secrets opened.
func openStepParams(keys Keyring, typ string, params json.RawMessage) (proto.Message, error) {
	spec, ok := tasks.Lookup(typ)
	if !ok {
		return nil, tasks.Invalid("workflow.steps", "unknown task type %q", typ)
	}
	msg, err := storedParams(spec, store.JSON(params))
	if err != nil {
		return nil, tasks.Invalid("workflow.steps", "the stored params of a %s step cannot be read", typ)
	}
	if err := keys.Open(msg); err != nil {
		// The message names the field, never its value.
		return nil, tasks.Invalid("workflow.steps", "a stored secret cannot be decrypted: %v", err)
	}
	return msg, nil
}

// redactSteps is raw with every step's secret params masked, for reading.
func redactSteps(raw store.JSON) json.RawMessage {
	out, err := mapSteps(raw, func(typ string, params json.RawMessage) (json.RawMessage, error) {
		if params == nil {
			return nil, nil
		}
		return redact(typ, store.JSON(params)), nil
	})
	if err != nil {
		return json.RawMessage(`{"steps":[]}`)
	}
	return json.RawMessage(out)
}

// definition is the workflow a fire of row starts: its steps with their
// secrets opened (the workflow service seals them again).
func definition(keys Keyring, row store.Schedule) (workflow.Definition, error) {
	raw := row.Workflow
	if keys != nil {
		var err error
		if raw, err = mapSteps(raw, func(typ string, params json.RawMessage) (json.RawMessage, error) {
			msg, err := openStepParams(keys, typ, params)
			if err != nil {
				return nil, err
			}
			return tasks.ParamsJSON(msg)
		}); err != nil {
			return workflow.Definition{}, err
		}
	}
	var body struct {
		Steps json.RawMessage `json:"steps"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return workflow.Definition{}, fmt.Errorf("schedule: stored workflow: %w", err)
	}
	steps, err := workflow.ParseSteps(body.Steps, "workflow.steps")
	if err != nil {
		return workflow.Definition{}, err
	}
	return workflow.Definition{Name: row.Name, Steps: steps}, nil
}
