package auth

import (
	"fmt"
	"strings"
)

// priorityRank orders the queue priorities, most urgent highest. An unknown
// priority ranks 0.
func priorityRank(p string) int {
	switch p {
	case "low":
		return 1
	case "normal":
		return 2
	case "high":
		return 3
	case "critical":
		return 4
	}
	return 0
}

// DefaultMaxPriority is the most urgent priority each role may give a task
// when auth.max_priority does not say: critical, the queue of the
// scheduler's fire jobs (strictly first by default), is for admins only, so
// that no operator can starve everyone and delay the schedules.
var DefaultMaxPriority = map[string]string{"viewer": "low", "operator": "high", "admin": "critical"}

// PriorityPolicy holds the most urgent priority per role.
type PriorityPolicy struct {
	max map[Role]string
}

// NewPriorityPolicy reads role → most urgent priority (auth.max_priority). A
// role the map leaves out falls back to DefaultMaxPriority; an unknown role
// or priority is an error naming it.
func NewPriorityPolicy(max map[string]string) (PriorityPolicy, error) {
	pp := PriorityPolicy{max: map[Role]string{}}
	for r, p := range DefaultMaxPriority {
		pp.max[Role(r)] = p
	}
	for r, p := range max {
		role := Role(strings.ToLower(r))
		if !role.Valid() {
			return PriorityPolicy{}, fmt.Errorf("auth: max_priority.%s: unknown role", r)
		}
		if priorityRank(p) == 0 {
			return PriorityPolicy{}, fmt.Errorf("auth: max_priority.%s = %q: must be critical, high, normal or low", r, p)
		}
		pp.max[role] = p
	}
	return pp, nil
}

// Allows reports whether p may give a task the priority (an unknown priority
// is allowed here: validation refuses it with 422 naming the field).
func (pp PriorityPolicy) Allows(p Principal, priority string) bool {
	rank := priorityRank(priority)
	if rank == 0 {
		return true
	}
	max, ok := pp.max[p.Role]
	if !ok {
		max = DefaultMaxPriority[string(p.Role)]
	}
	return rank <= priorityRank(max)
}

// Max is the most urgent priority p's role may use ("" for an unknown role).
func (pp PriorityPolicy) Max(p Principal) string {
	if max, ok := pp.max[p.Role]; ok {
		return max
	}
	return DefaultMaxPriority[string(p.Role)]
}
