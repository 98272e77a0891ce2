package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/api/client"
)

// selector is one metric a PromQL expression reads, with the labels its
// matchers name.
type selector struct {
	// where names the expression: the dashboard panel or the alert.
	where  string
	metric string
	labels []string
}

// scrapeLabels are the labels Prometheus adds to every scraped series; an
// expression may match on them though no service exports them.
var scrapeLabels = map[string]bool{"job": true, "instance": true}

// onlyOnFailure are metrics that a healthy stack does not export, with what
// shows them: a vector exported only once a child exists. No workload of a
// test of seconds can produce them, so they are checked by name against the
// source instead: the test fails if the name is no longer registered there.
var onlyOnFailure = map[string]string{
	// A handler still running past its task's timeout (one that ignores its
	// context): pkg/worker's tests run one.
	"taskforge_task_running_over_timeout": "pkg/worker/metrics.go",
}

// TestDashboardAndAlertsNameExportedMetrics: the Grafana dashboard is a valid
// dashboard model, and every PromQL expression in it and in the alert rules —
// parsed with Prometheus's own PromQL parser — names only metrics, and label
// matchers on labels, that the real binaries export: the four services run a
// small workload (tasks through a type limit, one task still running, an event
// stream, a schedule firing), then each one's /metrics is scraped and parsed.
func TestDashboardAndAlertsNameExportedMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs PostgreSQL and Redis")
	}
	root, err := workspaceRoot()
	require.NoError(t, err)

	// Offline first: the files themselves.
	dashboard := readDashboard(t, filepath.Join(root, "deployments", "grafana", "taskforge.json"))
	checkDashboardModel(t, dashboard)
	sels := dashboardSelectors(t, dashboard)
	n := len(sels)
	sels = append(sels, alertSelectors(t, filepath.Join(root, "deployments", "prometheus", "alerts.yaml"))...)
	require.NotEmpty(t, sels[:n], "the dashboard reads no metric")
	require.NotEmpty(t, sels[n:], "the alerts read no metric")

	// The stack and its workload.
	// A webhook limit of one defers deliveries; a long egress timeout keeps
	// the held webhook running while the test scrapes.
	s := startStackOn(t, testenv.NewRedis(t), "TASKFORGE_WORKER_TYPE_LIMITS=backup_data=2,webhook_callback=1",
		"TASKFORGE_EGRESS_TIMEOUT=90s")
	release := s.metricsWorkload(t)
	defer release()

	var exported map[string]map[string]bool
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		exported = s.scrapeAll(c)
		for _, sel := range sels {
			if _, ok := onlyOnFailure[sel.metric]; ok {
				continue
			}
			labels, ok := exported[sel.metric]
			if !assert.Truef(c, ok, "%s: metric %s is not exported by any service", sel.where, sel.metric) {
				continue
			}
			for _, l := range sel.labels {
				assert.Truef(c, labels[l] || scrapeLabels[l], "%s: metric %s has no label %q (it has %v)", sel.where, sel.metric, l, keysOf(labels))
			}
		}
	}, 30*time.Second, time.Second, "the dashboard's and the alerts' metrics are exported%s", s.logTails())
	for metric, file := range onlyOnFailure {
		src, err := os.ReadFile(filepath.Join(root, file))
		require.NoError(t, err)
		require.Containsf(t, string(src), `"`+metric+`"`, "%s is no longer registered in %s", metric, file)
	}
	t.Logf("%d selectors (%d in the dashboard) over %d exported metrics", len(sels), n, len(exported))
}

