package check

import (
	"bufio"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The chart's KEDA triggers must read what Asynq writes: the redis trigger
// the list Asynq keeps a queue's pending tasks in, under the name it has in
// the configured Redis mode, and the prometheus alternative the monitor's
// count of the same list. These tests derive the expected names from the
// sources themselves (Asynq's internal/base in the module cache, at the
// version pkg/go.mod pins; the monitor's metric), so an upgrade that moves a
// key, or a chart edit, fails here instead of leaving the workers unscaled.

// asynqBase parses internal/base/base.go of the Asynq version pkg/go.mod
// requires (go mod download: the module cache, else the Go module proxy).
func asynqBase(t *testing.T) map[string]*ast.FuncDecl {
	t.Helper()
	version := requiredVersion(t, filepath.Join("..", "..", "pkg", "go.mod"), "github.com/hibiken/asynq")
	// Outside any module and workspace, so that no go.mod, go.sum or
	// go.work.sum of the tree is touched.
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/hibiken/asynq@"+version)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download github.com/hibiken/asynq@%s: %v", version, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download -json: %v %s", err, out)
	}
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(mod.Dir, "internal", "base", "base.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	funcs := map[string]*ast.FuncDecl{}
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil {
			funcs[fd.Name.Name] = fd
		}
	}
	return funcs
}

// requiredVersion reads module's version from the require lines of a go.mod.
func requiredVersion(t *testing.T, gomod, module string) string {
	t.Helper()
	f, err := os.Open(gomod)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(fields) >= 2 && fields[0] == module {
			return fields[1]
		}
	}
	t.Fatalf("%s does not require %s", gomod, module)
	return ""
}

// evalKey evaluates the Asynq key function name with string arguments. It
// understands what Asynq's key functions are made of (string literals, the
// parameters, + and calls of other functions of the file) and fails on
// anything else: a function whose shape changed must be looked at by hand.
func evalKey(funcs map[string]*ast.FuncDecl, name string, args ...string) (string, error) {
	fd := funcs[name]
	if fd == nil {
		return "", fmt.Errorf("asynq's internal/base has no func %s", name)
	}
	if len(fd.Body.List) != 1 {
		return "", fmt.Errorf("func %s is not a single return statement", name)
	}
	ret, ok := fd.Body.List[0].(*ast.ReturnStmt)
	if !ok || len(ret.Results) != 1 {
		return "", fmt.Errorf("func %s is not a single return statement", name)
	}
	params := map[string]string{}
	i := 0
	for _, field := range fd.Type.Params.List {
		for _, n := range field.Names {
			if i >= len(args) {
				return "", fmt.Errorf("func %s takes more than %d arguments", name, len(args))
			}
			params[n.Name] = args[i]
			i++
		}
	}
	var eval func(e ast.Expr) (string, error)
	eval = func(e ast.Expr) (string, error) {
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind != token.STRING {
				break
			}
			return strconv.Unquote(e.Value)
		case *ast.Ident:
			if v, ok := params[e.Name]; ok {
				return v, nil
			}
		case *ast.BinaryExpr:
			if e.Op != token.ADD {
				break
			}
			x, err := eval(e.X)
			if err != nil {
				return "", err
			}
			y, err := eval(e.Y)
			return x + y, err
		case *ast.CallExpr:
			fn, ok := e.Fun.(*ast.Ident)
			if !ok {
				break
			}
			var vals []string
			for _, a := range e.Args {
				v, err := eval(a)
				if err != nil {
					return "", err
				}
				vals = append(vals, v)
			}
			return evalKey(funcs, fn.Name, vals...)
		case *ast.ParenExpr:
			return eval(e.X)
		}
		return "", fmt.Errorf("func %s: cannot evaluate %T", name, e)
	}
	return eval(ret.Results[0])
}

