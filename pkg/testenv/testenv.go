// Package testenv gives integration tests an isolated PostgreSQL database and an
// isolated Redis database on the real servers that scripts/test.sh starts. The
// servers are found through TASKFORGE_TEST_DATABASE_URL and
// TASKFORGE_TEST_REDIS_ADDR. A test that needs them and finds none fails, except
// under -short, where it is skipped.
package testenv

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/store"
)

// Environment variables naming the test servers.
const (
	EnvDatabaseURL = "TASKFORGE_TEST_DATABASE_URL"
	EnvRedisAddr   = "TASKFORGE_TEST_REDIS_ADDR"
)

// redisDatabases is the number of databases scripts/test.sh gives Redis.
const redisDatabases = 4096

func need(tb testing.TB, env string) string {
	tb.Helper()
	v := os.Getenv(env)
	if v == "" {
		if testing.Short() {
			tb.Skipf("%s not set; skipped under -short", env)
		}
		tb.Fatalf("%s is not set: run the tests through `make test` (scripts/test.sh), which starts Redis and PostgreSQL", env)
	}
	return v
}

// Redis is an isolated Redis database for one test.
type Redis struct {
	Addr string
	DB   int
	// Client is a go-redis client on the test's database.
	Client *redis.Client
}

// Opt returns Asynq connection options for the test's database.
func (r Redis) Opt() asynq.RedisClientOpt {
	return asynq.RedisClientOpt{Addr: r.Addr, DB: r.DB}
}

// NewRedis hands the test a Redis database of its own, flushed, and closes the
// client at the end of the test.
func NewRedis(tb testing.TB) Redis {
	tb.Helper()
	addr := need(tb, EnvRedisAddr)
	ctx := context.Background()
	ctl := redis.NewClient(&redis.Options{Addr: addr, DB: 0})
	defer ctl.Close()
	n, err := ctl.Incr(ctx, "taskforge:test:dbseq").Result()
	if err != nil {
		tb.Fatalf("testenv: redis at %s: %v", addr, err)
	}
	db := int(n%(redisDatabases-1)) + 1
	c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	if err := c.FlushDB(ctx).Err(); err != nil {
		tb.Fatalf("testenv: flush redis db %d: %v", db, err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return Redis{Addr: addr, DB: db, Client: c}
}

// Postgres is an isolated, migrated PostgreSQL database for one test.
type Postgres struct {
	// URL connects to the test's database.
	URL string
	// DB is a GORM handle on it, closed at the end of the test.
	DB *gorm.DB
	// SQL is the underlying *sql.DB.
	SQL *sql.DB
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// NewPostgres hands the test a fresh database created from a migrated template,
// dropped at the end of the test.
func NewPostgres(tb testing.TB) Postgres {
	tb.Helper()
	base := need(tb, EnvDatabaseURL)
	templateOnce.Do(func() { templateName, templateErr = ensureTemplate(base) })
	if templateErr != nil {
		tb.Fatalf("testenv: migrated template: %v", templateErr)
	}
	name := "t_" + randHex(8)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	defer admin.Close()
	var lastErr error
	for i := 0; i < 50; i++ {
		_, lastErr = admin.Exec(fmt.Sprintf(`CREATE DATABASE %q TEMPLATE %q`, name, templateName))
		if lastErr == nil || !strings.Contains(lastErr.Error(), "being accessed by other users") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lastErr != nil {
		tb.Fatalf("testenv: create database: %v", lastErr)
	}
	return open(tb, base, name, 20, 5)
}

// open connects to the test database name on the server of base, with a pool
// of maxOpen (maxIdle idle) connections, and drops the database when tb ends.
func open(tb testing.TB, base, name string, maxOpen, maxIdle int) Postgres {
	tb.Helper()
	u := withDatabase(base, name)
	gdb, err := store.Open(store.Options{URL: u, MaxOpenConns: maxOpen, MaxIdleConns: maxIdle})
	if err != nil {
		tb.Fatalf("testenv: open %s: %v", name, err)
	}
	sqlDB, _ := gdb.DB()
	tb.Cleanup(func() {
		_ = sqlDB.Close()
		admin, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer admin.Close()
		_, _ = admin.Exec(fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, name))
	})
	return Postgres{URL: u, DB: gdb, SQL: sqlDB}
}

// ensureTemplate creates, once per migration set, a database holding the
// migrated schema. Its name carries a hash of the migrations, so a changed
// migration gets a new template; an advisory lock keeps parallel test binaries
// from migrating it twice.
func ensureTemplate(base string) (string, error) {
	sum, err := store.MigrationsHash()
	if err != nil {
		return "", err
	}
	name := "tmpl_" + sum[:16]
	admin, err := sql.Open("pgx", base)
	if err != nil {
		return "", err
	}
	defer admin.Close()
	admin.SetMaxOpenConns(1)
	ctx := context.Background()
	conn, err := admin.Conn(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(727274)`); err != nil {
		return "", err
	}
	defer conn.ExecContext(ctx, `SELECT pg_advisory_unlock(727274)`) //nolint:errcheck

	var ready bool
	err = conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`, name).Scan(&ready)
	if err != nil || ready {
		return name, err
	}
	_, _ = conn.ExecContext(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, name))
	if _, err := conn.ExecContext(ctx, fmt.Sprintf(`CREATE DATABASE %q`, name)); err != nil {
		return "", err
	}
	tdb, err := sql.Open("pgx", withDatabase(base, name))
	if err != nil {
		return "", err
	}
	if err := store.Migrate(ctx, tdb); err != nil {
		tdb.Close()
		return "", fmt.Errorf("migrate template: %w", err)
	}
	tdb.Close()
	if _, err := conn.ExecContext(ctx, `UPDATE pg_database SET datistemplate = true WHERE datname = $1`, name); err != nil {
		return "", err
	}
	return name, nil
}

func withDatabase(base, name string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	u.Path = "/" + name
	return u.String()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Hash returns a short stable hash of s, handy for naming test resources.
func Hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:4])
}