// metricsWorkload makes the stack export what the dashboard and the alerts
// read: webhook_callbacks through a limit of one (deferred deliveries), one
// of them held running (the oldest-running gauge), the live event stream
// followed, and a schedule that fires. It returns the release of the held
// task (also released when the test ends).
func (s *stack) metricsWorkload(t *testing.T) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	admin := s.client(s.adminKey)

	// Live events: a stream that reads until the test ends.
	c, err := client.NewClient(s.api, client.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
		r.Header.Set("Authorization", "Bearer "+s.adminKey)
		return nil
	}))
	require.NoError(t, err)
	stream, err := c.Events(ctx, client.EventFilter{}, "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = stream.Close() })
	go func() {
		for {
			if _, err := stream.Next(); err != nil {
				return
			}
		}
	}()

	// Webhooks: /slow answers after 300 ms, /held when released.
	held := make(chan struct{})
	var once sync.Once
	releaseHeld := func() { once.Do(func() { close(held) }) }
	t.Cleanup(releaseHeld)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/held" {
			select {
			case <-held:
			case <-r.Context().Done():
			}
			return
		}
		time.Sleep(300 * time.Millisecond)
	}))
	t.Cleanup(srv.Close)
	var ids []string
	for i := range 3 {
		ids = append(ids, create(t, admin, newTask("webhook_callback", params{"url": srv.URL + "/slow", "payload": map[string]any{"i": i}})))
	}
	for _, id := range ids {
		s.waitStatus(t, admin, id, client.StatusCompleted, taskWithin)
	}

	// A schedule that fires every second, disabled after its first run.
	p := map[string]any{"benchmark": "^NDX", "lookback_days": 3}
	created, err := admin.CreateScheduleWithResponse(ctx, client.ScheduleInput{Name: "metrics-every-second", Cron: "@every 1s", Type: ptr("refresh_benchmark"), Params: &p})
	require.NoError(t, err)
	require.Equalf(t, http.StatusCreated, created.StatusCode(), "create schedule: %s", created.Body)
	require.Eventuallyf(t, func() bool {
		resp, err := admin.ListScheduleRunsWithResponse(ctx, created.JSON201.Id, nil)
		return err == nil && resp.JSON200 != nil && len(resp.JSON200.Items) > 0
	}, taskWithin, pollEvery, "the schedule never fired%s", s.logTails())
	off := false
	_, err = admin.PatchScheduleWithResponse(ctx, created.JSON201.Id, client.SchedulePatch{Enabled: &off})
	require.NoError(t, err)

	// Last, so that it is still running (within the egress timeout) while
	// the test scrapes.
	longID := create(t, admin, newTask("webhook_callback", params{"url": srv.URL + "/held", "payload": map[string]any{"held": true}}))
	s.waitStatus(t, admin, longID, client.StatusRunning, taskWithin)
	return releaseHeld
}

// scrapeAll reads /metrics of every service and returns each metric name
// (with a histogram's _bucket, _sum and _count and a summary's _sum and
// _count) and the label names of its series.
func (s *stack) scrapeAll(c assert.TestingT) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	targets := map[string]string{s.api: s.adminKey, s.monitor: "", s.sched: ""}
	for _, w := range s.workers {
		targets[w] = ""
	}
	for base, key := range targets {
		req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
		if !assert.NoError(c, err) {
			return out
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if !assert.NoError(c, err) {
			return out
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if !assert.NoErrorf(c, err, "%s/metrics", base) || !assert.Equal(c, http.StatusOK, resp.StatusCode) {
			return out
		}
		for name, mf := range families {
			names := []string{name}
			switch mf.GetType().String() {
			case "HISTOGRAM", "GAUGE_HISTOGRAM":
				names = append(names, name+"_bucket", name+"_sum", name+"_count")
			case "SUMMARY":
				names = append(names, name+"_sum", name+"_count")
			}
			for _, n := range names {
				if out[n] == nil {
					out[n] = map[string]bool{}
				}
				for _, m := range mf.GetMetric() {
					for _, lp := range m.GetLabel() {
						out[n][lp.GetName()] = true
					}
				}
				if strings.HasSuffix(n, "_bucket") {
					out[n]["le"] = true
				}
				if mf.GetType().String() == "SUMMARY" && n == name {
					out[n]["quantile"] = true
				}
			}
		}
	}
	return out
}

// dashboardModel is the part of Grafana's dashboard JSON model the test reads.
type dashboardModel struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Time struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"time"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource *datasource     `json:"datasource"`
}

func readDashboard(t *testing.T, path string) dashboardModel {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var d dashboardModel
	dec := json.NewDecoder(strings.NewReader(string(b)))
	require.NoError(t, dec.Decode(&d), path)
	return d
}

