package handlers

import (
	"context"
	"net/http"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// TestBuildRegistersEveryType checks that every user-visible task type has a
// handler. Nothing is contacted: the database and Redis are never reached.
func TestBuildRegistersEveryType(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	cfg.Storage.LocalDir = t.TempDir()
	db, err := store.Open(store.Options{URL: "postgres://none@127.0.0.1:1/none?sslmode=disable"})
	require.NoError(t, err)
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = rc.Close() })
	keys, err := secret.FromConfig(cfg.Crypto, true)
	require.NoError(t, err)
	cfg.Storage.SigningKey = "handlers-test-signing-key"
	results, err := result.FromConfig(context.Background(), db, cfg.Storage, "http://127.0.0.1:8080", nil)
	require.NoError(t, err)
	_, err = Build(Deps{Config: cfg, DB: db, Redis: rc, HTTP: http.DefaultClient, Keyring: keys, Log: zap.NewNop()})
	require.ErrorContains(t, err, "nil result store")
	hs, err := Build(Deps{Config: cfg, DB: db, Redis: rc, HTTP: http.DefaultClient, Keyring: keys, Results: results, Log: zap.NewNop()})
	require.NoError(t, err)
	for _, spec := range tasks.All() {
		require.Contains(t, hs, spec.Name)
	}
}
