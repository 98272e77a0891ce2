package job

import (
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/logging"
)

// LogFields are the fields that tie a handler's own process log lines to
// the attempt r reports for: task_id and attempt, and with the worker's
// reporter trace_id and the creating request_id too; then extra.
func LogFields(r Reporter, extra ...zap.Field) []zap.Field {
	if f, ok := r.(interface{ LogFields() []zap.Field }); ok {
		return append(f.LogFields(), extra...)
	}
	return append([]zap.Field{logging.TaskID(r.TaskID()), logging.Attempt(r.Attempt())}, extra...)
}
