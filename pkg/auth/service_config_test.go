package auth

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/config"
)

func TestServiceFromConfig(t *testing.T) {
	t.Parallel()
	const bootstrap = "bootstrap-key-for-service-tests"
	token := sign(t, jwt.SigningMethodHS256, "", []byte(testSecret),
		jwt.MapClaims{"sub": "alice", "role": "operator", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	tests := []struct {
		name        string
		cfg         config.AuthConfig
		wantErr     string
		jwtAccepted bool
	}{
		{name: "bootstrap only", cfg: config.AuthConfig{BootstrapAdminKey: bootstrap}},
		{name: "bootstrap and jwt", cfg: config.AuthConfig{BootstrapAdminKey: bootstrap, JWTSecret: testSecret}, jwtAccepted: true},
		{name: "unsupported algorithm", cfg: config.AuthConfig{JWTSecret: testSecret, JWTAlgorithms: []string{"none"}}, wantErr: "not supported"},
		{name: "short bootstrap key", cfg: config.AuthConfig{BootstrapAdminKey: "short"}, wantErr: "auth.bootstrap_admin_key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := ServiceFromConfig(tc.cfg, config.Defaults().Egress, nil)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			p, err := s.Authenticate(context.Background(), bootstrap)
			require.NoError(t, err)
			require.Equal(t, BootstrapPrincipalID, p.ID)
			p, err = s.Authenticate(context.Background(), token)
			if !tc.jwtAccepted {
				require.ErrorIs(t, err, ErrUnauthenticated)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "jwt:alice", p.ID)
			require.Equal(t, Operator, p.Role)
		})
	}
}
