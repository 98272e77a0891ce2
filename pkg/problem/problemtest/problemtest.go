// Package problemtest checks that an HTTP error answer is the one problem
// shape of pkg/problem, for tests of every service that answers with it.
package problemtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/taskforge/taskforge/pkg/problem"
)

// Check reads resp's body and reports how it differs from the one problem
// shape: application/problem+json, a urn:taskforge:problem type, the
// response's status, and the request id of its X-Request-ID header. It is
// safe to call from several goroutines.
func Check(resp *http.Response) error {
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		return fmt.Errorf("content type %q", ct)
	}
	var p problem.Body
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	switch {
	case !strings.HasPrefix(p.Type, problem.TypePrefix):
		return fmt.Errorf("type %q", p.Type)
	case p.Status != resp.StatusCode:
		return fmt.Errorf("status %d in a %d answer", p.Status, resp.StatusCode)
	case p.RequestID == "":
		return fmt.Errorf("no request_id")
	case p.RequestID != resp.Header.Get(problem.HeaderRequestID):
		return fmt.Errorf("request_id %q, header %q", p.RequestID, resp.Header.Get(problem.HeaderRequestID))
	}
	return nil
}

// Require fails t unless resp is the one problem shape (see Check).
func Require(t testing.TB, resp *http.Response, what string) {
	t.Helper()
	if err := Check(resp); err != nil {
		t.Fatalf("%s: not the problem shape: %v", what, err)
	}
}
