package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// repoRoot is the repository holding this module.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "go.work"))
	return root
}

// treeDigest hashes the files of dir (names and contents).
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		h.Write([]byte(e.Name() + "\x00"))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// runScript runs a repository script with extra environment and returns its
// combined output and error.
func runScript(t *testing.T, root string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(root, name), args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestProtoCheckNeverTouchesTheTree: a protoc failure (here a missing import)
// makes both the check and the generator fail, naming the problem, and leaves
// the committed generated code exactly as it was; a passing check changes
// nothing either.
func TestProtoCheckNeverTouchesTheTree(t *testing.T) {
	if testing.Short() {
		t.Skip("runs protoc (installed by scripts/install-protoc.sh)")
	}
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Fatal("protoc missing: scripts/test.sh installs it with scripts/install-protoc.sh")
	}
	root := repoRoot(t)
	gen := filepath.Join(root, "pkg", "taskpb")
	before := treeDigest(t, gen)

	// A source tree whose options.proto imports a file that no include holds.
	broken := t.TempDir()
	src := filepath.Join(root, "proto", "taskforge", "v1")
	dst := filepath.Join(broken, "taskforge", "v1")
	require.NoError(t, os.MkdirAll(dst, 0o755))
	entries, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		if e.Name() == "options.proto" {
			data = []byte(strings.Replace(string(data), `import "google/protobuf/descriptor.proto";`,
				`import "google/protobuf/descriptor.proto";`+"\nimport \"taskforge/v1/missing.proto\";", 1))
			require.Contains(t, string(data), "missing.proto")
		}
		require.NoError(t, os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644))
	}
	env := []string{"PROTO_DIR=" + broken, "SKIP_PROTOC_INSTALL=1"}
	for _, args := range [][]string{{"--check"}, nil} {
		out, err := runScript(t, root, env, "scripts/proto.sh", args...)
		require.Error(t, err, "proto.sh %v with a missing import must fail:\n%s", args, out)
		require.Contains(t, out, "missing.proto", "the error names what is missing")
		require.Contains(t, out, "left unchanged")
		require.Equal(t, before, treeDigest(t, gen), "proto.sh %v changed pkg/taskpb", args)
	}

	out, err := runScript(t, root, []string{"SKIP_PROTOC_INSTALL=1"}, "scripts/proto.sh", "--check")
	require.NoError(t, err, out)
	require.Equal(t, before, treeDigest(t, gen))
}
