package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(context.Background(), args, IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return out.String(), errOut.String(), code
}

// TestHelpOfEveryCommand walks the command tree: --help of each command (and
// `help <command>`) prints its usage and exits 0.
func TestHelpOfEveryCommand(t *testing.T) {
	root := newApp(IO{}).rootCommand()
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			if sub.Hidden {
				continue
			}
			walk(sub, append(append([]string{}, path...), sub.Name()))
		}
	}
	walk(root, nil)
	if len(paths) < 30 {
		t.Fatalf("only %d commands found", len(paths))
	}
	for _, p := range paths {
		out, errOut, code := run(t, append(append([]string{}, p...), "--help")...)
		if code != ExitOK || !strings.Contains(out, "Usage:") {
			t.Errorf("taskforge %s --help: exit %d, stdout %q, stderr %q", strings.Join(p, " "), code, out, errOut)
		}
		if len(p) > 0 {
			out, _, code = run(t, append([]string{"help"}, p...)...)
			if code != ExitOK || !strings.Contains(out, "Usage:") {
				t.Errorf("taskforge help %s: exit %d", strings.Join(p, " "), code)
			}
		}
	}
}

func TestVersionCompletionAndUsageErrors(t *testing.T) {
	out, _, code := run(t, "--version")
	if code != ExitOK || !strings.HasPrefix(out, "taskforge ") || !strings.Contains(out, "revision") {
		t.Fatalf("--version: exit %d, %q", code, out)
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, _, code := run(t, "completion", sh)
		if code != ExitOK || !strings.Contains(out, "taskforge") {
			t.Errorf("completion %s: exit %d", sh, code)
		}
	}
	for _, args := range [][]string{
		{"no-such-command"},
		{"tasks", "list", "--no-such-flag"},
		{"tasks", "get"},                     // missing argument
		{"tasks", "create"},                  // --type missing
		{"tasks", "list", "--output", "xml"}, // bad format
		{"tasks", "create", "--type", "x", "--at", "tomorrow", "--url", "http://127.0.0.1:1"},
		{"tasks", "wait", "task_x", "--timeout", "soon", "--url", "http://127.0.0.1:1"},
		{"tasks", "list", "--url", "ftp://example"},
	} {
		_, errOut, code := run(t, args...)
		if code != ExitUsage || !strings.HasPrefix(errOut, "taskforge: ") {
			t.Errorf("taskforge %s: exit %d (want %d), stderr %q", strings.Join(args, " "), code, ExitUsage, errOut)
		}
	}
	// An API that cannot be reached is an error, not a usage error.
	_, errOut, code := run(t, "tasks", "list", "--url", "http://127.0.0.1:1")
	if code != ExitError {
		t.Errorf("unreachable API: exit %d, stderr %q", code, errOut)
	}
}

