package job

import (
	"encoding/json"
	"sync"
)

// Recorder is an in-memory Reporter for tests of handlers.
type Recorder struct {
	ID string
	N  int

	mu       sync.Mutex
	fraction float64
	step     string
	messages []string
	logs     []LogLine
	result   json.RawMessage
}

// LogLine is one recorded log line.
type LogLine struct {
	Level, Message string
	Fields         map[string]any
}

var _ Reporter = (*Recorder)(nil)

// TaskID implements Reporter.
func (r *Recorder) TaskID() string { return r.ID }

// Attempt implements Reporter.
func (r *Recorder) Attempt() int { return max(r.N, 1) }

// Progress implements Reporter.
func (r *Recorder) Progress(fraction float64, step, message string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fraction, r.step = fraction, step
	if message != "" {
		r.messages = append(r.messages, message)
	}
}

// Log implements Reporter.
func (r *Recorder) Log(level, message string, fields map[string]any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, LogLine{level, message, fields})
}

// SetResult implements Reporter.
func (r *Recorder) SetResult(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.result = b
	return nil
}

// Fraction is the last progress fraction.
func (r *Recorder) Fraction() float64 { r.mu.Lock(); defer r.mu.Unlock(); return r.fraction }

// Step is the last current step.
func (r *Recorder) Step() string { r.mu.Lock(); defer r.mu.Unlock(); return r.step }

// Messages are the progress messages in order.
func (r *Recorder) Messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.messages...)
}

// Logs are the log lines in order.
func (r *Recorder) Logs() []LogLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]LogLine(nil), r.logs...)
}

// Result is the JSON result, or nil.
func (r *Recorder) Result() json.RawMessage { r.mu.Lock(); defer r.mu.Unlock(); return r.result }
