package worker

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// minMasked is the shortest sensitive value masked inside text: shorter ones
// (a one-letter name) would mask unrelated words and are not worth hiding.
const minMasked = 4

// masker hides one task's sensitive data in what its attempt writes: its log
// lines (message and fields), its progress step and message, its result and
// its error (tasks.error, task_logs and Asynq's error message in Redis). Every
// occurrence of a sensitive param value (secret.SensitiveValues of the opened
// params) reads secret.Redacted, as do the values of the log fields and
// top-level result keys the type's registry entry names (tasks.Sensitive).
// This is redaction, not sealing: what is masked is gone, for admins too. A
// nil masker masks nothing.
type masker struct {
	// values holds each value as it is and in its JSON-escaped form, longest
	// first so that a value containing another is masked whole.
	values    []string
	logKeys   []string
	resultKey []string
}

// newMasker returns the masker of a task of spec with opened params, or nil
// when there is nothing to mask.
func newMasker(spec tasks.Spec, params proto.Message) *masker {
	m := &masker{logKeys: spec.Sensitive.Log, resultKey: spec.Sensitive.Result}
	seen := map[string]bool{}
	for _, v := range secret.SensitiveValues(params) {
		if len(v) < minMasked || v == secret.Redacted {
			continue
		}
		forms := []string{v}
		if b, err := json.Marshal(v); err == nil {
			forms = append(forms, string(b[1:len(b)-1]))
		}
		for _, f := range forms {
			if !seen[f] {
				seen[f] = true
				m.values = append(m.values, f)
			}
		}
	}
	sort.Slice(m.values, func(i, j int) bool { return len(m.values[i]) > len(m.values[j]) })
	if len(m.values) == 0 && len(m.logKeys) == 0 && len(m.resultKey) == 0 {
		return nil
	}
	return m
}

// text masks every sensitive value in s.
func (m *masker) text(s string) string {
	if m == nil {
		return s
	}
	for _, v := range m.values {
		if strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, secret.Redacted)
		}
	}
	return s
}

// fields masks a log line's fields (a JSON object).
func (m *masker) fields(js string) string {
	if m == nil {
		return js
	}
	return string(m.json([]byte(js), m.logKeys, []byte(`{"_masked":"the fields held a sensitive value"}`)))
}

// result masks a result (JSON).
func (m *masker) result(b []byte) []byte {
	if m == nil {
		return b
	}
	return m.json(b, m.resultKey, []byte(`{"_masked":"the result held a sensitive value"}`))
}

// json masks the values in b and the values of keys of its top-level object;
// if masking broke the JSON (a value spanning syntax), it returns fallback.
func (m *masker) json(b []byte, keys []string, fallback []byte) []byte {
	if len(keys) > 0 {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err == nil {
			changed := false
			for _, k := range keys {
				if _, ok := obj[k]; ok {
					obj[k] = json.RawMessage(`"` + secret.Redacted + `"`)
					changed = true
				}
			}
			if changed {
				if out, err := json.Marshal(obj); err == nil {
					b = out
				}
			}
		}
	}
	masked := b
	for _, v := range m.values {
		if bytes.Contains(masked, []byte(v)) {
			masked = bytes.ReplaceAll(masked, []byte(v), []byte(secret.Redacted))
		}
	}
	if !json.Valid(masked) {
		return fallback
	}
	return masked
}

// maskedError is an attempt's error with its text masked; errors.Is and As
// still see the original (permanent, deadline).
type maskedError struct {
	msg string
	err error
}

func (e *maskedError) Error() string { return e.msg }
func (e *maskedError) Unwrap() error { return e.err }

// error masks err's text.
func (m *masker) error(err error) error {
	if m == nil || err == nil {
		return err
	}
	if msg := m.text(err.Error()); msg != err.Error() {
		return &maskedError{msg: msg, err: err}
	}
	return err
}

// setMask installs the masker of the attempt's opened params.
func (r *reporter) setMask(m *masker) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mask = m
}

// masking returns the attempt's masker (nil before the params are opened).
func (r *reporter) masking() *masker {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mask
}
