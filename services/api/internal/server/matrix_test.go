package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/callbackkey"
	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/problem/problemtest"
	"github.com/taskforge/taskforge/pkg/pushsub"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/result/httpresult"
	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/trigger"
	"github.com/taskforge/taskforge/pkg/upload"
)

// secureWith wires the security layer into opts: the audit log, API keys,
// schedules (sealed when sealer is set) and results, all on db.
func (b *testBundle) secureWith(t *testing.T, opts *Options, db *gorm.DB, o setupOptions, base string, log *zap.Logger) {
	t.Helper()
	sealer := o.sealer
	al, err := audit.New(db)
	require.NoError(t, err)
	keys, err := auth.NewKeyStore(db)
	require.NoError(t, err)
	st, err := schedule.NewStore(db)
	if sealer != nil {
		st, err = schedule.NewSealedStore(db, sealer)
	}
	require.NoError(t, err)
	b.storageDir = t.TempDir()
	local, err := result.NewLocal(b.storageDir)
	require.NoError(t, err)
	signer, err := result.NewSigner([]byte("api-test-signing-key-0123456789ab"), base, time.Minute)
	require.NoError(t, err)
	results, err := result.New(db, local, result.Options{Signer: signer})
	require.NoError(t, err)
	routes, err := httpresult.New(db, results, log)
	require.NoError(t, err)
	opts.Audit, opts.Keys, opts.Schedules, opts.Results = al, keys, st, routes
	callbackSealer, err := secret.NewKeyring(map[string][]byte{"cb": []byte("matrix-callback-key-0123456789ab")}, "cb")
	require.NoError(t, err)
	opts.CallbackKeys, err = callbackkey.New(db, callbackSealer, time.Minute)
	require.NoError(t, err)
	b.callbackKeys = opts.CallbackKeys
	opts.Push, err = pushsub.NewStore(db, egress.CheckURL)
	require.NoError(t, err)
	uploadLimit := o.uploadLimit
	if uploadLimit == 0 {
		uploadLimit = 1 << 20
	}
	b.uploads, err = upload.New(db, results, upload.Options{MaxBytes: uploadLimit})
	require.NoError(t, err)
	opts.Uploads = b.uploads
	triggers, err := trigger.NewStore(db, callbackSealer, time.Minute)
	require.NoError(t, err)
	b.triggers, err = trigger.New(triggers, b.svc, log, nil)
	require.NoError(t, err)
	b.triggers.StartWorkflowsWith(b.workflows)
	opts.Triggers, opts.HookRateLimit, opts.UploadObserver = b.triggers, o.hookRate, b.triggers
	if o.bootstrap != "" || o.jwt != nil {
		so := auth.ServiceOptions{BootstrapAdminKey: o.bootstrap, Keys: keys}
		if o.jwt != nil {
			v, err := auth.NewJWTVerifier(*o.jwt)
			require.NoError(t, err)
			so.JWT = v
		}
		svc, err := auth.NewService(so)
		require.NoError(t, err)
		opts.Auth = svc
	}
	b.audit, b.keys, b.schedules, b.results = al, keys, st, results
}

// outcomes are the statuses expected for the callers anonymous, viewer,
// operator and admin, in that order.
type outcomes [4]int

// access classifies a route: the statuses on the caller's own resource, and
// on another caller's (for routes on one task; zero for the others, which
// have no owner). state is the status the task is put in first.
type access struct {
	own, other outcomes
	state      string
}

func all(code int) outcomes { return outcomes{code, code, code, code} }

// authed is a route any authenticated caller reaches.
func authed(code int) outcomes { return outcomes{401, code, code, code} }

// adminOnly is a route only admins reach.
func adminOnly(code int) outcomes { return outcomes{401, 403, 403, code} }

// notOthers is a task route on another caller's task: 404 to all but admins.
func notOthers(code int) outcomes { return outcomes{401, 404, 404, code} }

