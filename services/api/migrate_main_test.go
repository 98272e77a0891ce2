package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestBinaryMigrateDown drives migrate status, down and up through the
// binary: down rolls back the newest migration (status shows it pending),
// up applies it again, a down beyond the applied migrations is refused with
// nothing rolled back, and the help warns that a down loses data.
func TestBinaryMigrateDown(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	bin := testenv.BuildBinary(t, ".")
	env := append(os.Environ(),
		"TASKFORGE_DATABASE_URL="+pg.URL,
		"TASKFORGE_REDIS_ADDR=127.0.0.1:1",
		"TASKFORGE_LOG_LEVEL=warn",
	)
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return testenv.RunBinary(t, bin, env, args...)
	}
	status := func() []string {
		t.Helper()
		out, errOut, code := run("migrate", "status")
		require.Equal(t, 0, code, errOut)
		return strings.Split(strings.TrimSpace(out), "\n")
	}

	lines := status()
	require.GreaterOrEqual(t, len(lines), 2)
	for _, l := range lines {
		require.Contains(t, l, " applied ", l)
	}
	require.Contains(t, lines[0], "00001_tasks.sql")
	require.Contains(t, lines[0], "[down drops data]")
	newest := lines[len(lines)-1]
	name := strings.Fields(newest)[3] // version, state, time, file name

	out, errOut, code := run("migrate", "down")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "rolled back "+name+"\n", out)
	lines = status()
	require.Contains(t, lines[len(lines)-1], " pending  "+name)
	require.Contains(t, lines[len(lines)-2], " applied ")

	out, errOut, code = run("migrate", "up")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "migrations applied")
	require.Contains(t, status()[len(lines)-1], " applied ")

	// Beyond the applied migrations: refused, nothing rolled back.
	_, errOut, code = run("migrate", "down", "100000")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "migrate down 100000 refused, nothing was rolled back")
	for _, l := range status() {
		require.Contains(t, l, " applied ", l)
	}
	for _, bad := range [][]string{{"migrate", "down", "0"}, {"migrate", "down", "x"}, {"migrate", "sideways"}, {"migrate"}} {
		_, errOut, code = run(bad...)
		require.NotEqual(t, 0, code, bad)
		require.Contains(t, errOut, "usage: migrate up | migrate down [N] | migrate status", bad)
	}

	// Two at once, newest first.
	out, errOut, code = run("migrate", "down", "2")
	require.Equal(t, 0, code, errOut)
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 2)
	require.True(t, strings.HasPrefix(out, "rolled back "+name+"\n"), out)
	_, errOut, code = run("migrate", "up")
	require.Equal(t, 0, code, errOut)

	out, _, code = run("migrate", "down", "--help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "migrate down [N]")
	require.Contains(t, out, "loses its data")
}