// checkDashboardModel: the fields Grafana requires (uid, title, schema
// version, time range), a Prometheus datasource variable that every panel and
// target uses, unique panel ids, panels inside the 24-column grid and not
// overlapping, every panel with at least one target with an expression and a
// unique refId, and every $variable an expression uses defined.
func checkDashboardModel(t *testing.T, d dashboardModel) {
	t.Helper()
	require.NotEmpty(t, d.UID, "uid")
	require.LessOrEqual(t, len(d.UID), 40, "Grafana's uid is at most 40 characters")
	require.NotEmpty(t, d.Title, "title")
	require.GreaterOrEqual(t, d.SchemaVersion, 36, "schemaVersion of a current Grafana")
	require.NotEmpty(t, d.Time.From)
	require.NotEmpty(t, d.Time.To)
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		require.NotContains(t, vars, v.Name, "variable %s defined twice", v.Name)
		vars[v.Name] = v
	}
	ds, ok := vars["datasource"]
	require.True(t, ok, "a datasource variable")
	require.Equal(t, "datasource", ds.Type)
	require.JSONEq(t, `"prometheus"`, string(ds.Query))
	wantDS := datasource{Type: "prometheus", UID: "${datasource}"}

	ids := map[int]string{}
	var boxes []panel
	var all []panel
	for _, p := range d.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	varRef := regexp.MustCompile(`\$\{?(\w+)\}?`)
	for _, p := range all {
		require.Positive(t, p.ID, "panel %q: id", p.Title)
		require.NotContains(t, ids, p.ID, "panel id %d of %q is also %q's", p.ID, p.Title, ids[p.ID])
		ids[p.ID] = p.Title
		require.NotEmpty(t, p.Title, "panel %d: title", p.ID)
		g := p.GridPos
		require.True(t, g.W > 0 && g.H > 0 && g.X >= 0 && g.Y >= 0 && g.X+g.W <= 24, "panel %q: gridPos %+v", p.Title, g)
		for _, b := range boxes {
			overlap := g.X < b.GridPos.X+b.GridPos.W && b.GridPos.X < g.X+g.W && g.Y < b.GridPos.Y+b.GridPos.H && b.GridPos.Y < g.Y+g.H
			require.False(t, overlap, "panels %q and %q overlap", p.Title, b.Title)
		}
		boxes = append(boxes, p)
		if p.Type == "row" {
			continue
		}
		require.NotNil(t, p.Datasource, "panel %q: datasource", p.Title)
		require.Equal(t, wantDS, *p.Datasource, "panel %q: datasource", p.Title)
		require.NotEmpty(t, p.Targets, "panel %q: no target", p.Title)
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			require.NotEmpty(t, tg.RefID, "panel %q: target without refId", p.Title)
			require.False(t, refs[tg.RefID], "panel %q: refId %s twice", p.Title, tg.RefID)
			refs[tg.RefID] = true
			require.NotEmpty(t, strings.TrimSpace(tg.Expr), "panel %q: target %s has no expression", p.Title, tg.RefID)
			if tg.Datasource != nil {
				require.Equal(t, wantDS, *tg.Datasource, "panel %q target %s: datasource", p.Title, tg.RefID)
			}
			for _, m := range varRef.FindAllStringSubmatch(tg.Expr, -1) {
				if !strings.HasPrefix(m[1], "__") {
					require.Contains(t, vars, m[1], "panel %q: variable $%s is not defined", p.Title, m[1])
				}
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			require.NotNil(t, v.Datasource, "variable %s: datasource", v.Name)
			require.Equal(t, wantDS, *v.Datasource, "variable %s: datasource", v.Name)
		}
	}
}

// grafanaVars replaces Grafana's variables in an expression with what they
// stand for, so that the PromQL parser reads it.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "${type}", ".*", "$type", ".*")

// dashboardSelectors parses every expression of the dashboard: its targets
// and its query variables (Grafana's label_values(metric, label)).
func dashboardSelectors(t *testing.T, d dashboardModel) []selector {
	t.Helper()
	var out []selector
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, selectorsOf(t, fmt.Sprintf("panel %q (%s)", p.Title, tg.RefID), grafanaVars.Replace(tg.Expr))...)
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		require.NoError(t, json.Unmarshal(v.Query, &q), "variable %s", v.Name)
		m := labelValues.FindStringSubmatch(q.Query)
		require.NotNil(t, m, "variable %s: %q is not label_values(metric, label)", v.Name, q.Query)
		sels := selectorsOf(t, "variable "+v.Name, m[1])
		for i := range sels {
			sels[i].labels = append(sels[i].labels, m[2])
		}
		out = append(out, sels...)
	}
	return out
}

// alertSelectors parses the expression of every rule in alerts.yaml.
func alertSelectors(t *testing.T, path string) []selector {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(b, &rules), path)
	var out []selector
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out = append(out, selectorsOf(t, "alert "+r.Alert, r.Expr)...)
		}
	}
	return out
}

// selectorsOf parses expr with Prometheus's PromQL parser and returns the
// vector selectors in it.
func selectorsOf(t *testing.T, where, expr string) []selector {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	require.NoErrorf(t, err, "%s: %s", where, expr)
	var out []selector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		sel := selector{where: where, metric: vs.Name}
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel {
				sel.metric = m.Value
				continue
			}
			sel.labels = append(sel.labels, m.Name)
		}
		require.NotEmptyf(t, sel.metric, "%s: a selector without a metric name: %s", where, vs)
		out = append(out, sel)
		return nil
	})
	require.NotEmptyf(t, out, "%s reads no metric: %s", where, expr)
	return out
}

func keysOf(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return slices.Clip(out)
}
