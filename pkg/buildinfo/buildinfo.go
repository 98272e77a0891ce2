// Package buildinfo tells which build of Taskforge is running: the version and
// revision the release build stamps in with
//
//	-ldflags "-X github.com/taskforge/taskforge/pkg/buildinfo.version=v1.2.3
//	          -X github.com/taskforge/taskforge/pkg/buildinfo.revision=<commit>"
//
// (deployments/docker/Dockerfile does), else what the Go toolchain recorded
// (the module version and the VCS revision of a build from a git checkout), and
// the Go version. Every service prints it for --version and exports it as
// taskforge_build_info{version,revision,goversion} 1.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Set by the linker (-X); empty in a plain go build.
var (
	version  string
	revision string
)

// Info is one build's identity.
type Info struct {
	Version   string
	Revision  string
	GoVersion string
}

var (
	once sync.Once
	info Info
)

// Get returns the running binary's build information.
func Get() Info {
	once.Do(func() { info = resolve(version, revision, debug.ReadBuildInfo) })
	return info
}

// resolve prefers the linker's values, then the toolchain's records; it never
// returns an empty field.
func resolve(ver, rev string, read func() (*debug.BuildInfo, bool)) Info {
	in := Info{Version: ver, Revision: rev, GoVersion: runtime.Version()}
	if bi, ok := read(); ok {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if in.Revision == "" {
					in.Revision = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && rev == "" && in.Revision != "" {
			in.Revision += "-dirty"
		}
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
	}
	if in.Version == "" {
		in.Version = "dev"
	}
	if in.Revision == "" {
		in.Revision = "unknown"
	}
	return in
}

// String is the one line --version prints, e.g.
// "taskforge-api v1.2.3 (revision 0a1b2c3, go1.26.8)".
func (i Info) String(program string) string {
	return fmt.Sprintf("%s %s (revision %s, %s)", program, i.Version, i.Revision, i.GoVersion)
}

// Register adds taskforge_build_info{version,revision,goversion} (always 1) to reg.
func Register(reg prometheus.Registerer) error {
	in := Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "taskforge_build_info",
		Help: "The running build: always 1, labelled with its version, VCS revision and Go version.",
		ConstLabels: prometheus.Labels{
			"version": in.Version, "revision": in.Revision, "goversion": in.GoVersion,
		},
	})
	g.Set(1)
	return reg.Register(g)
}