// routeAccess is the authorisation table: every registered route must be
// here (a new route fails TestAuthorisationMatrix until it is classified).
var routeAccess = map[string]access{
	// Probes are open.
	"GET /healthz": {own: all(200)},
	"GET /readyz":  {own: all(200)},
	"GET /metrics": {own: adminOnly(200)},
	// The console's page is open; an asset name that is no hashed asset is 404.
	"GET /console/":             {own: all(200)},
	"GET /console/assets/:name": {own: all(404)},
	"GET /api/v1/whoami":        {own: authed(200)},
	// Tasks: viewers read their own, operators also create, cancel and retry
	// their own, admins act on anyone's; another's task is 404, never 403.
	"POST /api/v1/tasks":                {own: outcomes{401, 403, 201, 201}},
	"GET /api/v1/tasks":                 {own: authed(200)},
	"GET /api/v1/tasks/:task_id":        {own: authed(200), other: notOthers(200)},
	"DELETE /api/v1/tasks/:task_id":     {own: outcomes{401, 403, 200, 200}, other: notOthers(200), state: "pending"},
	"GET /api/v1/tasks/:task_id/logs":   {own: authed(200), other: notOthers(200)},
	"POST /api/v1/tasks/:task_id/retry": {own: outcomes{401, 403, 200, 200}, other: notOthers(200), state: "failed"},
	"GET /api/v1/tasks/:task_id/result": {own: authed(200), other: notOthers(200), state: "completed"},
	// Live events: this bundle has no hub, so a caller who passes the
	// authorisation gets 503 (the streams are tested in events_test.go).
	"GET /api/v1/tasks/:task_id/events":       {own: authed(503), other: notOthers(503)},
	"GET /api/v1/events":                      {own: authed(503)},
	"GET /api/v1/results/:id/download":        {own: all(403)}, // authorised by its signature alone; none here
	"GET /api/v1/task-types":                  {own: authed(200)},
	"GET /api/v1/queues":                      {own: authed(200)},
	"POST /api/v1/queues/:queue/pause":        {own: adminOnly(200)},
	"POST /api/v1/queues/:queue/resume":       {own: adminOnly(200)},
	"GET /api/v1/stats":                       {own: authed(200)},
	"GET /api/v1/openapi.yaml":                {own: authed(200)},
	"GET /api/v1/schedules":                   {own: authed(200)},
	"POST /api/v1/schedules":                  {own: adminOnly(201)},
	"GET /api/v1/schedules/:schedule_id":      {own: authed(200)},
	"PUT /api/v1/schedules/:schedule_id":      {own: adminOnly(200)},
	"PATCH /api/v1/schedules/:schedule_id":    {own: adminOnly(200)},
	"DELETE /api/v1/schedules/:schedule_id":   {own: adminOnly(204)},
	"GET /api/v1/schedules/:schedule_id/runs": {own: authed(200)},
	"POST /api/v1/api-keys":                   {own: adminOnly(201)},
	"GET /api/v1/api-keys":                    {own: adminOnly(200)},
	"DELETE /api/v1/api-keys/:key_id":         {own: adminOnly(200)},
	"GET /api/v1/audit":                       {own: adminOnly(200)},
	// Every caller rotates its own callback secret (no route names another's).
	"POST /api/v1/callback-secret/rotate": {own: authed(200)},
	// Every caller manages its own push subscriptions; admins may list and
	// delete anyone's (push_test.go holds own against another's).
	"POST /api/v1/push-subscriptions":                    {own: authed(201)},
	"GET /api/v1/push-subscriptions":                     {own: authed(200)},
	"DELETE /api/v1/push-subscriptions/:subscription_id": {own: authed(204)},
	// Operators and admins upload; a caller reads its own upload (another's
	// is 404 but to admins: uploads_test.go); the download route is
	// authorised by its signature alone.
	"POST /api/v1/uploads":                    {own: outcomes{401, 403, 201, 201}},
	"GET /api/v1/uploads/:upload_id":          {own: authed(200)},
	"GET /api/v1/uploads/:upload_id/download": {own: all(403)},
	// Triggers: operators manage their own, admins every one, viewers none
	// (triggers_test.go holds own against another's); a hook takes no bearer
	// token and an unsigned delivery is 401 whoever sends it.
	"GET /api/v1/triggers":                            {own: outcomes{401, 403, 200, 200}},
	"POST /api/v1/triggers":                           {own: outcomes{401, 403, 201, 201}},
	"GET /api/v1/triggers/:trigger_id":                {own: outcomes{401, 403, 200, 200}},
	"PATCH /api/v1/triggers/:trigger_id":              {own: outcomes{401, 403, 200, 200}},
	"DELETE /api/v1/triggers/:trigger_id":             {own: outcomes{401, 403, 204, 204}},
	"GET /api/v1/triggers/:trigger_id/deliveries":     {own: outcomes{401, 403, 200, 200}},
	"POST /api/v1/triggers/:trigger_id/rotate-secret": {own: outcomes{401, 403, 200, 200}},
	"POST /api/v1/hooks/:trigger_id":                  {own: all(401)},
	// Workflows: operators and admins create and cancel their own, a caller
	// reads its own, admins every one (workflows_test.go holds own against
	// another's).
	"GET /api/v1/workflows":                 {own: authed(200)},
	"POST /api/v1/workflows":                {own: outcomes{401, 403, 201, 201}},
	"GET /api/v1/workflows/:workflow_id":    {own: authed(200)},
	"DELETE /api/v1/workflows/:workflow_id": {own: outcomes{401, 403, 200, 200}},
}

