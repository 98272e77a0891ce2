#!/usr/bin/env bash
# Runs every test of every module against a throw-away Redis and PostgreSQL that
# this script starts on free loopback ports and stops at the end.
#   scripts/test.sh            all tests
#   RACE=1 scripts/test.sh     all tests with the race detector (needs cgo: gcc is
#                              installed when missing; compiles everything twice
#                              as long on a cold cache; CI runs this)
#   scripts/test.sh -short     unit tests only (no servers needed)
# Extra arguments are passed to go test.
#
# Without RACE, everything is compiled with CGO_ENABLED=0, as scripts/dev.sh,
# the container images and the tests' service binaries are, so one compiled
# package serves all of them and a first run compiles each package once.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

command -v go >/dev/null 2>&1 || die "Go is required (https://go.dev/dl)"
race=()
if [ -n "${RACE:-}" ] && [ "${RACE}" != 0 ]; then
  ensure_cc
  race=(-race)
else
  export CGO_ENABLED=0
fi
ensure_stores
ensure_chromium
scripts/install-tools.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/taskforge-test.XXXXXX")
redis_port=$(free_port)
pg_port=$(free_port)
cleanup() {
  stop_redis "$work/redis"
  stop_postgres "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Many Redis databases so that every test gets its own.
start_redis "$work/redis" "$redis_port" --databases 4096 --appendonly no
start_postgres "$work/pg" "$pg_port" -c fsync=off -c synchronous_commit=off -c full_page_writes=off
psql_as "$work/pg" "$pg_port" "CREATE ROLE taskforge LOGIN SUPERUSER"
psql_as "$work/pg" "$pg_port" "CREATE DATABASE taskforge OWNER taskforge"

export TASKFORGE_TEST_REDIS_ADDR="127.0.0.1:$redis_port"
export TASKFORGE_TEST_DATABASE_URL="postgres://taskforge@127.0.0.1:$pg_port/taskforge?sslmode=disable"
export PATH="$PWD/bin:$PATH"
echo "redis on $TASKFORGE_TEST_REDIS_ADDR, postgres on 127.0.0.1:$pg_port"

status=0
# go test does not cross a workspace from its root: list every module's packages.
# deployments/check runs from scripts/check-deployments.sh below, without -race.
pkgs=${TEST_PKGS:-$(go list -m -f '{{.Dir}}/...' | grep -v /deployments/check)}
set +e
go test "${race[@]}" -count=1 -timeout 15m "$@" $pkgs 2>&1 | tee "$work/go-test.log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -c '^ok ' "$work/go-test.log" || true)
failed=$(grep -c '^FAIL[[:space:]]' "$work/go-test.log" || true)

if [ -z "${TEST_PKGS:-}" ]; then
  # Every module's go.mod and go.sum are complete and tidy.
  scripts/tidy-check.sh || status=$?
  # Generated code must match its sources.
  scripts/check-generated.sh || status=$?
  scripts/proto.sh --check || status=$?
  [ -x scripts/check-deployments.sh ] && { scripts/check-deployments.sh || status=$?; }
fi
echo
[ "$status" = 0 ] && echo "all checks passed" || echo "some checks failed (exit $status)"
# The closing line counts Go test packages.
echo "packages: ${passed} passed, ${failed} failed"
exit $status
