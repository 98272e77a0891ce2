package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/config"
)

// TestNotifyPolicy reads the notify section from a file and the environment
// and refuses bad values naming their key.
func TestNotifyPolicy(t *testing.T) {
	clearEnv(t)
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
notify:
  callback_secret_overlap: 1h
  policy:
    roles:
      operator:
        email_domains: [example.com]
        phone_prefixes: ["+44"]
`), 0o600))
	t.Setenv("TASKFORGE_NOTIFY_POLICY_MAX_RECIPIENTS_PER_TASK", "7")
	cfg, err := config.Load(path)
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	p := cfg.Notify.Policy
	require.Equal(t, []string{"example.com"}, p.Roles.Operator.EmailDomains)
	require.Equal(t, []string{"+44"}, p.Roles.Operator.PhonePrefixes)
	require.Equal(t, []string{"*"}, p.Roles.Admin.EmailDomains, "the admin's default stays")
	require.Equal(t, 7, p.MaxRecipientsPerTask)
	require.Equal(t, 500, p.MaxRecipientsPerHour)
	require.Equal(t, config.DefaultPremiumPrefixes, p.PremiumPrefixes)

	bad := config.Defaults()
	bad.Notify.Policy.Roles.Operator.PhonePrefixes = []string{"44"}
	bad.Notify.Policy.PremiumPrefixes = []string{"*"}
	bad.Notify.Policy.MaxRecipientsPerTask = 0
	err = bad.Validate()
	require.ErrorIs(t, err, config.ErrInvalid)
	require.ErrorContains(t, err, "notify.policy.roles.operator.phone_prefixes[0]")
	require.ErrorContains(t, err, "notify.policy.premium_prefixes[0]")
	require.ErrorContains(t, err, "notify.policy.max_recipients_per_task")
}
