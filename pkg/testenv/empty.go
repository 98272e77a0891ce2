package testenv

import (
	"database/sql"
	"fmt"
	"testing"
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
	return open(tb, base, name, 5, 2)
}
