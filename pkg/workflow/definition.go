// Package workflow runs workflows: a named DAG of steps, each a task created
// through the one creation path (pkg/taskservice) once every step it depends
// on has completed.
//
// The decision is durable where the dependency ends: a step task's terminal
// transition (and its return to pending by a manual retry) writes a
// workflow_wakeups row in the same transaction, by a trigger on tasks
// (migration 00016), and NOTIFYs the advancers. An advance locks the
// workflow's row, derives every step's state from its task (or, without one,
// from its dependencies), creates the ready steps' tasks (unique per workflow
// and step, so a crash between creation and commit never makes a second one),
// fails the steps whose params cannot be resolved, sets the workflow's status
// and removes the wakeups it served, all in one transaction. The scheduler
// advances on every notification and sweeps the wakeups left by a crash.
package workflow

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

// Statuses of a workflow. A step's status is its task's (pending until the
// task exists; cancelled, without a task, when a dependency failed or was
// cancelled or the workflow was cancelled; failed, without a task, when its
// params could not be resolved).
const (
	StatusPending   = "pending"
	StatusRunning   = "running"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// DefaultMaxSteps is the most steps a workflow may have unless configured.
const DefaultMaxSteps = 100

// Step is one step of a workflow as asked for.
type Step struct {
	ID string
	// Task is the step's task: Type, Params, Priority, RetryPolicy and
	// TimeoutSeconds are used.
	Task      taskservice.CreateRequest
	DependsOn []string
	// ParamsFrom takes params from completed dependencies' results: param
	// name → JSON Pointer (RFC 6901) into {"steps": {"<id>": {"result": …}}},
	// resolved when the step's task is created.
	ParamsFrom map[string]string
}

// Definition is a workflow as asked for.
type Definition struct {
	Name  string
	Steps []Step
	// FromEvent lets ParamsFrom point into the event that starts the
	// workflow too (/event/…): a trigger's workflows.
	FromEvent bool
}

var stepIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Validate checks the graph: a name, one to maxSteps steps with unique
// well-formed ids, dependencies that exist (not the step itself), no cycle,
// and ParamsFrom pointers into the result of a step the step depends on
// (directly or not). It returns the steps in an order where each comes after
// its dependencies. Field errors name the step: steps[2].depends_on[0].
func (d Definition) Validate(maxSteps int) ([]Step, []tasks.FieldError) {
	var errs []tasks.FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, tasks.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if strings.TrimSpace(d.Name) == "" {
		bad("name", "is required")
	} else if len(d.Name) > 200 {
		bad("name", "must be at most 200 characters")
	}
	switch {
	case len(d.Steps) == 0:
		bad("steps", "must have at least one step")
		return nil, errs
	case len(d.Steps) > maxSteps:
		bad("steps", "must have at most %d steps", maxSteps)
		return nil, errs
	}
	index := make(map[string]int, len(d.Steps))
	for i, s := range d.Steps {
		f := fmt.Sprintf("steps[%d].id", i)
		switch _, dup := index[s.ID]; {
		case s.ID == "":
			bad(f, "is required")
		case !stepIDPattern.MatchString(s.ID):
			bad(f, "must be 1 to 63 lower-case letters, digits, '_' or '-', starting with a letter or digit")
		case dup:
			bad(f, "repeats the id of steps[%d]", index[s.ID])
		default:
			index[s.ID] = i
		}
	}
	for i, s := range d.Steps {
		seen := map[string]bool{}
		for j, dep := range s.DependsOn {
			f := fmt.Sprintf("steps[%d].depends_on[%d]", i, j)
			switch _, ok := index[dep]; {
			case dep == s.ID:
				bad(f, "a step cannot depend on itself")
			case !ok:
				bad(f, "names no step of this workflow: %q", dep)
			case seen[dep]:
				bad(f, "repeats %q", dep)
			}
			seen[dep] = true
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	order, cycle := topological(d.Steps, index)
	if cycle != nil {
		bad(fmt.Sprintf("steps[%d].depends_on", index[cycle[0]]), "forms a cycle: %s", strings.Join(append(cycle, cycle[0]), " → "))
		return nil, errs
	}
	ancestors := ancestorSets(order)
	for i, s := range d.Steps {
		for name, ptr := range s.ParamsFrom {
			f := fmt.Sprintf("steps[%d].params_from.%s", i, name)
			if d.FromEvent && (ptr == "/event" || strings.HasPrefix(ptr, "/event/")) {
				if _, err := splitPointer(ptr); err != nil {
					bad(f, "%v", err)
				}
				continue
			}
			dep, err := pointerStep(ptr)
			switch {
			case name == "" || strings.ContainsAny(name, "/.~"):
				bad(f, "must name a top-level param")
			case err != nil:
				bad(f, "%v", err)
			case !ancestors[s.ID][dep]:
				bad(f, "points into the result of %q, which this step does not depend on", dep)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return order, nil
}

// topological orders steps so that each comes after its dependencies
// (Kahn's algorithm, stable in the given order); on a cycle it returns the
// ids of one.
func topological(steps []Step, index map[string]int) ([]Step, []string) {
	indegree := make([]int, len(steps))
	dependents := make([][]int, len(steps))
	for i, s := range steps {
		for _, dep := range s.DependsOn {
			indegree[i]++
			dependents[index[dep]] = append(dependents[index[dep]], i)
		}
	}
	var queue []int
	for i := range steps {
		if indegree[i] == 0 {
			queue = append(queue, i)
		}
	}
	order := make([]Step, 0, len(steps))
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		order = append(order, steps[i])
		for _, j := range dependents[i] {
			if indegree[j]--; indegree[j] == 0 {
				queue = append(queue, j)
			}
		}
	}
	if len(order) == len(steps) {
		return order, nil
	}
	// Every step left is on a cycle or behind one: walk dependencies from
	// one of them until a step repeats.
	left := map[string]bool{}
	for i, s := range steps {
		if indegree[i] > 0 {
			left[s.ID] = true
		}
	}
	var start string
	for i := range steps {
		if indegree[i] > 0 {
			start = steps[i].ID
			break
		}
	}
	pos := map[string]int{}
	var path []string
	for id := start; ; {
		if p, ok := pos[id]; ok {
			return nil, path[p:]
		}
		pos[id] = len(path)
		path = append(path, id)
		for _, dep := range steps[index[id]].DependsOn {
			if left[dep] {
				id = dep
				break
			}
		}
	}
}

// ancestorSets maps each step of order (dependencies first) to every step it
// depends on, directly or not.
func ancestorSets(order []Step) map[string]map[string]bool {
	out := make(map[string]map[string]bool, len(order))
	for _, s := range order {
		set := map[string]bool{}
		for _, dep := range s.DependsOn {
			set[dep] = true
			for a := range out[dep] {
				set[a] = true
			}
		}
		out[s.ID] = set
	}
	return out
}

// pointerStep checks that ptr points into a step's result
// (/steps/<id>/result…) and returns the step's id.
func pointerStep(ptr string) (string, error) {
	parts, err := splitPointer(ptr)
	if err != nil {
		return "", err
	}
	if len(parts) < 3 || parts[0] != "steps" || parts[2] != "result" {
		return "", fmt.Errorf("must point into a step's result: /steps/<step id>/result/…, not %q", ptr)
	}
	return parts[1], nil
}

// splitPointer splits a JSON Pointer (RFC 6901) into its unescaped tokens.
func splitPointer(ptr string) ([]string, error) {
	if ptr == "" || ptr[0] != '/' {
		return nil, fmt.Errorf("must be a JSON Pointer starting with '/', not %q", ptr)
	}
	parts := strings.Split(ptr[1:], "/")
	for i, p := range parts {
		if strings.Contains(strings.ReplaceAll(strings.ReplaceAll(p, "~0", ""), "~1", ""), "~") {
			return nil, fmt.Errorf("has a bad escape in %q", p)
		}
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

// resolve returns the value ptr points at in doc, or an error saying where it
// stopped.
func resolve(doc any, ptr string) (any, error) {
	parts, err := splitPointer(ptr)
	if err != nil {
		return nil, err
	}
	cur := doc
	for i, p := range parts {
		at := "/" + strings.Join(parts[:i], "/")
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[p]
			if !ok {
				return nil, fmt.Errorf("%s has no member %q", at, p)
			}
			cur = next
		case []any:
			var n int
			if _, err := fmt.Sscanf(p, "%d", &n); err != nil || fmt.Sprint(n) != p || n < 0 || n >= len(v) {
				return nil, fmt.Errorf("%s has no element %q (length %d)", at, p, len(v))
			}
			cur = v[n]
		default:
			return nil, fmt.Errorf("%s is not an object or an array", at)
		}
	}
	return cur, nil
}

// mergeParams sets the top-level params values (name → value) in params (a
// JSON object, or empty).
func mergeParams(params json.RawMessage, values map[string]any) (json.RawMessage, error) {
	obj := map[string]any{}
	if len(params) > 0 && string(params) != "null" {
		if err := json.Unmarshal(params, &obj); err != nil {
			return nil, fmt.Errorf("params are not a JSON object: %w", err)
		}
	}
	for k, v := range values {
		obj[k] = v
	}
	return json.Marshal(obj)
}

// CheckSteps checks steps as a schedule keeps them for its fires: the graph
// (Validate's rules, field names under prefix) and each step's type and
// params, params taken from a dependency's result aside. What only the task
// service knows (URL and recipient policies) is checked when a fire creates
// the workflow.
func CheckSteps(steps []Step, maxSteps int, prefix string, fromEvent bool) []tasks.FieldError {
	_, errs := Definition{Name: "-", Steps: steps, FromEvent: fromEvent}.Validate(maxSteps)
	for i := range errs {
		errs[i].Field = prefix + strings.TrimPrefix(errs[i].Field, "steps")
	}
	if len(errs) > 0 {
		return errs
	}
	for i, st := range steps {
		at := fmt.Sprintf("%s[%d]", prefix, i)
		spec, ok := tasks.Lookup(st.Task.Type)
		if !ok {
			errs = append(errs, tasks.FieldError{Field: at + ".type", Message: fmt.Sprintf("unknown task type %q", st.Task.Type)})
			continue
		}
		_, err := tasks.DecodeParams(spec, st.Task.Params, "params")
		if v, ok := tasks.AsValidation(err); ok {
			for _, fe := range v.Errors {
				if _, from := st.ParamsFrom[strings.TrimPrefix(fe.Field, "params.")]; !from {
					errs = append(errs, tasks.FieldError{Field: at + "." + fe.Field, Message: fe.Message})
				}
			}
		}
	}
	return errs
}
