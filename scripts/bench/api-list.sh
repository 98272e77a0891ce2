#!/usr/bin/env bash
# GET /api/v1/tasks page timings over 1,000,000 tasks, per filter. A
# micro-benchmark: it calls taskservice.List in process, one call at a time —
# no HTTP, authentication, rate limits, request logs or concurrent callers; the
# system as shipped is measured by system-list.sh. Run through
# scripts/bench/run.sh (make bench), which starts the servers. Override the row
# count with API_BENCH_ROWS.
set -euo pipefail
cd "$(dirname "$0")/../../services/api"
go run ./internal/loadtest list -rows "${API_BENCH_ROWS:-1000000}"
