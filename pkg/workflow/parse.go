package workflow

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/taskforge/taskforge/pkg/tasks"
)

// ParseSteps decodes a JSON array of steps (as POST /api/v1/workflows and a
// schedule's workflow take them), naming every wrong field under prefix
// ("steps" → steps[1].depends_on). A step has id, depends_on, params_from
// and its task's type, params, priority, retry_policy and timeout_seconds (a
// step's task is created when it is ready, so it has no scheduled_for,
// callback or idempotency key of its own).
func ParseSteps(raw json.RawMessage, prefix string) ([]Step, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, tasks.Invalid(prefix, "must be an array of step objects")
	}
	var errs []tasks.FieldError
	bad := func(field, msg string) { errs = append(errs, tasks.FieldError{Field: field, Message: msg}) }
	steps := make([]Step, 0, len(items))
	for i, item := range items {
		at := fmt.Sprintf("%s[%d]", prefix, i)
		var fields map[string]json.RawMessage
		if json.Unmarshal(item, &fields) != nil || fields == nil {
			bad(at, "must be an object")
			continue
		}
		var st Step
		var policy json.RawMessage
		for name, v := range fields {
			f := at + "." + name
			var err error
			switch name {
			case "id":
				err = json.Unmarshal(v, &st.ID)
			case "depends_on":
				err = json.Unmarshal(v, &st.DependsOn)
			case "params_from":
				err = json.Unmarshal(v, &st.ParamsFrom)
			case "type":
				err = json.Unmarshal(v, &st.Task.Type)
			case "params":
				st.Task.Params = v
			case "priority":
				err = json.Unmarshal(v, &st.Task.Priority)
			case "retry_policy":
				policy = v
			case "timeout_seconds":
				var n int
				if err = json.Unmarshal(v, &n); err == nil {
					st.Task.TimeoutSeconds = &n
				}
			default:
				bad(f, "unknown field (a step has id, depends_on, params_from, type, params, priority, retry_policy and timeout_seconds)")
				continue
			}
			if err != nil {
				bad(f, stepFieldKinds[name])
			}
		}
		if policy != nil && string(policy) != "null" {
			base := tasks.DefaultRetry
			if spec, ok := tasks.Lookup(st.Task.Type); ok {
				base = spec.Retry
			}
			p, perrs := tasks.OverlayRetryPolicy(policy, base)
			for _, fe := range perrs {
				bad(at+"."+fe.Field, fe.Message)
			}
			st.Task.RetryPolicy = &p
		}
		steps = append(steps, st)
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Field < errs[j].Field })
		return nil, &tasks.ValidationError{Errors: errs}
	}
	return steps, nil
}

var stepFieldKinds = map[string]string{
	"id": "must be a string", "type": "must be a string", "priority": "must be a string",
	"depends_on":      "must be an array of step ids",
	"params_from":     "must map param names to JSON Pointers (strings)",
	"timeout_seconds": "must be an integer",
}

// ParseBody decodes and checks a workflow kept by a schedule or a trigger,
// {"steps": [...]}, naming fields under "workflow" (CheckSteps' rules;
// fromEvent lets params_from point into the event). It returns the body to
// keep, normalised to its steps alone.
func ParseBody(raw json.RawMessage, fromEvent bool) (json.RawMessage, []tasks.FieldError) {
	var body map[string]json.RawMessage
	if err := json.Unmarshal(raw, &body); err != nil || body == nil {
		return nil, []tasks.FieldError{{Field: "workflow", Message: `must be an object: {"steps": [...]}`}}
	}
	var errs []tasks.FieldError
	for k := range body {
		if k != "steps" {
			errs = append(errs, tasks.FieldError{Field: "workflow." + k, Message: "unknown field"})
		}
	}
	steps, err := ParseSteps(body["steps"], "workflow.steps")
	if v, ok := tasks.AsValidation(err); ok {
		return nil, append(errs, v.Errors...)
	}
	errs = append(errs, CheckSteps(steps, DefaultMaxSteps, "workflow.steps", fromEvent)...)
	if len(errs) > 0 {
		return nil, errs
	}
	b, err := json.Marshal(map[string]json.RawMessage{"steps": body["steps"]})
	if err != nil {
		return nil, []tasks.FieldError{{Field: "workflow", Message: err.Error()}}
	}
	return b, nil
}
