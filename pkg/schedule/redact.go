package schedule

import (
	"encoding/json"

	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/store"
)

// Redacted replaces the value of a secret param in API responses: the mask
// the task views use too.
const Redacted = secret.Redacted

// redact returns params with the type's secret values masked, for every
// reader (admins included). A schedule keeps its params in PostgreSQL, sealed,
// to create each fire's task; they are never shown back. The masking is
// secret.RedactJSON's, the same as a task's.
func redact(typ string, params store.JSON) json.RawMessage {
	return secret.RedactJSON(typ, json.RawMessage(params))
}