// TestKEDAListNamesAreAsynqPendingKeys renders the chart with KEDA in each
// Redis mode and checks every redis trigger: the scaler type of the mode,
// the mode's addresses, and a listName equal to Asynq's PendingKey for its
// queue. Asynq's key functions are mode-independent (the {<queue>} hash tag
// is in every mode's name), which the test also asserts: a key function that
// began to depend on anything but the queue would not evaluate.
func TestKEDAListNamesAreAsynqPendingKeys(t *testing.T) {
	funcs := asynqBase(t)
	for _, tc := range []struct {
		mode, scaler string
		set          []string
		addrKey      string
		addrs        string
	}{
		{mode: "single", scaler: "redis", addrKey: "address", addrs: "redis-master:6379"},
		{mode: "sentinel", scaler: "redis-sentinel", addrKey: "addresses", addrs: "s1:26379,s2:26379,s3:26379",
			set: []string{"config.redis.addrs={s1:26379,s2:26379,s3:26379}", "config.redis.masterName=taskforge"}},
		{mode: "cluster", scaler: "redis-cluster", addrKey: "addresses", addrs: "n1:6379,n2:6379,n3:6379",
			set: []string{"config.redis.addrs={n1:6379,n2:6379,n3:6379}"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			args := append([]string{}, defaultValues...)
			args = append(args, "--api-versions", "keda.sh/v1alpha1/ScaledObject", "--set", "config.redis.mode="+tc.mode)
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			ms := renderValid(t, args...)
			so := scaledObject(t, ms)
			if len(so.Spec.Triggers) != 4 {
				t.Fatalf("%d triggers, want one per queue (4)", len(so.Spec.Triggers))
			}
			for _, tr := range so.Spec.Triggers {
				q := strings.TrimPrefix(tr.Name, "queue-")
				want, err := evalKey(funcs, "PendingKey", q)
				if err != nil {
					t.Fatalf("Asynq's PendingKey: %v", err)
				}
				if tr.Type != tc.scaler {
					t.Errorf("trigger %s: type %q, want %q", tr.Name, tr.Type, tc.scaler)
				}
				if got := tr.Metadata["listName"]; got != want {
					t.Errorf("trigger %s: listName %q, Asynq keeps the queue's pending tasks in %q", tr.Name, got, want)
				}
				if got := tr.Metadata[tc.addrKey]; got != tc.addrs {
					t.Errorf("trigger %s: %s %q, want %q", tr.Name, tc.addrKey, got, tc.addrs)
				}
				if tc.mode == "sentinel" && tr.Metadata["sentinelMaster"] != "taskforge" {
					t.Errorf("trigger %s: sentinelMaster %q", tr.Name, tr.Metadata["sentinelMaster"])
				}
				if tc.mode == "cluster" && tr.Metadata["databaseIndex"] != "" {
					t.Errorf("trigger %s: a cluster has no database index, got %q", tr.Name, tr.Metadata["databaseIndex"])
				}
				// One slot per queue in a cluster: the name carries the queue's
				// hash tag.
				if !strings.Contains(want, "{"+q+"}") {
					t.Errorf("Asynq's pending key %q has no {%s} hash tag", want, q)
				}
			}
		})
	}
}

// TestKEDAPrometheusTriggerReadsTheMonitorsMetric renders the prometheus
// alternative: one prometheus trigger per queue whose query names the
// monitor's queue-size metric with the labels the monitor exports, the
// thresholds of the redis trigger, and no Redis credentials.
func TestKEDAPrometheusTriggerReadsTheMonitorsMetric(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "services", "monitor", "internal", "queuemetrics", "queuemetrics.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"taskforge_queue_size"`, `"queue"`, `"state"`, `"pending"`} {
		if !strings.Contains(string(src), s) {
			t.Fatalf("the monitor's queuemetrics no longer mentions %s: fix the chart's prometheus query", s)
		}
	}
	args := append([]string{}, defaultValues...)
	args = append(args, "--api-versions", "keda.sh/v1alpha1/ScaledObject",
		"--set", "worker.autoscaling.keda.trigger=prometheus",
		"--set", "worker.autoscaling.keda.prometheus.serverAddress=http://prometheus:9090",
		"--set", `worker.autoscaling.keda.prometheus.selector=namespace="tf"`)
	ms := renderValid(t, args...)
	so := scaledObject(t, ms)
	if ms.count("TriggerAuthentication") != 0 {
		t.Error("TriggerAuthentication rendered for prometheus triggers")
	}
	if len(so.Spec.Triggers) != 4 {
		t.Fatalf("%d triggers, want 4", len(so.Spec.Triggers))
	}
	for _, tr := range so.Spec.Triggers {
		q := strings.TrimPrefix(tr.Name, "queue-")
		want := fmt.Sprintf(`max(taskforge_queue_size{queue=%q,state="pending",namespace="tf"})`, q)
		if tr.Type != "prometheus" || tr.Metadata["query"] != want || tr.Metadata["serverAddress"] != "http://prometheus:9090" {
			t.Errorf("trigger %s: %s %v, want the query %s", tr.Name, tr.Type, tr.Metadata, want)
		}
		if tr.Metadata["threshold"] != "50" || tr.Metadata["activationThreshold"] != "0" {
			t.Errorf("trigger %s: thresholds %v", tr.Name, tr.Metadata)
		}
		if tr.AuthenticationRef != nil {
			t.Errorf("trigger %s has Redis credentials", tr.Name)
		}
	}
	// Without a server address the chart refuses to render.
	bad := append([]string{}, defaultValues...)
	bad = append(bad, "--api-versions", "keda.sh/v1alpha1/ScaledObject", "--set", "worker.autoscaling.keda.trigger=prometheus")
	if _, err := render(t, bad...); err == nil || !strings.Contains(err.Error(), "prometheus.serverAddress") {
		t.Errorf("prometheus trigger without a server address: %v", err)
	}
}
