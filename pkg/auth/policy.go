package auth

import (
	"errors"

	"github.com/taskforge/taskforge/pkg/tasks"
)

// ErrForbidden means the caller is authenticated but may not do this (403). For
// a resource the caller may not see, answer 404 instead.
var ErrForbidden = errors.New("forbidden")

// Action is something a caller asks to do.
type Action string

// The actions of the API and the monitor.
const (
	ReadTask      Action = "task:read"
	CreateTask    Action = "task:create"
	CancelTask    Action = "task:cancel"
	RetryTask     Action = "task:retry"
	ReadSchedule  Action = "schedule:read"
	WriteSchedule Action = "schedule:write"
	ReadQueues    Action = "queues:read"
	ManageQueues  Action = "queues:manage"
	ReadStats     Action = "stats:read"
	ReadTaskTypes Action = "task_types:read"
	ManageAPIKeys Action = "api_keys:manage"
	ReadAudit     Action = "audit:read"
	ReadMetrics   Action = "metrics:read"
	UseMonitor    Action = "monitor:use"
	// CreateUpload stores a file for tasks to consume; ReadUpload reads an
	// upload's metadata and download link (the uploader's own, or any for admins).
	CreateUpload Action = "upload:create"
	ReadUpload   Action = "upload:read"
	// ManageTriggers creates, reads, changes and deletes event triggers (the
	// caller's own, or any for admins).
	ManageTriggers Action = "triggers:manage"
)

// minRole is the least role a needs. Viewers read (their own resources);
// operators also create, cancel and retry (their own); admins do everything, on
// anyone's resources. A manual retry is allowed to operators because it only
// runs their own task again, as creating it anew would.
func (a Action) minRole() (Role, bool) {
	switch a {
	case ReadTask, ReadSchedule, ReadQueues, ReadStats, ReadTaskTypes, ReadUpload:
		return Viewer, true
	case ManageTriggers:
		return Operator, true
	case CreateTask, CancelTask, RetryTask, WriteSchedule, CreateUpload:
		return Operator, true
	case ManageAPIKeys, ManageQueues, ReadAudit, ReadMetrics, UseMonitor:
		return Admin, true
	}
	return "", false
}

// rank orders roles; an unknown role ranks below viewer.
func (r Role) rank() int {
	switch r {
	case Viewer:
		return 1
	case Operator:
		return 2
	case Admin:
		return 3
	}
	return 0
}

// AtLeast reports whether r is min or more powerful.
func (r Role) AtLeast(min Role) bool { return r.rank() > 0 && r.rank() >= min.rank() }

// Allowed reports whether p's role permits action a at all. Unknown actions are
// refused.
func Allowed(p Principal, a Action) bool {
	min, ok := a.minRole()
	return ok && p.Role.AtLeast(min)
}

// AllowedOn reports whether p may do a on a resource created by owner: the role
// must permit a, and the resource must be p's own unless p is an admin.
// override is true when an admin acts on someone else's resource; the caller
// records it in the audit log. A resource without an owner ("") belongs to the
// system and only admins reach it. When ok is false because of ownership, answer
// 404, not 403, so callers cannot probe for ids.
func AllowedOn(p Principal, a Action, owner string) (ok, override bool) {
	if !Allowed(p, a) {
		return false, false
	}
	if owner != "" && p.ID == owner {
		return true, false
	}
	if p.IsAdmin() {
		return true, true
	}
	return false, false
}

// CanCreateType reports whether p may create tasks (or schedules) of the type
// described by spec: operators and admins for most types, admins only for
// those whose permission is tasks.PermCreateAdmin (the maintenance types).
func CanCreateType(p Principal, spec tasks.Spec) bool {
	if !Allowed(p, CreateTask) {
		return false
	}
	switch spec.Permission {
	case tasks.PermCreate:
		return true
	case tasks.PermCreateAdmin:
		return p.IsAdmin()
	}
	return false
}
