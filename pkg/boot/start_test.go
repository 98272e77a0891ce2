package boot_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/boot"
	"github.com/taskforge/taskforge/pkg/buildinfo"
)

// writeConfig writes a YAML configuration file and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "taskforge.yaml")
	require.NoError(t, os.WriteFile(p, []byte(yaml), 0o600))
	return p
}

func TestStart(t *testing.T) {
	t.Parallel()
	good := writeConfig(t, "env: development\nlog: {level: warn}\nredis: {password: hunter2-redis}\n")
	bad := writeConfig(t, "monitor: {collect_interval: soon}\n")
	tests := []struct {
		name       string
		args       []string
		wantErr    string
		wantDone   bool
		wantStdout string
		wantStderr string
		wantArgs   []string
	}{
		{name: "serve", args: []string{"--config", good}, wantArgs: []string{}},
		{name: "subcommand", args: []string{"--config", good, "migrate", "up"}, wantArgs: []string{"migrate", "up"}},
		{name: "help", args: []string{"--help"}, wantDone: true, wantStdout: "Usage: taskforge-svc [flags] [command]\n\nsvc run   run the service"},
		{name: "help lists flags", args: []string{"-h"}, wantDone: true, wantStdout: "-print-config"},
		{name: "help command", args: []string{"help"}, wantDone: true, wantStdout: "-version"},
		{name: "help before config", args: []string{"--config", bad, "--help"}, wantDone: true, wantStdout: "svc run"},
		{name: "version", args: []string{"--version"}, wantDone: true, wantStdout: "taskforge-svc " + buildinfo.Get().Version + " (revision "},
		{name: "unknown flag hints help", args: []string{"--frobnicate"}, wantErr: "frobnicate", wantStderr: "see taskforge-svc --help"},
		{name: "print config", args: []string{"--config", good, "--print-config"}, wantDone: true, wantStdout: "level: warn"},
		{name: "unknown flag", args: []string{"--frobnicate"}, wantErr: "frobnicate"},
		{name: "invalid config", args: []string{"--config", bad}, wantErr: "monitor.collect_interval"},
		{name: "missing file", args: []string{"--config", filepath.Join(t.TempDir(), "none.yaml")}, wantErr: "none.yaml"},
	}
	t.Run("no commands", func(t *testing.T) {
		t.Parallel()
		var stdout, stderr bytes.Buffer
		_, err := boot.Start(boot.Service{Name: "svc"}, []string{"--config", good, "serve"}, &stdout, &stderr)
		require.ErrorContains(t, err, `unexpected argument "serve": taskforge-svc takes no command`)
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			st, err := boot.Start(boot.Service{Name: "svc", Usage: "svc run   run the service", Commands: true}, tc.args, &stdout, &stderr)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.Contains(t, stderr.String(), tc.wantStderr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantDone, st.Done)
			require.Contains(t, stdout.String(), tc.wantStdout)
			require.NotContains(t, stdout.String(), "hunter2-redis", "secrets are masked")
			require.Contains(t, stderr.String(), tc.wantStderr)
			if tc.wantDone {
				require.Nil(t, st.Log)
				return
			}
			require.NotNil(t, st.Log)
			_ = st.Log.Sync()
			require.Equal(t, tc.wantArgs, st.Flags.Args)
			require.Equal(t, good, st.Flags.ConfigPath)
			require.Equal(t, "warn", st.Config.Log.Level)
			require.Equal(t, "hunter2-redis", st.Config.Redis.Password)
		})
	}
}
