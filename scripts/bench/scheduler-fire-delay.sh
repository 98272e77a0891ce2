#!/usr/bin/env bash
# Fire delay of the scheduler: a one-second schedule fired by two scheduler
# replicas, its fire jobs handled by the fire handler, for FIRES fires
# (default 30). Prints p50, p99 and max of (task creation - intended fire
# time), once with fire jobs polled every 10ms and once at Asynq's default 1s
# poll (what an idle worker does unless its task_check_interval is lowered).
# A micro-benchmark: the scheduler replicas and the fire handler run inside
# the test process (pkg/schedule), without the scheduler and worker binaries.
# Run through scripts/bench/run.sh, which starts Redis and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${TASKFORGE_TEST_REDIS_ADDR:-}" ]; then
  echo "run through scripts/bench/run.sh" >&2
  exit 1
fi
fires=${FIRES:-30}
for poll in 10ms 1s; do
  echo "fire worker poll interval $poll:"
  TASKFORGE_SCHEDULER_BENCH_FIRES=$fires TASKFORGE_SCHEDULER_BENCH_POLL=$poll \
    go test -count=1 -run '^TestTwoReplicasFireOncePerSecond$' -v ./pkg/schedule/ | grep -o 'fire delay.*'
done
