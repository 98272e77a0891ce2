#!/usr/bin/env bash
# Workflow step overhead through the real binaries (production configuration
# as in system-create.sh): one client creates N two-step workflows
# (webhook_callback a → b) through the API; per workflow, b's start − a's
# completion, p50/p99 (target p99 <= 50 ms). Anchor in the same run: N plain
# webhook_callback tasks, their start − their creation; the ratio. Run twice:
# with the worker's defaults (task_check_interval 100ms, the burst server
# polling every 5ms while workflow steps run), then without the burst server.
# Run through scripts/bench/run.sh (make bench). Under a minute by default.
#   SYSTEM_BENCH_WORKFLOWS   workflows (default 300)
. "$(dirname "$0")/system.bash"
system_bench -phases workflow -workflows "${SYSTEM_BENCH_WORKFLOWS:-300}"
system_bench -phases workflow -workflows "${SYSTEM_BENCH_WORKFLOWS:-300}" -worker-burst-poll 0
