package check

import (
	"bytes"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

var chartDir = filepath.Join("..", "helm", "taskforge")

// kubeVersion is the Kubernetes version the chart is rendered for.
const kubeVersion = "1.31.0"

// object is one rendered manifest: its kind, name, raw YAML and, for built-in
// kinds, the typed object decoded strictly.
type object struct {
	Kind, Name string
	Raw        []byte
	Typed      runtime.Object
}

type meta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
}

// strictDecoder decodes built-in kinds, rejecting unknown and duplicate fields.
var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// customKinds are the CRD kinds the chart emits, checked with the structs in
// crds_test.go (strict: unknown fields are errors).
var customKinds = map[string]func([]byte) error{
	"keda.sh/v1alpha1/ScaledObject":           func(b []byte) error { var v ScaledObject; return yaml.UnmarshalStrict(b, &v) },
	"keda.sh/v1alpha1/TriggerAuthentication":  func(b []byte) error { var v TriggerAuthentication; return yaml.UnmarshalStrict(b, &v) },
	"monitoring.coreos.com/v1/ServiceMonitor": func(b []byte) error { var v ServiceMonitor; return yaml.UnmarshalStrict(b, &v) },
	"monitoring.coreos.com/v1/PrometheusRule": func(b []byte) error { var v PrometheusRule; return yaml.UnmarshalStrict(b, &v) },
	"gateway.networking.k8s.io/v1/HTTPRoute":  func(b []byte) error { var v HTTPRoute; return yaml.UnmarshalStrict(b, &v) },
}

// manifests renders the chart and validates every document offline.
type manifests []object

func renderValid(t *testing.T, args ...string) manifests {
	t.Helper()
	out, err := render(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	var objs manifests
	r := utilyaml.NewYAMLReader(bufioReader(out))
	for {
		doc, err := r.Read()
		if errors.Is(err, errEOF) {
			break
		}
		if err != nil {
			t.Fatalf("split rendered YAML: %v", err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var m meta
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("rendered document is not YAML: %v\n%s", err, doc)
		}
		if m.Kind == "" || m.APIVersion == "" || m.Metadata.Name == "" {
			t.Errorf("document without apiVersion/kind/name:\n%s", doc)
			continue
		}
		for _, msg := range validation.IsDNS1123Subdomain(m.Metadata.Name) {
			t.Errorf("%s %s: bad name: %s", m.Kind, m.Metadata.Name, msg)
		}
		if len(m.Metadata.Name) > 63 {
			t.Errorf("%s %s: name longer than 63 characters", m.Kind, m.Metadata.Name)
		}
		var lm struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		}
		_ = yaml.Unmarshal(doc, &lm)
		for k, v := range lm.Metadata.Labels {
			for _, msg := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
				t.Errorf("%s %s: label %s=%s: %s", m.Kind, m.Metadata.Name, k, v, msg)
			}
		}
		o := object{Kind: m.Kind, Name: m.Metadata.Name, Raw: doc}
		if check, ok := customKinds[m.APIVersion+"/"+m.Kind]; ok {
			if err := check(doc); err != nil {
				t.Errorf("%s %s does not match its CRD: %v", m.Kind, m.Metadata.Name, err)
			}
		} else {
			typed, gvk, err := strictDecoder.Decode(doc, nil, nil)
			if err != nil {
				t.Errorf("%s %s (%s) is not a valid Kubernetes object: %v", m.Kind, m.Metadata.Name, m.APIVersion, err)
				continue
			}
			if gvk.Kind != m.Kind {
				t.Errorf("%s decoded as %s", m.Kind, gvk.Kind)
			}
			o.Typed = typed
		}
		objs = append(objs, o)
	}
	if len(objs) == 0 {
		t.Fatal("chart rendered nothing")
	}
	return objs
}

func (ms manifests) get(kind, name string) *object {
	for i := range ms {
		if ms[i].Kind == kind && ms[i].Name == name {
			return &ms[i]
		}
	}
	return nil
}