func TestParamsAreTypedFromTheSchema(t *testing.T) {
	schema := map[string]any{"properties": map[string]any{
		"portfolio_id":  map[string]any{"type": "string"},
		"lookback_days": map[string]any{"type": "integer"},
		"weight":        map[string]any{"type": "number"},
		"all":           map[string]any{"type": "boolean"},
		"symbols":       map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
		"days":          map[string]any{"type": "array", "items": map[string]any{"type": "integer"}},
		"payload":       map[string]any{"type": "object"},
		"big":           map[string]any{"type": []any{"integer", "string"}},
	}}
	got, err := buildParams(schema, []string{
		"portfolio_id=pf_1", "lookback_days=7", "weight=0.5", "all=true", "symbols=AAPL, MSFT",
		"days=[1,2]", `payload={"a":1}`, "big=9007199254740993",
	}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"all":true,"big":9007199254740993,"days":[1,2],"lookback_days":7,"payload":{"a":1},"portfolio_id":"pf_1","symbols":["AAPL","MSFT"],"weight":0.5}`
	if compact(got) != want {
		t.Fatalf("params\n got %s\nwant %s", compact(got), want)
	}
	for _, bad := range []string{"lookback_days=7.5", "all=maybe", "payload=[1]", "unknown=1", "noequals"} {
		if _, err := buildParams(schema, []string{bad}, "", nil); err == nil {
			t.Errorf("--param %s accepted", bad)
		}
	}
	// --params-file from stdin, overridden by --param.
	got, err = buildParams(schema, []string{"lookback_days=9"}, "-", strings.NewReader(`{"portfolio_id":"pf_2","lookback_days":1}`))
	if err != nil || compact(got) != `{"lookback_days":9,"portfolio_id":"pf_2"}` {
		t.Fatalf("params file: %v %v", compact(got), err)
	}
}

func TestAtAndTimeouts(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if at, err := parseAt("+10m", now); err != nil || !at.Equal(now.Add(10*time.Minute)) {
		t.Fatalf("+10m: %v %v", at, err)
	}
	if at, err := parseAt("2026-05-06T07:08:09Z", now); err != nil || at.Format(time.RFC3339) != "2026-05-06T07:08:09Z" {
		t.Fatalf("rfc3339: %v %v", at, err)
	}
	for _, bad := range []string{"tomorrow", "+-5m", "+"} {
		if _, err := parseAt(bad, now); err == nil {
			t.Errorf("--at %q accepted", bad)
		}
	}
	for in, want := range map[string]int{"90": 90, "90s": 90, "5m": 300} {
		if got, err := parseSeconds("timeout", in); err != nil || got != want {
			t.Errorf("--timeout %s: %d %v", in, got, err)
		}
	}
	if _, err := parseSeconds("timeout", "0"); err == nil {
		t.Error("--timeout 0 accepted")
	}
}

func TestNewMessages(t *testing.T) {
	cases := []struct{ prev, cur, want []string }{
		{nil, []string{"a", "b"}, []string{"a", "b"}},
		{[]string{"a", "b"}, []string{"a", "b", "c"}, []string{"c"}},
		{[]string{"a", "b"}, []string{"b", "c", "d"}, []string{"c", "d"}}, // the oldest dropped
		{[]string{"a", "b"}, []string{"a", "b"}, []string{}},
	}
	for _, c := range cases {
		if got := newMessages(c.prev, c.cur); strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("newMessages(%v, %v) = %v, want %v", c.prev, c.cur, got, c.want)
		}
	}
}

// TestRetriesOnlyWhatIsSafe: GETs and creates with an idempotency key are
// retried after a 503; a create without one is sent once.
func TestRetriesOnlyWhatIsSafe(t *testing.T) {
	var mu sync.Mutex
	hits := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		k := r.Method + " " + r.Header.Get("Idempotency-Key")
		hits[k]++
		n := hits[k]
		mu.Unlock()
		if n < 3 {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"title":"Service Unavailable","status":503,"detail":"redis is unreachable"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"task_id":"task_1","status":"pending","priority":"normal","estimated_duration":1,"created_at":"2026-01-01T00:00:00Z","scheduled_for":"2026-01-01T00:00:00Z"}`)
			return
		}
		_, _ = io.WriteString(w, `{"items":[],"next_cursor":null,"total":0,"total_is_estimate":false}`)
	}))
	defer srv.Close()
	if _, errOut, code := run(t, "tasks", "list", "--url", srv.URL); code != ExitOK {
		t.Fatalf("list: exit %d %s", code, errOut)
	}
	if _, errOut, code := run(t, "tasks", "create", "--type", "refresh_all_prices", "--idempotency-key", "k1", "--url", srv.URL); code != ExitOK {
		t.Fatalf("create with a key: exit %d %s", code, errOut)
	}
	_, errOut, code := run(t, "tasks", "create", "--type", "refresh_all_prices", "--url", srv.URL)
	if code != ExitError || !strings.Contains(errOut, "redis is unreachable") {
		t.Fatalf("create without a key: exit %d %s", code, errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits["GET "] != 3 || hits["POST k1"] != 3 || hits["POST "] != 1 {
		t.Fatalf("requests %v: want 3 GETs, 3 keyed POSTs, 1 unkeyed POST", hits)
	}
}
