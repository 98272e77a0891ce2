package testenv_test

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestBuildBinaryBuildsOnce(t *testing.T) {
	t.Parallel()
	a := testenv.BuildBinary(t, "testdata/sigserver")
	b := testenv.BuildBinary(t, "./testdata/sigserver")
	require.Equal(t, a, b, "one build per package directory")
	require.FileExists(t, a)
}

func TestProcess(t *testing.T) {
	t.Parallel()
	bin := testenv.BuildBinary(t, "testdata/sigserver")
	for _, tc := range []struct {
		name     string
		exitCode string
	}{{"clean exit", "0"}, {"failing exit", "3"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := testenv.FreeAddr(t)
			p := testenv.StartProcess(t, bin, []string{"a", "b"}, testenv.Environ("GREETING=hello", "ADDR="+addr, "EXIT_CODE="+tc.exitCode))
			p.WaitHTTP(t, "http://"+addr+"/", 30*time.Second)
			require.False(t, p.Exited())
			require.ErrorIs(t, p.Wait(10*time.Millisecond), testenv.ErrStillRunning)
			require.Contains(t, p.Output(), "a b hello")

			err := p.Stop(t, syscall.SIGTERM, 10*time.Second)
			require.True(t, p.Exited())
			require.Contains(t, p.Tail(1), "stopping")
			if tc.exitCode == "0" {
				require.NoError(t, err)
				return
			}
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit)
			require.Equal(t, 3, exit.ExitCode())
		})
	}
}

func TestEnvironDropsTaskforgeVariables(t *testing.T) {
	t.Setenv("TASKFORGE_SOMETHING", "x")
	env := testenv.Environ("TASKFORGE_API_ADDR=127.0.0.1:1")
	require.NotContains(t, env, "TASKFORGE_SOMETHING=x")
	require.Equal(t, "TASKFORGE_API_ADDR=127.0.0.1:1", env[len(env)-1])
}