func (ms manifests) count(kind string) int {
	n := 0
	for _, o := range ms {
		if o.Kind == kind {
			n++
		}
	}
	return n
}

func (ms manifests) deployment(t *testing.T, component string) *appsv1.Deployment {
	t.Helper()
	o := ms.get("Deployment", "tf-taskforge-"+component)
	if o == nil {
		t.Fatalf("no Deployment for %s", component)
	}
	return o.Typed.(*appsv1.Deployment)
}

var components = map[string]string{"api": "http", "worker": "admin", "scheduler": "admin", "monitor": "http"}

var defaultValues = []string{"-f", filepath.Join(chartDir, "ci", "default-values.yaml")}

// checkCommon applies the chart's invariants to one rendering.
func checkCommon(t *testing.T, ms manifests, existingSecret string) {
	t.Helper()
	configMaps, secrets := map[string]*corev1.ConfigMap{}, map[string]bool{}
	if existingSecret != "" {
		secrets[existingSecret] = true
	}
	for _, o := range ms {
		switch v := o.Typed.(type) {
		case *corev1.ConfigMap:
			configMaps[v.Name] = v
		case *corev1.Secret:
			secrets[v.Name] = true
		}
	}
	cm := configMaps["tf-taskforge"]
	if cm == nil {
		t.Fatal("no ConfigMap tf-taskforge")
	}

	for name, port := range components {
		d := ms.deployment(t, name)
		sel, err := metaSelector(d.Spec.Selector)
		if err != nil {
			t.Errorf("%s: selector: %v", name, err)
			continue
		}
		if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: selector does not match the pod labels", name)
		}
		ps := d.Spec.Template.Spec
		if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
			t.Errorf("%s: pod may run as root", name)
		}
		if ps.TerminationGracePeriodSeconds == nil {
			t.Errorf("%s: no terminationGracePeriodSeconds", name)
		}
		if len(ps.Containers) != 1 {
			t.Fatalf("%s: %d containers, want 1", name, len(ps.Containers))
		}
		c := ps.Containers[0]
		if !strings.HasSuffix(strings.Split(c.Image, "@")[0], "/"+name+":0.1.0") && !strings.Contains(c.Image, "/"+name+"@sha256:") {
			t.Errorf("%s: image %q is not the %s image", name, c.Image, name)
		}
		checkProbe(t, name+" liveness", c.LivenessProbe, "/healthz", port)
		checkProbe(t, name+" readiness", c.ReadinessProbe, "/readyz", port)
		if len(c.Ports) != 1 || c.Ports[0].Name != port {
			t.Errorf("%s: ports %+v, want one named %s", name, c.Ports, port)
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[res]; !ok {
				t.Errorf("%s: no %s request", name, res)
			}
			if _, ok := c.Resources.Limits[res]; !ok {
				t.Errorf("%s: no %s limit", name, res)
			}
		}
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: container security context too loose: %+v", name, sc)
		}
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil && configMaps[ef.ConfigMapRef.Name] == nil {
				t.Errorf("%s: envFrom ConfigMap %s is not rendered", name, ef.ConfigMapRef.Name)
			}
			if ef.SecretRef != nil && !secrets[ef.SecretRef.Name] {
				t.Errorf("%s: envFrom Secret %s is neither rendered nor the existing one", name, ef.SecretRef.Name)
			}
		}
		if len(c.EnvFrom) != 2 {
			t.Errorf("%s: envFrom %+v, want the ConfigMap and the Secret", name, c.EnvFrom)
		}
		mounts := map[string]bool{}
		for _, v := range ps.Volumes {
			mounts[v.Name] = true
		}
		for _, m := range c.VolumeMounts {
			if !mounts[m.Name] {
				t.Errorf("%s: mount %s has no volume", name, m.Name)
			}
		}

		svc := ms.get("Service", d.Name)
		if svc == nil {
			t.Errorf("%s: no Service", name)
		} else if s := svc.Typed.(*corev1.Service); !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: Service selector does not match the pods", name)
		} else if s.Spec.Ports[0].TargetPort.StrVal != port {
			t.Errorf("%s: Service targets %v, want %s", name, s.Spec.Ports[0].TargetPort, port)
		}
		pdbObj := ms.get("PodDisruptionBudget", d.Name)
		if pdbObj == nil {
			t.Errorf("%s: no PodDisruptionBudget", name)
		} else {
			pdb := pdbObj.Typed.(*policyv1.PodDisruptionBudget)
			sel, err := metaSelector(pdb.Spec.Selector)
			if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("%s: PDB selector does not match the pods", name)
			}
		}
	}

	// Listen addresses in containers are on all interfaces, at the probed ports.
	for key, want := range map[string]string{
		"TASKFORGE_API_ADDR": "0.0.0.0:8080", "TASKFORGE_WORKER_ADMIN_ADDR": "0.0.0.0:9091",
		"TASKFORGE_SCHEDULER_ADMIN_ADDR": "0.0.0.0:9092", "TASKFORGE_MONITOR_ADDR": "0.0.0.0:8081",
		"TASKFORGE_API_MIGRATE_ON_START": "false",
	} {
		if got := cm.Data[key]; got != want {
			t.Errorf("ConfigMap %s = %q, want %q", key, got, want)
		}
	}

	// The worker gets longer to stop than its own shutdown timeout.
	timeout, err := time.ParseDuration(cm.Data["TASKFORGE_WORKER_SHUTDOWN_TIMEOUT"])
	if err != nil {
		t.Errorf("TASKFORGE_WORKER_SHUTDOWN_TIMEOUT: %v", err)
	}
	w := ms.deployment(t, "worker")
	if grace := time.Duration(*w.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second; grace <= timeout {
		t.Errorf("worker terminationGracePeriodSeconds %v must exceed the shutdown timeout %v", grace, timeout)
	}

	// Every secret-looking key lives in a Secret, never in the ConfigMap.
	for k := range cm.Data {
		for _, word := range []string{"PASSWORD", "SECRET", "_KEYS", "DATABASE_URL", "SIGNING", "ADMIN_KEY", "TOKEN"} {
			if strings.Contains(k, word) {
				t.Errorf("ConfigMap holds %s, which belongs in the Secret", k)
			}
		}
	}
}

