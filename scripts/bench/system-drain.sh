#!/usr/bin/env bash
# Drain through the real binaries (production configuration as in
# system-create.sh): N webhook_callback tasks are created through the API into
# the paused normal queue, the queue is resumed through the API, and the time
# until every row reads completed in PostgreSQL gives tasks/s; each task POSTs
# to a loopback receiver in the load process. Anchors in the same run: raw
# Asynq servers in a process of their own (same servers, concurrency, queues,
# weights and poll interval) draining N tasks from a paused queue, with a
# handler doing the same POST (JSON payload, Idempotency-Key) to the same
# receiver, and with a no-op handler; the ratios and the CPU ms per task of each
# process. The worker is restarted for each servers×concurrency pair.
# Run through scripts/bench/run.sh (make bench). About a minute by default.
#   SYSTEM_BENCH_DRAIN   tasks due at once (default 5000)
#   SYSTEM_BENCH_RUNS    "SERVERSxCONCURRENCY" pairs (default "1x50 4x50": the
#                        worker's defaults, then four Asynq servers)
. "$(dirname "$0")/system.bash"
system_bench -phases drain -drain "${SYSTEM_BENCH_DRAIN:-5000}" -runs "${SYSTEM_BENCH_RUNS:-1x50 4x50}"
