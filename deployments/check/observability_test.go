package check

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// PrometheusRule is monitoring.coreos.com/v1 PrometheusRule (strict: unknown
// fields are errors).
type PrometheusRule struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		Groups []ruleGroup `json:"groups"`
	} `json:"spec"`
}

type ruleGroup struct {
	Name                    string `json:"name"`
	Interval                string `json:"interval,omitempty"`
	QueryOffset             string `json:"query_offset,omitempty"`
	Limit                   *int   `json:"limit,omitempty"`
	PartialResponseStrategy string `json:"partial_response_strategy,omitempty"`
	Rules                   []struct {
		Alert         string            `json:"alert,omitempty"`
		Record        string            `json:"record,omitempty"`
		Expr          string            `json:"expr"`
		For           string            `json:"for,omitempty"`
		KeepFiringFor string            `json:"keep_firing_for,omitempty"`
		Labels        map[string]string `json:"labels,omitempty"`
		Annotations   map[string]string `json:"annotations,omitempty"`
	} `json:"rules"`
}

// The files the chart ships and where they come from: the chart can read only
// its own directory, so it keeps byte-identical copies.
var chartCopies = map[string]string{
	filepath.Join("prometheus", "alerts.yaml"): filepath.Join("files", "alerts.yaml"),
	filepath.Join("grafana", "taskforge.json"): filepath.Join("files", "grafana-dashboard.json"),
}

// TestChartCopiesAreCurrent: the chart's copies of the alert rules and of the
// dashboard are the files under deployments/.
func TestChartCopiesAreCurrent(t *testing.T) {
	for src, dst := range chartCopies {
		a, err := os.ReadFile(filepath.Join("..", src))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(chartDir, dst))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("helm/taskforge/%s differs from deployments/%s: cp deployments/%s deployments/helm/taskforge/%s", dst, src, src, dst)
		}
	}
}

// TestChartAlertsAndDashboard: off by default; on, the PrometheusRule holds
// every rule of alerts.yaml with its runbook_url on the configured base and
// the selection labels, and the dashboard ConfigMap carries the Grafana
// sidecar's label, the folder annotation and the dashboard JSON as is.
func TestChartAlertsAndDashboard(t *testing.T) {
	def := renderValid(t, defaultValues...)
	if n := def.count("PrometheusRule"); n != 0 {
		t.Errorf("%d PrometheusRules by default", n)
	}
	if def.get("ConfigMap", "tf-taskforge-grafana-dashboard") != nil {
		t.Error("the dashboard ConfigMap is rendered by default")
	}

	ms := renderValid(t, "-f", filepath.Join(chartDir, "ci", "full-values.yaml"))
	o := ms.get("PrometheusRule", "tf-taskforge-alerts")
	if o == nil {
		t.Fatal("no PrometheusRule")
	}
	var pr PrometheusRule
	if err := yaml.Unmarshal(o.Raw, &pr); err != nil {
		t.Fatal(err)
	}
	if pr.Metadata.Labels["release"] != "prometheus" || pr.Metadata.Labels["app.kubernetes.io/part-of"] != "taskforge" {
		t.Errorf("PrometheusRule labels %v", pr.Metadata.Labels)
	}
	var file struct {
		Groups []ruleGroup `json:"groups"`
	}
	src, err := os.ReadFile(filepath.Join("..", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(src, &file); err != nil {
		t.Fatal(err)
	}
	if len(pr.Spec.Groups) != len(file.Groups) {
		t.Fatalf("%d groups, alerts.yaml has %d", len(pr.Spec.Groups), len(file.Groups))
	}
	n := 0
	for i, g := range file.Groups {
		got := pr.Spec.Groups[i]
		if got.Name != g.Name || len(got.Rules) != len(g.Rules) {
			t.Errorf("group %s: rendered %s with %d rules, want %d", g.Name, got.Name, len(got.Rules), len(g.Rules))
			continue
		}
		for j, r := range g.Rules {
			n++
			rr := got.Rules[j]
			want := "https://wiki.example.internal/taskforge/runbook#" + strings.ToLower(r.Alert)
			if rr.Annotations["runbook_url"] != want {
				t.Errorf("%s: runbook_url %q, want %q", r.Alert, rr.Annotations["runbook_url"], want)
			}
			r.Annotations["runbook_url"] = want
			if rr.Alert != r.Alert || rr.Expr != r.Expr || rr.For != r.For || !equalMaps(rr.Labels, r.Labels) || !equalMaps(rr.Annotations, r.Annotations) {
				t.Errorf("%s: rendered rule %+v differs from alerts.yaml's %+v", r.Alert, rr, r)
			}
		}
	}
	if n == 0 {
		t.Fatal("no rules")
	}

	cm := ms.get("ConfigMap", "tf-taskforge-grafana-dashboard")
	if cm == nil {
		t.Fatal("no dashboard ConfigMap")
	}
	c := cm.Typed.(*corev1.ConfigMap)
	if c.Labels["grafana_dashboard"] != "1" || c.Namespace != "monitoring" || c.Annotations["grafana_folder"] != "Taskforge" {
		t.Errorf("dashboard ConfigMap labels %v, namespace %q, annotations %v", c.Labels, c.Namespace, c.Annotations)
	}
	dash, err := os.ReadFile(filepath.Join("..", "grafana", "taskforge.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Data["taskforge.json"]; got != strings.TrimSuffix(string(dash), "\n") {
		t.Error("the ConfigMap's taskforge.json is not deployments/grafana/taskforge.json")
	} else if !json.Valid([]byte(got)) {
		t.Error("the ConfigMap's taskforge.json is not JSON")
	}
	t.Logf("%d rules in the PrometheusRule", n)
}

// TestChartObservabilityValuesRefused: a relative or fragment-carrying runbook
// base, and a sidecar label that is no label, are schema errors.
func TestChartObservabilityValuesRefused(t *testing.T) {
	for set, want := range map[string]string{
		"metrics.prometheusRule.runbookBaseURL=docs/OPERATIONS.md":               "/metrics/prometheusRule/runbookBaseURL",
		"metrics.prometheusRule.runbookBaseURL=https://wiki.example/runbook#top": "/metrics/prometheusRule/runbookBaseURL",
		"metrics.grafanaDashboard.label=grafana dashboard":                       "/metrics/grafanaDashboard/label",
		"metrics.grafanaDashboard.folder=Taskforge":                              "additional properties 'folder' not allowed",
		"metrics.prometheusRule.x=1":                                             "additional properties 'x' not allowed",
	} {
		args := append(append([]string{}, defaultValues...), "--set", set)
		if _, err := render(t, args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: want a schema error containing %q, got %v", set, want, err)
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
