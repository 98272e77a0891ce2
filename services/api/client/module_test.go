package client_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportableFromOutside builds a throwaway module outside the workspace
// that imports the client as another program would: the module graph must
// hold published modules only (no pkg v0.0.0, no replace of this project's
// other modules), so go list -m all and go vet succeed. The client is taken
// from this directory by a replace in the throwaway module only; the other
// modules come from the module cache (GOPROXY=off: no network).
func TestImportableFromOutside(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/importer\n\ngo 1.26\n\n"+
		"require github.com/taskforge/taskforge/services/api/client v0.0.0\n\n"+
		"replace github.com/taskforge/taskforge/services/api/client => "+here+"\n")
	write("main.go", `package main

import (
	"context"
	"fmt"
	"os"

	"github.com/taskforge/taskforge/services/api/client"
)

func main() {
	c, err := client.NewClientWithResponses(os.Getenv("TASKFORGE_URL"), client.WithBearerToken(os.Getenv("TASKFORGE_TOKEN")))
	if err != nil {
		panic(err)
	}
	resp, err := c.GetTaskWithResponse(context.Background(), os.Args[1])
	if err != nil {
		panic(err)
	}
	if err := client.ErrorFrom(resp.StatusCode(), resp.HTTPResponse.Header.Get("Content-Type"), resp.Body); err != nil {
		panic(err)
	}
	fmt.Println(resp.JSON200.Status)
}
`)
	// The client's own sums, as a published module would bring them.
	sums, err := os.ReadFile(filepath.Join(here, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	write("go.sum", string(sums))
	run := func(args ...string) string {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GOPROXY=off", "GOSUMDB=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	mods := run("list", "-m", "all")
	for _, line := range strings.Split(strings.TrimSpace(mods), "\n") {
		if strings.HasPrefix(line, "github.com/taskforge/") && !strings.HasPrefix(line, "github.com/taskforge/taskforge/services/api/client ") {
			t.Errorf("the client pulls in %q", line)
		}
	}
	if !strings.Contains(mods, "github.com/oapi-codegen/runtime") {
		t.Errorf("go list -m all lacks the client's dependency:\n%s", mods)
	}
	if strings.Contains(mods, "oapi-codegen/oapi-codegen") {
		t.Errorf("the generator is a tool of services/api, not a dependency of importers:\n%s", mods)
	}
	run("vet", "./...")
	run("build", "-o", filepath.Join(dir, "importer"), ".")
}
