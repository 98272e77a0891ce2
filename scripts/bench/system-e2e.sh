#!/usr/bin/env bash
# End to end through the real binaries (production configuration as in
# system-create.sh, the worker's default 1 server × 50): 16 clients create N
# webhook_callback tasks due now through the API, each POSTing to a loopback
# receiver, until every row reads completed; tasks/s from the first create to
# the last completion, and the CPU ms per task of each process (api, worker,
# scheduler, monitor, PostgreSQL, Redis, load generator) from /proc. Anchor in
# the same run: 16 clients POST the same bodies to a bare Echo →
# asynq.Enqueue process while raw Asynq servers (1 × 50, the same POST) run
# them, until the receiver got every one; the ratio.
# Run through scripts/bench/run.sh (make bench). Under a minute by default.
#   SYSTEM_BENCH_E2E   tasks (default 5000)
. "$(dirname "$0")/system.bash"
system_bench -phases e2e -e2e "${SYSTEM_BENCH_E2E:-5000}"
