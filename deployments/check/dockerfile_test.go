package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

var (
	dockerfile   = filepath.Join("..", "docker", "Dockerfile")
	dockerignore = filepath.Join("..", "docker", "Dockerfile.dockerignore")
	repoRoot     = filepath.Join("..", "..")
)

// TestDockerfile parses the Dockerfile with BuildKit's own parser (the one
// `docker build` uses) and checks each service target: nonroot distroless
// runtime, a health check, the service's port and entrypoint, OCI labels.
func TestDockerfile(t *testing.T) {
	f, err := os.Open(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("Dockerfile does not parse: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile warning: %s", w.Short)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatalf("Dockerfile instructions: %v", err)
	}
	_ = metaArgs
	byName := map[string]instructions.Stage{}
	for _, s := range stages {
		byName[s.Name] = s
	}

	// The runtime base stage: distroless nonroot, labels, the probe binary.
	rt, ok := byName["runtime"]
	if !ok {
		t.Fatal("no runtime stage")
	}
	if !strings.Contains(rt.BaseName, "RUNTIME_IMAGE") {
		t.Errorf("runtime stage is FROM %s", rt.BaseName)
	}
	labels := map[string]bool{}
	var user string
	for _, c := range rt.Commands {
		switch c := c.(type) {
		case *instructions.LabelCommand:
			for _, kv := range c.Labels {
				labels[kv.Key] = true
			}
		case *instructions.UserCommand:
			user = c.User
		}
	}
	for _, l := range []string{"org.opencontainers.image.source", "org.opencontainers.image.version", "org.opencontainers.image.revision", "org.opencontainers.image.created", "org.opencontainers.image.licenses"} {
		if !labels[l] {
			t.Errorf("runtime stage lacks label %s", l)
		}
	}
	if user != "65532:65532" {
		t.Errorf("runtime USER = %q, want 65532:65532 (distroless nonroot)", user)
	}
	b, _ := os.ReadFile(dockerfile)
	if !strings.Contains(string(b), "ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot") {
		t.Error("runtime image is not distroless static nonroot")
	}

	ports := map[string]string{"api": "8080", "worker": "9091", "scheduler": "9092", "monitor": "8081"}
	for svc, port := range ports {
		s, ok := byName[svc]
		if !ok {
			t.Errorf("no target %s", svc)
			continue
		}
		if s.BaseName != "runtime" {
			t.Errorf("target %s is FROM %s, want runtime", svc, s.BaseName)
		}
		var health, expose, entry, title bool
		for _, c := range s.Commands {
			switch c := c.(type) {
			case *instructions.HealthCheckCommand:
				health = len(c.Health.Test) > 0 && c.Health.Test[0] != "NONE"
			case *instructions.ExposeCommand:
				expose = len(c.Ports) == 1 && c.Ports[0] == port
			case *instructions.EntrypointCommand:
				entry = strings.Join(c.CmdLine, " ") == "/usr/local/bin/"+svc
			case *instructions.LabelCommand:
				for _, kv := range c.Labels {
					title = title || kv.Key == "org.opencontainers.image.title" && strings.Trim(kv.Value, `"`) == "taskforge-"+svc
				}
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					if kv.Key == "HEALTHCHECK_URL" && kv.Value != "http://127.0.0.1:"+port+"/healthz" {
						t.Errorf("%s: HEALTHCHECK_URL %s does not probe port %s", svc, kv.Value, port)
					}
				}
			}
		}
		if !health || !expose || !entry || !title {
			t.Errorf("target %s: healthcheck=%v expose %s=%v entrypoint=%v title=%v", svc, health, port, expose, entry, title)
		}
	}

	// The command-line client: a target of its own, and in the api image.
	cliStage, ok := byName["cli"]
	if !ok {
		t.Error("no target cli")
	} else {
		var entry bool
		for _, c := range cliStage.Commands {
			if e, ok := c.(*instructions.EntrypointCommand); ok {
				entry = strings.Join(e.CmdLine, " ") == "/usr/local/bin/taskforge"
			}
		}
		if cliStage.BaseName != "runtime" || !entry {
			t.Errorf("target cli: FROM %s, entrypoint taskforge %v", cliStage.BaseName, entry)
		}
	}
	var apiHasCLI bool
	for _, c := range byName["api"].Commands {
		if cp, ok := c.(*instructions.CopyCommand); ok && cp.From == "build" && cp.DestPath == "/usr/local/bin/taskforge" {
			apiHasCLI = true
		}
	}
	if !apiHasCLI {
		t.Error("the api image does not carry /usr/local/bin/taskforge")
	}

	// Every COPY source from the build context exists in the repository.
	for _, s := range stages {
		for _, c := range s.Commands {
			cp, ok := c.(*instructions.CopyCommand)
			if !ok || cp.From != "" {
				continue
			}
			for _, src := range cp.SourcePaths {
				if strings.Contains(src, "*") {
					continue
				}
				if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
					t.Errorf("COPY %s: not in the repository", src)
				}
			}
		}
	}

	// The build must compile with CGO off and outside the workspace.
	for _, want := range []string{"CGO_ENABLED=0", "GOWORK=off"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("Dockerfile does not set %s", want)
		}
	}
	ig, err := os.ReadFile(dockerignore)
	if err != nil {
		t.Fatalf("no %s: %v", dockerignore, err)
	}
	for _, want := range []string{"!pkg/", "!services/", "!deployments/docker/healthcheck/"} {
		if !strings.Contains(string(ig), want) {
			t.Errorf("%s does not let %s into the context", dockerignore, want)
		}
	}
}
