package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/config"
)

func TestEgressPurposeAllowLists(t *testing.T) {
	clearEnv(t)
	t.Setenv("TASKFORGE_EGRESS_ALLOW_CIDRS", "10.0.0.0/8")
	t.Setenv("TASKFORGE_EGRESS_WEBHOOKS_ALLOW_CIDRS", "192.168.10.0/24,172.16.0.0/12")
	t.Setenv("TASKFORGE_EGRESS_PRICE_ALLOW_CIDRS", "10.20.0.0/16")
	t.Setenv("TASKFORGE_EGRESS_JWKS_ALLOW_CIDRS", "10.30.0.0/16")
	cfg, err := config.Load("")
	require.NoError(t, err)
	require.Equal(t, []string{"10.0.0.0/8"}, cfg.Egress.AllowCIDRs)
	require.Equal(t, []string{"192.168.10.0/24", "172.16.0.0/12"}, cfg.Egress.Webhooks.AllowCIDRs)
	require.Equal(t, []string{"10.20.0.0/16"}, cfg.Egress.Price.AllowCIDRs)
	require.Equal(t, []string{"10.30.0.0/16"}, cfg.Egress.JWKS.AllowCIDRs)
	require.Empty(t, cfg.Egress.Notify.AllowCIDRs)
	require.Empty(t, cfg.Egress.Callbacks.AllowCIDRs)
}

func TestEgressPurposeAllowListValidated(t *testing.T) {
	clearEnv(t)
	t.Setenv("TASKFORGE_EGRESS_CALLBACKS_ALLOW_CIDRS", "10.0.0.0/8,10.0.0.0/33")
	cfg, err := config.Load("")
	require.NoError(t, err)
	err = cfg.Validate()
	require.ErrorIs(t, err, config.ErrInvalid)
	require.ErrorContains(t, err, `egress.callbacks.allow_cidrs[1] = "10.0.0.0/33"`)

	clearEnv(t)
	t.Setenv("TASKFORGE_EGRESS_JWKS_ALLOW_CIDRS", "idp.internal")
	cfg, err = config.Load("")
	require.NoError(t, err)
	require.ErrorContains(t, cfg.Validate(), `egress.jwks.allow_cidrs[0] = "idp.internal"`)
}
