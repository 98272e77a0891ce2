package tasks

// Status is a task's state, in the API's words.
type Status = string

// The states of the specification.
const (
	StatusPending   Status = "pending"
	StatusRunning   Status = "running"
	StatusRetrying  Status = "retrying"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Statuses lists every state.
var Statuses = []Status{StatusPending, StatusRunning, StatusRetrying, StatusCompleted, StatusFailed, StatusCancelled}

// transitions maps each state to the states it may move to. running → running
// is a new attempt after a crash (Asynq's lease recovery); failed and cancelled
// → pending is a manual retry.
var transitions = map[Status][]Status{
	StatusPending:   {StatusRunning, StatusCancelled, StatusFailed},
	StatusRunning:   {StatusRunning, StatusCompleted, StatusRetrying, StatusFailed, StatusCancelled},
	StatusRetrying:  {StatusRunning, StatusCancelled, StatusFailed},
	StatusCompleted: {},
	StatusFailed:    {StatusPending},
	StatusCancelled: {StatusPending},
}

// From returns the states a task may be in to move to "to"; a conditional
// update uses it as its WHERE status IN (...) list.
func From(to Status) []Status {
	var out []Status
	for _, from := range Statuses {
		if CanTransition(from, to) {
			out = append(out, from)
		}
	}
	return out
}

// CanTransition reports whether from → to is allowed.
func CanTransition(from, to Status) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// IsTerminal reports whether s is completed, failed or cancelled.
func IsTerminal(s Status) bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// ValidStatus reports whether s names a state.
func ValidStatus(s string) bool {
	for _, x := range Statuses {
		if x == s {
			return true
		}
	}
	return false
}
