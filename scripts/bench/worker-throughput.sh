#!/usr/bin/env bash
# No-op tasks through a bare Asynq server and through the worker runtime with
# its full lifecycle bookkeeping (PostgreSQL rows, attempts, batched writes), in
# the same run, with the same concurrency and queues; prints both and the
# ratio. A micro-benchmark: the worker runtime runs inside the test process
# with no-op handlers — no worker binary, task handlers, HTTP, API or the
# creation of the tasks; the system as shipped is measured by system-drain.sh
# and system-e2e.sh. Needs TASKFORGE_TEST_REDIS_ADDR and
# TASKFORGE_TEST_DATABASE_URL: run it through scripts/bench/run.sh.
#   TASKFORGE_BENCH_TASKS        tasks per measurement (default 20000)
#   TASKFORGE_BENCH_RUNS         "servers x concurrency" pairs (default "1x50 1x10 4x10":
#                                the worker's default configuration first, then
#                                lower concurrency and several servers for comparison)
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${TASKFORGE_TEST_REDIS_ADDR:?run through scripts/bench/run.sh}"
: "${TASKFORGE_TEST_DATABASE_URL:?run through scripts/bench/run.sh}"
for run in ${TASKFORGE_BENCH_RUNS:-1x50 1x10 4x10}; do
  TASKFORGE_BENCH_SERVERS=${run%x*} TASKFORGE_BENCH_CONCURRENCY=${run#*x} go test -run '^$' -bench '^BenchmarkWorkerThroughput$' -benchtime 1x -count 1 \
    ./pkg/worker/ | grep -v -E '^(goos|goarch|pkg|cpu|PASS|ok)'
done
