#!/usr/bin/env bash
# POST /api/v1/tasks throughput and latency against local Redis and PostgreSQL,
# next to a bare Echo → Asynq enqueue measured in the same run. A
# micro-benchmark: the API's server runs inside the load process with a static
# token authenticator (no API key lookup), its logs thrown away, on a fresh
# database, 96 clients by default; the system as shipped is measured by
# system-create.sh (the real binaries over HTTP). Run through
# scripts/bench/run.sh (make bench), which starts the servers.
# Override the load with API_BENCH_N (requests per run) and API_BENCH_C (clients).
set -euo pipefail
cd "$(dirname "$0")/../../services/api"
echo "-- the task path (validation, batched insert, enqueue, request log and metrics)"
go run ./internal/loadtest create -n "${API_BENCH_N:-40000}" -c "${API_BENCH_C:-96}"
echo "-- the same with the production security chain (audit row per task, per-address and per-caller rate limits in Redis)"
go run ./internal/loadtest create -secured -n "${API_BENCH_N:-40000}" -c "${API_BENCH_C:-96}"