// callers are the matrix's callers, in outcomes order.
var callers = []struct {
	name, token, id string
}{
	{"anonymous", "", ""},
	{"viewer", tokViewer, "key_viewer"},
	{"operator", tokOp, "key_op"},
	{"admin", tokAdmin, "key_admin"},
}

// requestBodies are the bodies of the routes that take one.
var requestBodies = map[string]string{
	"POST /api/v1/tasks":                   `{"type":"refresh_all_prices"}`,
	"POST /api/v1/schedules":               `{"name":"matrix-%s","cron":"0 3 * * *","type":"refresh_all_prices"}`,
	"PUT /api/v1/schedules/:schedule_id":   `{"name":"matrix-put-%s","cron":"0 4 * * *","type":"refresh_all_prices"}`,
	"PATCH /api/v1/schedules/:schedule_id": `{"enabled":false}`,
	"POST /api/v1/api-keys":                `{"name":"matrix-%s","role":"viewer"}`,
	"POST /api/v1/uploads":                 `{"matrix":"%s"}`,
	"POST /api/v1/triggers":                `{"name":"matrix-%s","kind":"webhook","task":{"type":"refresh_all_prices"}}`,
	"PATCH /api/v1/triggers/:trigger_id":   `{"enabled":true}`,
	"POST /api/v1/hooks/:trigger_id":       `{"matrix":"%s"}`,
	"POST /api/v1/workflows":               `{"name":"matrix-%s","steps":[{"id":"a","type":"refresh_all_prices"}]}`,
	"POST /api/v1/push-subscriptions": `{"endpoint":"https://push.example.com/wpush/matrix-%s",` +
		`"keys":{"p256dh":"` + testP256dh + `","auth":"` + testPushAuth + `"}}`,
}

// TestAuthorisationMatrix sends every registered route as every role, on the
// caller's own resource and on another's, and compares the status with
// routeAccess. It also holds BOLA: every route on one task answers 404 to a
// viewer or operator who does not own it.
func TestAuthorisationMatrix(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	seen := map[string]bool{}
	n := 0
	for _, r := range b.srv.Routes() {
		if strings.HasPrefix(r.Method, "echo_") {
			continue
		}
		key := r.Method + " " + r.Path
		if seen[key] {
			continue
		}
		seen[key] = true
		rule, ok := routeAccess[key]
		if !ok {
			t.Errorf("route %s is not classified in routeAccess: add its expected status per role", key)
			continue
		}
		onTask := strings.Contains(r.Path, ":task_id")
		if onTask {
			require.Equal(t, notOthers(rule.other[3]), rule.other, "%s: another's task must be 404 to all but admins", key)
		} else {
			require.Zero(t, rule.other, "%s has no owner: leave other empty", key)
		}
		for _, other := range []bool{false, true} {
			if other && !onTask {
				continue
			}
			want := rule.own
			if other {
				want = rule.other
			}
			for i, c := range callers {
				owner := c.id
				if owner == "" || other {
					owner = "key_op2"
				}
				if other && c.id == "key_op2" {
					owner = "key_op"
				}
				path, body := b.prepare(t, key, r.Path, owner, rule.state)
				var h map[string]string
				var rd *bytes.Reader
				if body != "" {
					h = map[string]string{"Content-Type": "application/json"}
					rd = bytes.NewReader([]byte(body))
				}
				var resp *http.Response
				if rd != nil {
					resp = b.raw(t, r.Method, path, c.token, rd, h)
				} else {
					resp = b.raw(t, r.Method, path, c.token, nil, h)
				}
				n++
				require.Equalf(t, want[i], resp.StatusCode, "%s as %s on %s resource", key, c.name, map[bool]string{false: "own", true: "another's"}[other])
				if resp.StatusCode >= 400 && r.Method != http.MethodHead {
					problemtest.Require(t, resp, key+" as "+c.name)
				}
			}
		}
	}
	for key := range routeAccess {
		require.Truef(t, seen[key], "routeAccess lists %s, which is not registered", key)
	}
	t.Logf("%d requests over %d routes", n, len(seen))

	// The admin's cancel and retry of another's task, and its reads of
	// another's task, logs and result, are audited overrides.
	var overrides []store.AuditEntry
	require.NoError(t, b.pg.DB.Where("action = ?", audit.ActionAdminOverride).Order("id").Find(&overrides).Error)
	var actions []string
	for _, o := range overrides {
		require.Equal(t, "key_admin", o.Actor)
		var d map[string]string
		require.NoError(t, json.Unmarshal(o.Details, &d))
		require.Equal(t, "key_op2", d["owner"])
		if !slices.Contains(actions, d["action"]) {
			actions = append(actions, d["action"])
		}
	}
	require.ElementsMatch(t, []string{audit.ActionTaskCancel, audit.ActionTaskRetry, readTask, readLogs, readResult}, actions)
}

