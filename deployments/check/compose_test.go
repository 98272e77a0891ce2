package check

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// composeFile and envExample are relative to this module's directory, where go
// test runs.
var (
	composeFile = filepath.Join("..", "compose.yaml")
	envExample  = filepath.Join("..", ".env.example")
)

// loadCompose loads compose.yaml as `docker compose config` would: schema
// validation, interpolation, merge keys, normalization and consistency checks.
// env is the complete environment; the OS environment is not read.
func loadCompose(t *testing.T, env []string) (*types.Project, error) {
	t.Helper()
	opts, err := cli.NewProjectOptions(
		[]string{composeFile},
		cli.WithWorkingDirectory(".."),
		cli.WithEnv(env),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return opts.LoadProject(ctx)
}

// exampleEnv reads the KEY=VALUE lines of .env.example.
func exampleEnv(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(envExample)
	if err != nil {
		t.Fatalf("read %s: %v", envExample, err)
	}
	var env []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.Contains(line, "=") {
			t.Fatalf("%s: %q is not KEY=VALUE", envExample, line)
		}
		env = append(env, line)
	}
	return env
}

func TestComposeLoadsWithExampleEnv(t *testing.T) {
	p, err := loadCompose(t, exampleEnv(t))
	if err != nil {
		t.Fatalf("compose.yaml does not load: %v", err)
	}
	want := []string{"redis", "postgres", "migrate", "api", "worker", "scheduler", "monitor"}
	for _, name := range want {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("service %q missing", name)
		}
	}
	if len(p.Services) != len(want) {
		t.Errorf("services = %v, want exactly %v", p.ServiceNames(), want)
	}
	t.Logf("compose project %q loaded: services %v", p.Name, p.ServiceNames())
}

func TestComposeRequiresSecrets(t *testing.T) {
	full := exampleEnv(t)
	for _, required := range []string{"REDIS_PASSWORD", "POSTGRES_PASSWORD", "TASKFORGE_AUTH_JWT_SECRET", "TASKFORGE_CRYPTO_KEYS", "TASKFORGE_STORAGE_SIGNING_KEY"} {
		var env []string
		for _, kv := range full {
			if !strings.HasPrefix(kv, required+"=") {
				env = append(env, kv)
			}
		}
		if _, err := loadCompose(t, env); err == nil {
			t.Errorf("compose.yaml loads without %s; it must refuse", required)
		} else if !strings.Contains(err.Error(), required) {
			t.Errorf("error without %s does not name it: %v", required, err)
		}
	}
}

func TestComposeServices(t *testing.T) {
	p, err := loadCompose(t, exampleEnv(t))
	if err != nil {
		t.Fatal(err)
	}

	// Redis keeps the queues across restarts: AOF on.
	redis := p.Services["redis"]
	cmd := strings.Join(redis.Command, " ")
	if !strings.Contains(cmd, "--appendonly yes") {
		t.Errorf("redis command %q lacks --appendonly yes", cmd)
	}
	if len(redis.Volumes) == 0 || redis.Volumes[0].Target != "/data" {
		t.Errorf("redis has no volume on /data: %+v", redis.Volumes)
	}
	if len(p.Services["postgres"].Volumes) == 0 {
		t.Error("postgres has no data volume")
	}

	// Every published port binds to loopback.
	for name, s := range p.Services {
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %d on %q, want 127.0.0.1", name, port.Target, port.HostIP)
			}
		}
	}
	for name, port := range map[string]uint32{"api": 8080, "monitor": 8081} {
		found := false
		for _, pc := range p.Services[name].Ports {
			found = found || pc.Target == port
		}
		if !found {
			t.Errorf("%s does not publish %d", name, port)
		}
	}

	// Long-running services have health checks.
	health := map[string]string{
		"redis": "", "postgres": "",
		"api": "http://127.0.0.1:8080/readyz", "worker": "http://127.0.0.1:9091/readyz",
		"scheduler": "http://127.0.0.1:9092/readyz", "monitor": "http://127.0.0.1:8081/readyz",
	}
	for name, url := range health {
		hc := p.Services[name].HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) == 0 {
			t.Errorf("%s has no health check", name)
			continue
		}
		if url != "" && !strings.Contains(strings.Join(hc.Test, " "), url) {
			t.Errorf("%s health check %v does not probe %s", name, hc.Test, url)
		}
	}

	// Start order: migrate after a healthy postgres; the services after a
	// successful migration and healthy stores.
	if c := p.Services["migrate"].DependsOn["postgres"].Condition; c != types.ServiceConditionHealthy {
		t.Errorf("migrate depends on postgres with %q, want service_healthy", c)
	}
	if cmd := strings.Join(p.Services["migrate"].Command, " "); cmd != "migrate up" {
		t.Errorf("migrate command = %q, want \"migrate up\"", cmd)
	}
	for _, name := range []string{"api", "worker", "scheduler", "monitor"} {
		s := p.Services[name]
		if c := s.DependsOn["migrate"].Condition; c != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s depends on migrate with %q, want service_completed_successfully", name, c)
		}
		for _, store := range []string{"redis", "postgres"} {
			if c := s.DependsOn[store].Condition; c != types.ServiceConditionHealthy {
				t.Errorf("%s depends on %s with %q, want service_healthy", name, store, c)
			}
		}
		if s.Build == nil || s.Build.Target != name && !(name == "migrate" && s.Build.Target == "api") {
			t.Errorf("%s does not build its own Dockerfile target", name)
		}
		if s.Environment["TASKFORGE_ENV"] == nil || *s.Environment["TASKFORGE_ENV"] != "production" {
			t.Errorf("%s does not run with TASKFORGE_ENV=production", name)
		}
		if !s.ReadOnly {
			t.Errorf("%s root filesystem is writable", name)
		}
	}

	// Two workers, and they get longer to stop than their shutdown timeout.
	w := p.Services["worker"]
	if w.Deploy == nil || w.Deploy.Replicas == nil || *w.Deploy.Replicas != 2 {
		t.Errorf("worker replicas = %v, want 2", w.Deploy)
	}
	if w.StopGracePeriod == nil || time.Duration(*w.StopGracePeriod) <= 30*time.Second {
		t.Errorf("worker stop_grace_period %v must exceed the 30s shutdown timeout", w.StopGracePeriod)
	}
	if len(w.Ports) != 0 {
		t.Errorf("worker publishes ports %v; two replicas would clash", w.Ports)
	}
}
