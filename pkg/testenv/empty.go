package testenv

import (
	"database/sql"
	"fmt"
	"testing"

	"github.com/taskforge/taskforge/pkg/store"
)

// NewEmptyPostgres hands the test a fresh database without any migration
// applied (created from template0), dropped at the end of the test: for
// tests of the migrations themselves.
func NewEmptyPostgres(tb testing.TB) Postgres {
	tb.Helper()
	base := need(tb, EnvDatabaseURL)
	name := "e_" + randHex(8)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	defer admin.Close()
	if _, err := admin.Exec(fmt.Sprintf(`CREATE DATABASE %q TEMPLATE template0`, name)); err != nil {
		tb.Fatalf("testenv: create database: %v", err)
	}
	u := withDatabase(base, name)
	gdb, err := store.Open(store.Options{URL: u, MaxOpenConns: 5, MaxIdleConns: 2})
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