// prepare makes the resource a route acts on, owned by owner, and returns the
// request path and body.
func (b testBundle) prepare(t *testing.T, key, route, owner, state string) (string, string) {
	t.Helper()
	path := route
	body := requestBodies[key]
	if strings.Contains(body, "%s") {
		body = strings.ReplaceAll(body, "%s", newUnique())
	}
	if strings.Contains(path, ":task_id") {
		if state == "" {
			state = "completed"
		}
		row := store.Task{CreatedBy: owner, Status: state}
		if state == "completed" {
			row.Result = store.JSON(`{"ok":true}`)
		}
		id := insertTaskWith(t, b, row)
		path = strings.ReplaceAll(path, ":task_id", id)
	}
	if strings.Contains(path, ":schedule_id") {
		name := "matrix-" + newUnique()
		cron, typ := "0 5 * * *", "refresh_all_prices"
		s, err := b.schedules.Create(ctx, schedule.Input{Name: &name, Cron: &cron, Type: &typ}, "key_admin")
		require.NoError(t, err)
		path = strings.ReplaceAll(path, ":schedule_id", s.ID)
	}
	if strings.Contains(path, ":key_id") {
		k, err := b.keys.Create(ctx, auth.NewKey{Name: "matrix", Role: auth.Viewer, CreatedBy: "key_admin"})
		require.NoError(t, err)
		path = strings.ReplaceAll(path, ":key_id", k.Key.ID)
	}
	if strings.Contains(path, ":trigger_id") {
		path = strings.ReplaceAll(path, ":trigger_id", newTrigger(t, b, owner))
	}
	if strings.Contains(path, ":workflow_id") {
		path = strings.ReplaceAll(path, ":workflow_id", insertWorkflow(t, b, owner))
	}
	if strings.Contains(path, ":subscription_id") {
		path = strings.ReplaceAll(path, ":subscription_id", insertPushSub(t, b.pg.DB, owner, "webpush"))
	}
	if strings.Contains(path, ":upload_id") {
		path = strings.ReplaceAll(path, ":upload_id", putUpload(t, b, owner, "matrix.csv", "text/csv", "a,b\n1,2\n").ID)
	}
	if key == "POST /api/v1/uploads" {
		path += "?name=matrix.json"
	}
	path = strings.ReplaceAll(path, ":queue", "low")
	path = strings.ReplaceAll(path, ":id", "res_01hz3k8c2m4n5p6q7r8s9t0v1w")
	return path, body
}

// newUnique returns a string unique in the test binary.
func newUnique() string {
	idSeq.Lock()
	defer idSeq.Unlock()
	idSeq.n++
	return fmt.Sprintf("%d-%d", time.Now().UnixNano(), idSeq.n)
}
