#!/usr/bin/env bash
# Live task events through the real binaries: builds api and worker as the
# images do (scripts/lib.sh build_services), then services/api/internal/loadtest
# starts them with a production configuration (TASKFORGE_ENV=production, logs at
# warn, API keys over HTTP on loopback), opens the streams, lets
# webhook_callback tasks complete at a set pace, and prints publish-to-deliver
# latency p50/p99 and the API's memory per open stream, each next to an anchor
# measured in the same run (a bare GET /healthz round trip; an idle keep-alive
# connection). Needs TASKFORGE_TEST_REDIS_ADDR and TASKFORGE_TEST_DATABASE_URL:
# run it through scripts/bench/run.sh.
#   EVENTS_BENCH_STREAMS       GET /api/v1/events streams (default 1000)
#   EVENTS_BENCH_TASK_STREAMS  per-task streams (default 10)
#   EVENTS_BENCH_RATE          task completions per second (default 1000)
#   EVENTS_BENCH_DURATION      length of the run (default 60s)
#   EVENTS_BENCH_WORKER_SERVERS  the worker's Asynq servers (default 4: one
#                              server fetches too slowly for 1000/s here)
#   EVENTS_BENCH_CALLERS       the runs, by number of operator keys the streams
#                              are spread over (default "1000 0": one stream
#                              per caller, each task seen by one stream, as
#                              dashboards of many users; then 0, streams/20
#                              keys with 20 streams each, the per-caller cap,
#                              each task seen by 20 streams)
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
: "${TASKFORGE_TEST_REDIS_ADDR:?run through scripts/bench/run.sh}"
: "${TASKFORGE_TEST_DATABASE_URL:?run through scripts/bench/run.sh}"
bin=$(mktemp -d "${TMPDIR:-/tmp}/taskforge-bench-bin.XXXXXX")
trap 'rm -rf "$bin"' EXIT
build_services "$bin" api worker
cd services/api
go build -o "$bin/loadtest" ./internal/loadtest
for callers in ${EVENTS_BENCH_CALLERS:-1000 0}; do
  "$bin/loadtest" events -bin "$bin" -callers "$callers" \
    -streams "${EVENTS_BENCH_STREAMS:-1000}" -task-streams "${EVENTS_BENCH_TASK_STREAMS:-10}" \
    -rate "${EVENTS_BENCH_RATE:-1000}" -duration "${EVENTS_BENCH_DURATION:-60s}" \
    -worker-servers "${EVENTS_BENCH_WORKER_SERVERS:-4}"
  echo
done
