package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func TestResolve(t *testing.T) {
	t.Parallel()
	vcs := func(rev, modified string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified},
			}}, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	tests := []struct {
		name     string
		ver, rev string
		read     func() (*debug.BuildInfo, bool)
		want     Info
	}{
		{"linker flags win", "v1.2.3", "abc123", vcs("fff", "true"), Info{"v1.2.3", "abc123", "go1.99.1"}},
		{"git checkout", "", "", vcs("0a1b2c", "false"), Info{"dev", "0a1b2c", "go1.99.1"}},
		{"dirty checkout", "", "", vcs("0a1b2c", "true"), Info{"dev", "0a1b2c-dirty", "go1.99.1"}},
		{"nothing recorded", "", "", none, Info{"dev", "unknown", Get().GoVersion}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, resolve(tc.ver, tc.rev, tc.read))
		})
	}
}

func TestRegister(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	require.NoError(t, Register(reg))
	in := Get()
	want := `# HELP taskforge_build_info The running build: always 1, labelled with its version, VCS revision and Go version.
# TYPE taskforge_build_info gauge
taskforge_build_info{goversion="` + in.GoVersion + `",revision="` + in.Revision + `",version="` + in.Version + `"} 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "taskforge_build_info"))
	require.Equal(t, "taskforge-x "+in.Version+" (revision "+in.Revision+", "+in.GoVersion+")", in.String("taskforge-x"))
}
