package config_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/config"
)

func TestTracingSection(t *testing.T) {
	clearEnv(t)
	cfg, err := config.Load("")
	require.NoError(t, err)
	require.False(t, cfg.Tracing.Enabled, "tracing is off by default")
	require.Equal(t, 1.0, cfg.Tracing.SampleRatio)

	t.Setenv("TASKFORGE_TRACING_ENABLED", "true")
	t.Setenv("TASKFORGE_TRACING_ENDPOINT", "http://127.0.0.1:4318")
	t.Setenv("TASKFORGE_TRACING_SAMPLE_RATIO", "0.25")
	t.Setenv("TASKFORGE_TRACING_SERVICE_NAME", "taskforge-api-eu")
	cfg, err = config.Load("")
	require.NoError(t, err)
	require.Equal(t, config.TracingConfig{Enabled: true, Endpoint: "http://127.0.0.1:4318", SampleRatio: 0.25,
		ServiceName: "taskforge-api-eu"}, cfg.Tracing)
	require.NoError(t, cfg.Validate())

	for _, tc := range []struct {
		name string
		set  func(*config.TracingConfig)
		key  string
	}{
		{"ratio above 1", func(c *config.TracingConfig) { c.SampleRatio = 1.5 }, "tracing.sample_ratio"},
		{"negative ratio", func(c *config.TracingConfig) { c.SampleRatio = -0.1 }, "tracing.sample_ratio"},
		{"endpoint without scheme", func(c *config.TracingConfig) { c.Endpoint = "127.0.0.1:4318" }, "tracing.endpoint"},
		{"endpoint of another scheme", func(c *config.TracingConfig) { c.Endpoint = "grpc://collector:4317" }, "tracing.endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Defaults()
			tc.set(&c.Tracing)
			err := c.Validate()
			require.True(t, errors.Is(err, config.ErrInvalid), "%v", err)
			require.Contains(t, err.Error(), tc.key)
		})
	}
}
