package notifyjob_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/notifyjob"
)

// taskRow is a task row a test seeds.
type taskRow struct {
	ID, Type, Status, CreatedBy string
	// Result is the JSON result; empty means NULL.
	Result string
	// Error is the tasks.error document; empty means NULL.
	Error string
	// CreatedAt defaults to now.
	CreatedAt time.Time
}

// insertTask adds a task row with the columns the handlers read.
func insertTask(t *testing.T, db *gorm.DB, row taskRow) {
	t.Helper()
	if row.Type == "" {
		row.Type = "refresh_portfolio"
	}
	if row.Status == "" {
		row.Status = "completed"
	}
	if row.CreatedAt.IsZero() {
		row.CreatedAt = time.Now()
	}
	var res, errDoc any
	if row.Result != "" {
		res = row.Result
	}
	if row.Error != "" {
		errDoc = row.Error
	}
	require.NoError(t, db.Exec(`INSERT INTO tasks
		(id, type, status, priority, created_by, created_at, updated_at, max_retries, retry_policy, timeout_seconds, result, error)
		VALUES (?, ?, ?, 'high', ?, ?, ?, 3, '{}', 300, ?, ?)`,
		row.ID, row.Type, row.Status, row.CreatedBy, row.CreatedAt, row.CreatedAt, res, errDoc).Error)
}

// insertKey adds an API key row with a role; revoked marks it revoked.
func insertKey(t *testing.T, db *gorm.DB, id, role string, revoked bool) {
	t.Helper()
	var revokedAt any
	if revoked {
		revokedAt = time.Now().Add(-time.Hour)
	}
	require.NoError(t, db.Exec(`INSERT INTO api_keys (id, name, role, prefix, hash, revoked_at) VALUES (?, ?, ?, ?, 'h', ?)`,
		id, id, role, "pfx_"+id, revokedAt).Error)
}

// guardedClient is the egress guard's client; allowLoopback lets it reach the
// local test servers, as TASKFORGE_EGRESS_ALLOW_CIDRS=127.0.0.0/8 would.
func guardedClient(t *testing.T, allowLoopback bool) *http.Client {
	t.Helper()
	cfg := egress.Config{Timeout: 10 * time.Second}
	if allowLoopback {
		cfg.AllowCIDRs = []string{"127.0.0.0/8"}
	}
	g, err := egress.New(cfg)
	require.NoError(t, err)
	return g.Client()
}

// newService builds a Service; opts.HTTPClient defaults to a loopback-allowed
// guarded client.
func newService(t *testing.T, opts notifyjob.Options) *notifyjob.Service {
	t.Helper()
	if opts.HTTPClient == nil {
		opts.HTTPClient = guardedClient(t, true)
	}
	s, err := notifyjob.New(opts)
	require.NoError(t, err)
	return s
}

// recorded is one request a fake server saw.
type recorded struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// fakeServer is a local HTTP server that records requests and answers with
// what respond returns (200 "ok" if nil).
type fakeServer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []recorded
	respond func(r recorded) (int, string)
}

func newFakeServer(t *testing.T, respond func(r recorded) (int, string)) *fakeServer {
	t.Helper()
	f := &fakeServer{respond: respond}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rec := recorded{Method: r.Method, Path: r.URL.RequestURI(), Header: r.Header.Clone(), Body: body}
		f.mu.Lock()
		f.reqs = append(f.reqs, rec)
		f.mu.Unlock()
		status, reply := http.StatusOK, "ok"
		if f.respond != nil {
			status, reply = f.respond(rec)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, reply)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeServer) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// requireNoSecret asserts that secret appears in none of the recorder's log
// lines, progress messages and result, nor in err.
func requireNoSecret(t *testing.T, rec *job.Recorder, err error, secret string) {
	t.Helper()
	require.NotEmpty(t, secret)
	if err != nil {
		require.NotContains(t, err.Error(), secret)
		require.NotContains(t, fmt.Sprintf("%+v", err), secret)
	}
	logs, jerr := json.Marshal(rec.Logs())
	require.NoError(t, jerr)
	require.NotContains(t, string(logs), secret)
	require.NotContains(t, strings.Join(rec.Messages(), "\n"), secret)
	require.NotContains(t, string(rec.Result()), secret)
}

// itoa formats an int.
func itoa(n int) string { return strconv.Itoa(n) }
