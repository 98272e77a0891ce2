#!/usr/bin/env bash
# GET /api/v1/tasks pages of 50 through the real binaries (production
# configuration as in system-create.sh, an admin API key created through the
# API) under 16 concurrent clients, over a tasks table loaded before the
# binaries start with one INSERT … SELECT generate_series straight into
# PostgreSQL (rows like real tasks: 30 days of history, twelve types, mostly
# terminal statuses, four priorities, 200 owners), then indexes and VACUUM
# ANALYZE. req/s, p50 and p99 of the newest page and of status=pending, next to
# the anchor measured in the same run: a bare Echo → database/sql (pgx) process
# answering the newest page of the same table as JSON; the ratio and the CPU ms
# per request of each process.
# Run through scripts/bench/run.sh (make bench).
#   SYSTEM_BENCH_ROWS    task rows loaded (default 1000000)
#   SYSTEM_BENCH_LISTS   requests per measurement (default 5000)
. "$(dirname "$0")/system.bash"
system_bench -phases list -rows "${SYSTEM_BENCH_ROWS:-1000000}" -lists "${SYSTEM_BENCH_LISTS:-5000}"
