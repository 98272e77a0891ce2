// Package taskservicetest gives integration tests a task service of their own:
// a fresh PostgreSQL database and Redis database from testenv, an Asynq client
// and inspector on that Redis database, and the service on both.
package taskservicetest

import (
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// Env is a test's databases and task service. Everything is closed when the
// test ends.
type Env struct {
	PG        testenv.Postgres
	RD        testenv.Redis
	Client    *asynq.Client
	Inspector *asynq.Inspector
	Service   *taskservice.Service
	// Log writes warnings and errors to the test's log.
	Log *zap.Logger
}

// New builds an Env with default task service options.
func New(t testing.TB) Env {
	t.Helper()
	e := Env{PG: testenv.NewPostgres(t), RD: testenv.NewRedis(t)}
	e.Client = asynq.NewClient(e.RD.Opt())
	e.Inspector = asynq.NewInspector(e.RD.Opt())
	t.Cleanup(func() { _ = e.Client.Close(); _ = e.Inspector.Close() })
	e.Log = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	svc, err := taskservice.New(e.PG.DB, e.Client, e.Inspector, e.Log, taskservice.Options{})
	require.NoError(t, err)
	t.Cleanup(svc.Close)
	e.Service = svc
	return e
}
