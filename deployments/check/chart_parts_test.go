package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// HTTPRoute is the part of gateway.networking.k8s.io/v1 HTTPRoute the chart
// writes (strict: unknown fields are errors).
type HTTPRoute struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		ParentRefs []struct {
			Name        string `json:"name"`
			Namespace   string `json:"namespace,omitempty"`
			SectionName string `json:"sectionName,omitempty"`
		} `json:"parentRefs"`
		Hostnames []string `json:"hostnames,omitempty"`
		Rules     []struct {
			Matches []struct {
				Path struct {
					Type  string `json:"type"`
					Value string `json:"value"`
				} `json:"path"`
			} `json:"matches"`
			BackendRefs []struct {
				Name string `json:"name"`
				Port int    `json:"port"`
			} `json:"backendRefs"`
		} `json:"rules"`
	} `json:"spec"`
}

// TestChartOptionalParts: with every optional part on, the Ingress and the
// HTTPRoute reach the API's Service, each component has a NetworkPolicy on its
// port, and the helm test hook GETs the API's /readyz.
func TestChartOptionalParts(t *testing.T) {
	ms := renderValid(t, "-f", filepath.Join(chartDir, "ci", "full-values.yaml"))

	ing := ms.get("Ingress", "tf-taskforge-api")
	if ing == nil {
		t.Fatal("no Ingress")
	}
	in := ing.Typed.(*networkingv1.Ingress)
	if *in.Spec.IngressClassName != "nginx" || len(in.Spec.TLS) != 1 || in.Spec.Rules[0].Host != "taskforge.example.com" {
		t.Errorf("Ingress spec %+v", in.Spec)
	}
	if b := in.Spec.Rules[0].HTTP.Paths[0].Backend.Service; b.Name != "tf-taskforge-api" || b.Port.Name != "http" {
		t.Errorf("Ingress backend %+v", b)
	}
	if ms.get("Service", "tf-taskforge-api") == nil {
		t.Error("the Ingress's Service is not rendered")
	}

	rt := ms.get("HTTPRoute", "tf-taskforge-api")
	if rt == nil {
		t.Fatal("no HTTPRoute")
	}
	if !strings.Contains(string(rt.Raw), "name: tf-taskforge-api") || !strings.Contains(string(rt.Raw), "port: 8080") ||
		!strings.Contains(string(rt.Raw), "sectionName: https") {
		t.Errorf("HTTPRoute:\n%s", rt.Raw)
	}

	for _, c := range []struct {
		name   string
		port   int32
		anyone bool
	}{{"api", 8080, false}, {"monitor", 8081, true}, {"worker", 9091, false}, {"scheduler", 9092, false}} {
		o := ms.get("NetworkPolicy", "tf-taskforge-"+c.name)
		if o == nil {
			t.Errorf("no NetworkPolicy for %s", c.name)
			continue
		}
		np := o.Typed.(*networkingv1.NetworkPolicy)
		if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"] != c.name {
			t.Errorf("%s policy selects %v", c.name, np.Spec.PodSelector.MatchLabels)
		}
		if len(np.Spec.Ingress) != 1 || np.Spec.Ingress[0].Ports[0].Port.IntVal != c.port {
			t.Errorf("%s policy ingress %+v", c.name, np.Spec.Ingress)
			continue
		}
		if got := len(np.Spec.Ingress[0].From) == 0; got != c.anyone {
			t.Errorf("%s policy open to anyone = %v, want %v", c.name, got, c.anyone)
		}
	}

	test := ms.get("Pod", "tf-taskforge-test-readyz")
	if test == nil {
		t.Fatal("no helm test pod")
	}
	pod := test.Typed.(*corev1.Pod)
	if pod.Annotations["helm.sh/hook"] != "test" || pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("test pod annotations %v, restart %s", pod.Annotations, pod.Spec.RestartPolicy)
	}
	if args := pod.Spec.Containers[0].Args; len(args) != 1 || args[0] != "http://tf-taskforge-api:8080/readyz" {
		t.Errorf("test pod args %v", args)
	}
	if sc := pod.Spec.Containers[0].SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("test pod without the chart's security context")
	}

	// Off by default.
	def := renderValid(t, defaultValues...)
	for _, kind := range []string{"Ingress", "HTTPRoute", "NetworkPolicy"} {
		if def.count(kind) != 0 {
			t.Errorf("%s rendered by default", kind)
		}
	}
}

// TestChartSchemaRefusesBadValues: values.schema.json turns typos and wrong
// types into errors before anything renders.
func TestChartSchemaRefusesBadValues(t *testing.T) {
	cases := map[string]struct {
		set  string
		want string
	}{
		"unknown top-level key":  {"replicas=3", "additional properties 'replicas' not allowed"},
		"redis mode":             {"config.redis.mode=ring", "/config/redis/mode"},
		"port out of range":      {"api.port=70000", "/api/port"},
		"replicas negative":      {"scheduler.replicas=-1", "/scheduler/replicas"},
		"port not a number":      {"monitor.port=http", "/monitor/port"},
		"unknown queue":          {"worker.autoscaling.keda.queues={urgent}", "/worker/autoscaling/keda/queues"},
		"storage backend":        {"config.storage.backend=gcs", "/config/storage/backend"},
		"ingress pathType":       {"ingress.hosts[0].host=a.example,ingress.hosts[0].paths[0].path=/,ingress.hosts[0].paths[0].pathType=Regex", "pathType"},
		"digest format":          {"image.digests.api=latest", "/image/digests/api"},
		"egress purpose typo":    {"config.egress.webhook.allowCIDRs={10.0.0.0/8}", "additional properties 'webhook' not allowed"},
		"egress list not a list": {"config.egress.jwks.allowCIDRs=10.0.0.0/8", "/config/egress/jwks/allowCIDRs"},
		// The library names the offending key; the location it prints varies.
		"extraEnv name": {"config.extraEnv.PATH=/bin", "'PATH' does not match pattern '^TASKFORGE_"},
	}
	for name, tc := range cases {
		args := append(append([]string{}, defaultValues...), "--set", tc.set)
		_, err := render(t, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want a schema error containing %q, got %v", name, tc.want, err)
		}
		if err := lintStrict(args...); err == nil {
			t.Errorf("%s: helm lint passes bad values", name)
		}
	}
	if _, err := os.Stat(filepath.Join(chartDir, "values.schema.json")); err != nil {
		t.Fatal(err)
	}
}
