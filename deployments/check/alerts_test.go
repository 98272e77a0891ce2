package check

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestAlertsDocumentedAndTested: every alert in prometheus/alerts.yaml has a
// severity, a runbook anchor that exists as a heading in deployments/README.md,
// and at least one firing case in prometheus/alerts_test.yaml (promtool runs the
// tests themselves). Metric names used by the rules are the ones the services
// export.
func TestAlertsDocumentedAndTested(t *testing.T) {
	var rules struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for,omitempty"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	b, err := os.ReadFile(filepath.Join("..", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, &rules); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ (\S.*)$`).FindAllStringSubmatch(string(readme), -1) {
		anchors[githubAnchor(m[1])] = true
	}
	tests, err := os.ReadFile(filepath.Join("..", "prometheus", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{
		"taskforge_tasks_processed_total": true, "taskforge_task_duration_seconds": true,
		"taskforge_task_duration_seconds_bucket": true, "taskforge_tasks_active": true,
		"taskforge_worker_up": true, "taskforge_queue_size": true,
		"taskforge_queue_latency_seconds": true, "taskforge_task_running_over_timeout": true,
		"taskforge_dependency_up": true,
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if sev := r.Labels["severity"]; sev != "warning" && sev != "critical" {
				t.Errorf("%s: severity %q", r.Alert, sev)
			}
			url := r.Annotations["runbook_url"]
			anchor := strings.TrimPrefix(url, "deployments/README.md#")
			if anchor == url || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q has no heading in deployments/README.md", r.Alert, url)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: summary or description missing", r.Alert)
			}
			if !regexp.MustCompile(`(?m)^\s+alertname: ` + r.Alert + `\n\s+exp_alerts:\n\s+- exp_labels:`).Match(tests) {
				t.Errorf("%s: no firing case in alerts_test.yaml", r.Alert)
			}
			for _, m := range regexp.MustCompile(`taskforge_[a-z_]+`).FindAllString(r.Expr, -1) {
				if !known[m] {
					t.Errorf("%s: metric %s is not exported by the services", r.Alert, m)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no alert rules")
	}
	t.Logf("%d alerts documented and tested", n)
}

// githubAnchor is the anchor GitHub gives a Markdown heading.
func githubAnchor(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	var b strings.Builder
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}