func checkProbe(t *testing.T, what string, p *corev1.Probe, path, port string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: no HTTP probe", what)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port.StrVal != port {
		t.Errorf("%s: probe %s on %v, want %s on %s", what, p.HTTPGet.Path, p.HTTPGet.Port.String(), path, port)
	}
}

func TestChartDefaultRendersWithHPAFallback(t *testing.T) {
	ms := renderValid(t, defaultValues...)
	checkCommon(t, ms, "")
	checkMigrationJob(t, ms, false)
	if ms.count("ScaledObject") != 0 {
		t.Error("ScaledObject rendered although the cluster has no KEDA API")
	}
	hpaObj := ms.get("HorizontalPodAutoscaler", "tf-taskforge-worker")
	if hpaObj == nil {
		t.Fatal("no HPA fallback for the worker")
	}
	hpa := hpaObj.Typed.(*autoscalingv2.HorizontalPodAutoscaler)
	if hpa.Spec.ScaleTargetRef.Name != "tf-taskforge-worker" || hpa.Spec.ScaleTargetRef.Kind != "Deployment" {
		t.Errorf("HPA targets %+v", hpa.Spec.ScaleTargetRef)
	}
	if *hpa.Spec.MinReplicas != 2 || hpa.Spec.MaxReplicas != 20 {
		t.Errorf("HPA replicas %d..%d, want 2..20", *hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
	if w := ms.deployment(t, "worker"); w.Spec.Replicas != nil {
		t.Errorf("autoscaled worker Deployment sets replicas=%d; the HPA owns it", *w.Spec.Replicas)
	}
	if s := ms.deployment(t, "scheduler"); s.Spec.Replicas == nil || *s.Spec.Replicas != 2 {
		t.Error("scheduler does not run 2 replicas")
	}
	if a := ms.deployment(t, "api").Spec.Template.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != "8080" {
		t.Errorf("api pods lack scrape annotations: %v", a)
	}
	if ms.count("ServiceMonitor") != 0 {
		t.Error("ServiceMonitor rendered while disabled")
	}
	t.Logf("default values: %d objects valid", len(ms))
}

func TestChartWithKEDA(t *testing.T) {
	ms := renderValid(t, append(defaultValues, "--api-versions", "keda.sh/v1alpha1/ScaledObject")...)
	checkCommon(t, ms, "")
	if ms.count("HorizontalPodAutoscaler") != 0 {
		t.Error("HPA rendered beside the ScaledObject")
	}
	so := scaledObject(t, ms)
	if so.Spec.ScaleTargetRef.Name != "tf-taskforge-worker" {
		t.Errorf("ScaledObject targets %q", so.Spec.ScaleTargetRef.Name)
	}
	if *so.Spec.MinReplicaCount != 2 || *so.Spec.MaxReplicaCount != 20 {
		t.Errorf("ScaledObject replicas %d..%d, want 2..20", *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount)
	}
	var lists []string
	for _, tr := range so.Spec.Triggers {
		if tr.Type != "redis" {
			t.Errorf("trigger type %q, want redis", tr.Type)
		}
		lists = append(lists, tr.Metadata["listName"])
		if tr.Metadata["address"] != "redis-master:6379" || tr.Metadata["listLength"] == "" {
			t.Errorf("trigger metadata %v", tr.Metadata)
		}
		if tr.AuthenticationRef == nil || ms.get("TriggerAuthentication", tr.AuthenticationRef.Name) == nil {
			t.Errorf("trigger %s: authenticationRef not rendered", tr.Name)
		}
	}
	want := []string{"asynq:{critical}:pending", "asynq:{high}:pending", "asynq:{normal}:pending", "asynq:{low}:pending"}
	if strings.Join(lists, " ") != strings.Join(want, " ") {
		t.Errorf("KEDA list names %v, want %v", lists, want)
	}
	if w := ms.deployment(t, "worker"); w.Spec.Replicas != nil {
		t.Error("KEDA-scaled worker Deployment sets replicas")
	}
}

func TestChartFullOptions(t *testing.T) {
	ms := renderValid(t, "-f", filepath.Join(chartDir, "ci", "full-values.yaml"))
	checkCommon(t, ms, "taskforge-secrets")
	checkMigrationJob(t, ms, true)
	if ms.get("Secret", "tf-taskforge") != nil {
		t.Error("chart renders its own Secret although existingSecret is set")
	}
	so := scaledObject(t, ms)
	for _, tr := range so.Spec.Triggers {
		if tr.Type != "redis-sentinel" || tr.Metadata["sentinelMaster"] != "mymaster" || !strings.Contains(tr.Metadata["addresses"], "sentinel-0:26379") {
			t.Errorf("sentinel trigger %+v", tr)
		}
	}
	if n := ms.count("ServiceMonitor"); n != 4 {
		t.Errorf("%d ServiceMonitors, want 4", n)
	}
	if a := ms.deployment(t, "api").Spec.Template.Annotations; a["prometheus.io/scrape"] != "" {
		t.Error("scrape annotations rendered although disabled")
	}
	if img := ms.deployment(t, "api").Spec.Template.Spec.Containers[0].Image; !strings.Contains(img, "@sha256:") {
		t.Errorf("api image %q not pinned by digest", img)
	}
	found := false
	for _, v := range ms.deployment(t, "worker").Spec.Template.Spec.Volumes {
		found = found || (v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "taskforge-results")
	}
	if !found {
		t.Error("worker does not mount the shared results claim")
	}
}

// TestChartEgressAllowLists: config.egress.allowCIDRs and each purpose's
// allowCIDRs reach the ConfigMap as the variables pkg/config reads
// (TASKFORGE_EGRESS_ALLOW_CIDRS, TASKFORGE_EGRESS_<PURPOSE>_ALLOW_CIDRS), empty
// by default so that every purpose falls back to the shared list.
func TestChartEgressAllowLists(t *testing.T) {
	configData := func(ms manifests) map[string]string {
		t.Helper()
		o := ms.get("ConfigMap", "tf-taskforge")
		if o == nil {
			t.Fatal("no ConfigMap tf-taskforge")
		}
		return o.Typed.(*corev1.ConfigMap).Data
	}
	keys := []string{"TASKFORGE_EGRESS_ALLOW_CIDRS", "TASKFORGE_EGRESS_PRICE_ALLOW_CIDRS", "TASKFORGE_EGRESS_NOTIFY_ALLOW_CIDRS",
		"TASKFORGE_EGRESS_CALLBACKS_ALLOW_CIDRS", "TASKFORGE_EGRESS_WEBHOOKS_ALLOW_CIDRS", "TASKFORGE_EGRESS_JWKS_ALLOW_CIDRS"}
	def := configData(renderValid(t, defaultValues...))
	for _, k := range keys {
		if got, ok := def[k]; !ok || got != "" {
			t.Errorf("default ConfigMap %s = %q (present %v), want an empty list", k, got, ok)
		}
	}
	full := configData(renderValid(t, "-f", filepath.Join(chartDir, "ci", "full-values.yaml")))
	for k, want := range map[string]string{
		"TASKFORGE_EGRESS_ALLOW_CIDRS":           "10.0.0.0/8",
		"TASKFORGE_EGRESS_WEBHOOKS_ALLOW_CIDRS":  "192.168.10.0/24,172.16.0.0/12",
		"TASKFORGE_EGRESS_JWKS_ALLOW_CIDRS":      "10.20.0.0/16",
		"TASKFORGE_EGRESS_PRICE_ALLOW_CIDRS":     "",
		"TASKFORGE_EGRESS_NOTIFY_ALLOW_CIDRS":    "",
		"TASKFORGE_EGRESS_CALLBACKS_ALLOW_CIDRS": "",
	} {
		if got := full[k]; got != want {
			t.Errorf("ConfigMap %s = %q, want %q", k, got, want)
		}
	}
	set := configData(renderValid(t, append(append([]string{}, defaultValues...),
		"--set", "config.egress.price.allowCIDRs={10.30.0.0/16}",
		"--set", "config.egress.notify.allowCIDRs={10.40.0.0/16}",
		"--set", "config.egress.callbacks.allowCIDRs={10.50.0.0/16,10.51.0.0/16}")...))
	for k, want := range map[string]string{
		"TASKFORGE_EGRESS_PRICE_ALLOW_CIDRS":     "10.30.0.0/16",
		"TASKFORGE_EGRESS_NOTIFY_ALLOW_CIDRS":    "10.40.0.0/16",
		"TASKFORGE_EGRESS_CALLBACKS_ALLOW_CIDRS": "10.50.0.0/16,10.51.0.0/16",
		"TASKFORGE_EGRESS_ALLOW_CIDRS":           "",
	} {
		if got := set[k]; got != want {
			t.Errorf("--set: ConfigMap %s = %q, want %q", k, got, want)
		}
	}
}

func TestChartFixedReplicasCluster(t *testing.T) {
	ms := renderValid(t, "-f", filepath.Join(chartDir, "ci", "fixed-values.yaml"))
	checkCommon(t, ms, "")
	if ms.count("HorizontalPodAutoscaler")+ms.count("ScaledObject") != 0 {
		t.Error("autoscaler rendered although autoscaling is off")
	}
	if ms.count("Job") != 0 {
		t.Error("migration Job rendered although disabled")
	}
	if w := ms.deployment(t, "worker"); w.Spec.Replicas == nil || *w.Spec.Replicas != 3 {
		t.Error("worker replicas not 3")
	}
}

func TestChartRefusesUnsafeValues(t *testing.T) {
	cases := map[string]struct {
		args []string
		want string
	}{
		"no secrets":        {nil, "secrets.databaseURL is required"},
		"short jwt secret":  {append(append([]string{}, defaultValues...), "--set", "secrets.jwtSecret=short"), "at least 32 characters"},
		"no crypto keys":    {append(append([]string{}, defaultValues...), "--set", "secrets.cryptoKeys="), "secrets.cryptoKeys is required"},
		"grace <= shutdown": {append(append([]string{}, defaultValues...), "--set", "worker.terminationGracePeriodSeconds=30"), "must exceed worker.shutdownTimeoutSeconds"},
		"bad scaler mode":   {append(append([]string{}, defaultValues...), "--set", "worker.autoscaling.mode=vpa"), "value must be one of 'auto', 'keda', 'hpa'"},
	}
	for name, tc := range cases {
		_, err := render(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want an error containing %q, got %v", name, tc.want, err)
		}
	}
}

func TestChartLints(t *testing.T) {
	for _, f := range []string{"default-values.yaml", "full-values.yaml", "fixed-values.yaml"} {
		if err := lintStrict("-f", filepath.Join(chartDir, "ci", f)); err != nil {
			t.Errorf("helm lint --strict with %s: %v", f, err)
		}
	}
}

// checkMigrationJob: a pre-install/pre-upgrade hook running `api migrate up`,
// reading hook-scoped configuration created before it.
func checkMigrationJob(t *testing.T, ms manifests, existingSecret bool) {
	t.Helper()
	o := ms.get("Job", "tf-taskforge-migrate")
	if o == nil {
		t.Fatal("no migration Job")
	}
	job := o.Typed.(*batchv1.Job)
	if h := job.Annotations["helm.sh/hook"]; h != "pre-install,pre-upgrade" {
		t.Errorf("migration Job hook %q", h)
	}
	c := job.Spec.Template.Spec.Containers[0]
	if strings.Join(c.Args, " ") != "migrate up" || !strings.Contains(c.Image, "/api") {
		t.Errorf("migration Job runs %s %v", c.Image, c.Args)
	}
	if job.Spec.Template.Spec.ServiceAccountName != "" {
		t.Error("migration Job uses the release ServiceAccount, which does not exist yet at pre-install")
	}
	for _, ef := range c.EnvFrom {
		var ref string
		var kind string
		switch {
		case ef.ConfigMapRef != nil:
			ref, kind = ef.ConfigMapRef.Name, "ConfigMap"
		case ef.SecretRef != nil:
			ref, kind = ef.SecretRef.Name, "Secret"
		}
		if kind == "Secret" && existingSecret && ref == "taskforge-secrets" {
			continue
		}
		dep := ms.get(kind, ref)
		if dep == nil {
			t.Errorf("migration Job reads %s %s, which is not rendered", kind, ref)
			continue
		}
		var m meta
		_ = yaml.Unmarshal(dep.Raw, &m)
		depWeight, _ := strconv.Atoi(m.Metadata.Annotations["helm.sh/hook-weight"])
		jobWeight, _ := strconv.Atoi(job.Annotations["helm.sh/hook-weight"])
		if m.Metadata.Annotations["helm.sh/hook"] != "pre-install,pre-upgrade" || depWeight >= jobWeight {
			t.Errorf("migration Job reads %s %s, which is not a hook created before it", kind, ref)
		}
	}
}

func scaledObject(t *testing.T, ms manifests) ScaledObject {
	t.Helper()
	o := ms.get("ScaledObject", "tf-taskforge-worker")
	if o == nil {
		t.Fatal("no ScaledObject for the worker")
	}
	var so ScaledObject
	if err := yaml.UnmarshalStrict(o.Raw, &so); err != nil {
		t.Fatal(err)
	}
	return so
}
