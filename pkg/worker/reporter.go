package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/logging"
)

// Limits on what one attempt may write.
const (
	maxMessageLen = 2000
	maxStepLen    = 200
	maxLogLen     = 8 << 10
	maxFieldsLen  = 16 << 10
)

// ErrResultTooLarge is returned by SetResult for a result above the limit;
// large results belong in result storage, and the result names them.
var ErrResultTooLarge = errors.New("worker: result too large to keep inline")

// reporter is the worker's job.Reporter for one attempt: progress and log lines
// go to the batched writer; the result is kept until the attempt's outcome is
// recorded. After close every call is ignored.
type reporter struct {
	w         *writer
	key       attemptKey
	maxLogs   int
	maxResult int
	// traceID is the attempt's trace, written with each log line;
	// requestID is the request that created the task (see LogFields).
	traceID, requestID string

	mu      sync.Mutex
	closed  bool
	result  []byte
	logs    int
	dropped int
	// mask hides the task's sensitive values in what it writes (see
	// sensitive.go); nil until the params are opened.
	mask *masker
}

var _ job.Reporter = (*reporter)(nil)

func newReporter(w *writer, key attemptKey, maxLogs, maxResult int) *reporter {
	return &reporter{w: w, key: key, maxLogs: maxLogs, maxResult: maxResult}
}

// TaskID implements job.Reporter.
func (r *reporter) TaskID() string { return r.key.id }

// Attempt implements job.Reporter.
func (r *reporter) Attempt() int { return r.key.attempt }

// LogFields are the fields of a handler's own log lines (job.LogFields).
func (r *reporter) LogFields() []zap.Field {
	return []zap.Field{logging.TaskID(r.key.id), logging.Attempt(r.key.attempt),
		zap.String(logging.FieldTraceID, r.traceID), logging.RequestID(r.requestID)}
}

// Progress implements job.Reporter. The fraction is clamped to 0..1; a NaN
// keeps the step and message but not the fraction's change.
func (r *reporter) Progress(fraction float64, step, message string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	switch {
	case math.IsNaN(fraction):
		fraction = 0
	case fraction < 0:
		fraction = 0
	case fraction > 1:
		fraction = 1
	}
	r.w.setProgress(r.key, fraction, clean(r.mask.text(step), maxStepLen), clean(r.mask.text(message), maxMessageLen))
}

// Log implements job.Reporter. Lines beyond the attempt's limit are counted
// and reported in one last line when the attempt ends.
func (r *reporter) Log(level, message string, fields map[string]any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if r.logs >= r.maxLogs {
		r.dropped++
		return
	}
	r.logs++
	r.w.addLog(logRow{key: r.key, ts: time.Now().UTC(), level: normLevel(level), msg: clean(r.mask.text(message), maxLogLen),
		fields: r.mask.fields(fieldsJSON(fields)), traceID: r.traceID})
}

// SetResult implements job.Reporter.
func (r *reporter) SetResult(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("worker: result: %w", err)
	}
	b = bytes.ReplaceAll(b, []byte(`\u0000`), []byte(`\ufffd`))
	r.mu.Lock()
	b = r.mask.result(b)
	r.mu.Unlock()
	if len(b) > r.maxResult {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrResultTooLarge, len(b), r.maxResult)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.result = b
	}
	return nil
}

// close stops the reporter and returns the result.
func (r *reporter) close() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.result
	}
	r.closed = true
	if r.dropped > 0 {
		r.w.addLog(logRow{key: r.key, ts: time.Now().UTC(), level: job.Warn,
			msg: fmt.Sprintf("%d more log lines were dropped: an attempt keeps at most %d", r.dropped, r.maxLogs), fields: "{}", traceID: r.traceID})
	}
	return r.result
}

func normLevel(l string) string {
	switch l {
	case job.Debug, job.Info, job.Warn, job.Error:
		return l
	case "warning":
		return job.Warn
	}
	return job.Info
}

// clean makes s storable as PostgreSQL text: valid UTF-8, no NUL, at most n
// bytes.
func clean(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// fieldsJSON renders log fields for jsonb: unmarshalable values become their
// %v text, NUL escapes (refused by jsonb) are replaced, and oversized fields
// are replaced by a note.
func fieldsJSON(fields map[string]any) string {
	if len(fields) == 0 {
		return "{}"
	}
	b, err := json.Marshal(fields)
	if err != nil {
		safe := make(map[string]string, len(fields))
		for k, v := range fields {
			safe[k] = fmt.Sprintf("%v", v)
		}
		b, _ = json.Marshal(safe)
	}
	b = bytes.ReplaceAll(b, []byte(`\u0000`), []byte(`\ufffd`))
	if len(b) > maxFieldsLen {
		return `{"_truncated":"fields exceeded 16 KiB"}`
	}
	return string(b)
}
