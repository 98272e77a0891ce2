package boot_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/taskforge/taskforge/pkg/boot"
	"github.com/taskforge/taskforge/pkg/config"
)

func TestKeyring(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		env      string
		keys     map[string]string
		wantErr  string
		wantDev  bool
		wantWarn int
	}{
		{name: "development without keys", env: "development", wantDev: true, wantWarn: 1},
		{name: "development with keys", env: "development", keys: map[string]string{"k1": "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="}},
		{name: "production with keys", env: "production", keys: map[string]string{"k1": "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="}},
		{name: "production without keys", env: "production", wantErr: "crypto.keys"},
		{name: "bad key", env: "production", keys: map[string]string{"k1": "not base64!"}, wantErr: "crypto.keys.k1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := config.Defaults()
			cfg.Env = tc.env
			cfg.Crypto.Keys = tc.keys
			if len(tc.keys) > 0 {
				cfg.Crypto.ActiveKey = "k1"
			}
			core, logs := observer.New(zap.WarnLevel)
			k, err := boot.Keyring(cfg, zap.New(core))
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.Nil(t, k)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantDev, k.Dev())
			require.Equal(t, tc.wantWarn, logs.FilterMessageSnippet("PUBLIC DEVELOPMENT KEY").Len())
			require.Equal(t, tc.wantWarn, logs.Len())
		})
	}
}
