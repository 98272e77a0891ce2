#!/usr/bin/env bash
# Drain through the real binaries with 1, 2 and 4 worker processes (each
# worker.concurrency 50, one Asynq server): SCALING_BENCH_TASKS
# webhook_callback tasks (default 3000) are created through the API while
# every queue is paused, then the queues are resumed and the time until every
# row reads completed gives tasks/s (e2e TestWorkerProcessScaling). Run
# through scripts/bench/run.sh (make bench).
#   SCALING_BENCH_TASKS     tasks per run (default 3000)
#   SCALING_BENCH_WORKERS   process counts (default "1 2 4")
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${TASKFORGE_TEST_REDIS_ADDR:?run through scripts/bench/run.sh}"
: "${TASKFORGE_TEST_DATABASE_URL:?run through scripts/bench/run.sh}"
cd e2e
CGO_ENABLED=0 TASKFORGE_SCALING_TASKS="${SCALING_BENCH_TASKS:-3000}" TASKFORGE_SCALING_WORKERS="${SCALING_BENCH_WORKERS:-1 2 4}" \
  go test -count=1 -timeout 30m -run '^TestWorkerProcessScaling$' -v . | grep -E 'scaling_test.go|^(ok|FAIL|---)'
