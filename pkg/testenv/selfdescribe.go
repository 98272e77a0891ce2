package testenv

import (
	"bytes"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// RunBinary runs bin with args to completion (no server, nothing to stop) and
// returns its stdout, stderr and exit code.
func RunBinary(tb testing.TB, bin string, env []string, args ...string) (stdout, stderr string, code int) {
	tb.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errOut.String(), ee.ExitCode()
	}
	require.NoError(tb, err)
	return out.String(), errOut.String(), 0
}

// RequireSelfDescribing checks that a service binary built by BuildBinary
// speaks for itself: --help, -h and help print its usage (with helpWants in
// it and every shared flag) on stdout and exit 0; --version prints the stamped
// version, revision and Go version; an unknown flag exits non-zero pointing
// at --help.
func RequireSelfDescribing(tb testing.TB, bin, program string, helpWants ...string) {
	tb.Helper()
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		out, errOut, code := RunBinary(tb, bin, nil, args...)
		require.Equal(tb, 0, code, "%s %v: %s", program, args, errOut)
		require.Contains(tb, out, "Usage: "+program+" [flags]")
		for _, want := range append([]string{"-config", "-print-config", "-version"}, helpWants...) {
			require.Contains(tb, out, want, "%s %v", program, args)
		}
	}
	out, errOut, code := RunBinary(tb, bin, nil, "--version")
	require.Equal(tb, 0, code, errOut)
	require.Equal(tb, program+" "+BinaryVersion+" (revision "+BinaryRevision+", "+runtime.Version()+")\n", out)

	_, errOut, code = RunBinary(tb, bin, nil, "--no-such-flag")
	require.NotEqual(tb, 0, code)
	require.True(tb, strings.Contains(errOut, "no-such-flag") && strings.Contains(errOut, program+" --help"), errOut)
}

// RequireSelfDescribingService is RequireSelfDescribing for a service that
// takes no command: its help says so and any argument left after the flags is
// refused.
func RequireSelfDescribingService(tb testing.TB, bin, program string) {
	tb.Helper()
	RequireSelfDescribing(tb, bin, program, "takes no command")
	_, errOut, code := RunBinary(tb, bin, nil, "serve")
	require.NotEqual(tb, 0, code)
	require.Contains(tb, errOut, `unexpected argument "serve"`)
}

// BuildInfoMetric is the taskforge_build_info sample a binary built by
// BuildBinary exports.
func BuildInfoMetric() string {
	return `taskforge_build_info{goversion="` + runtime.Version() + `",revision="` + BinaryRevision +
		`",version="` + BinaryVersion + `"} 1`
}
