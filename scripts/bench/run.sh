#!/usr/bin/env bash
# Runs every benchmark script in scripts/bench (or those named as arguments)
# against throw-away Redis and PostgreSQL, the same way scripts/test.sh does.
# Each script prints its figures: system-*.sh those of the real binaries, each
# next to its anchor; the others are micro-benchmarks of one part in process.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
ensure_stores

work=$(mktemp -d "${TMPDIR:-/tmp}/taskforge-bench.XXXXXX")
redis_port=$(free_port)
pg_port=$(free_port)
cleanup() { stop_redis "$work/redis"; stop_postgres "$work/pg"; rm -rf "$work"; }
trap cleanup EXIT INT TERM
start_redis "$work/redis" "$redis_port" --databases 4096 --appendonly no
start_postgres "$work/pg" "$pg_port" -c synchronous_commit=off -c shared_buffers=256MB
psql_as "$work/pg" "$pg_port" "CREATE ROLE taskforge LOGIN SUPERUSER"
psql_as "$work/pg" "$pg_port" "CREATE DATABASE taskforge OWNER taskforge"
export TASKFORGE_TEST_REDIS_ADDR="127.0.0.1:$redis_port"
export TASKFORGE_TEST_DATABASE_URL="postgres://taskforge@127.0.0.1:$pg_port/taskforge?sslmode=disable"

scripts=("$@")
if [ ${#scripts[@]} -eq 0 ]; then
  # The system as shipped first (system-*.sh: the real binaries against their
  # anchors), then the micro-benchmarks.
  for s in scripts/bench/system-*.sh; do scripts+=("$s"); done
  for s in scripts/bench/*.sh; do
    case "$(basename "$s")" in run.sh | system-*.sh) ;; *) scripts+=("$s") ;; esac
  done
fi
for s in "${scripts[@]}"; do
  echo "== $s"
  bash "$s"
done
