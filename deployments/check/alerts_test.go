package check

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// runbookBase is the base of every runbook_url in prometheus/alerts.yaml: the
// alert runbook on the project's repository (the chart's
// prometheusRule.runbookBaseURL replaces it).
const runbookBase = "https://github.com/taskforge/taskforge/blob/main/docs/OPERATIONS.md"

// TestAlertsDocumentedAndTested: every alert in prometheus/alerts.yaml has a
// severity, an absolute runbook_url whose anchor is a heading of the alert
// runbook in docs/OPERATIONS.md, and at least one firing case in
// prometheus/alerts_test.yaml (promtool runs the tests themselves). That the
// rules name only metrics the services export is checked against the real
// binaries by e2e/metrics_names_test.go.
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
	readme, err := os.ReadFile(filepath.Join("..", "..", "docs", "OPERATIONS.md"))
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
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if sev := r.Labels["severity"]; sev != "warning" && sev != "critical" {
				t.Errorf("%s: severity %q", r.Alert, sev)
			}
			url := r.Annotations["runbook_url"]
			if want := runbookBase + "#" + strings.ToLower(r.Alert); url != want {
				t.Errorf("%s: runbook_url %q, want %q", r.Alert, url, want)
			}
			if !anchors[strings.ToLower(r.Alert)] {
				t.Errorf("%s: no heading %q in docs/OPERATIONS.md", r.Alert, r.Alert)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: summary or description missing", r.Alert)
			}
			if !regexp.MustCompile(`(?m)^\s+alertname: ` + r.Alert + `\n\s+exp_alerts:\n\s+- exp_labels:`).Match(tests) {
				t.Errorf("%s: no firing case in alerts_test.yaml", r.Alert)
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
