#!/usr/bin/env bash
# POST /api/v1/tasks through the real binaries: api, worker, scheduler and
# monitor built as the images are, TASKFORGE_ENV=production, an operator API
# key created through the API with the bootstrap admin key, audit on, rate
# limits on (raised so as not to refuse), JSON logs at info to files; driven
# over HTTP on loopback by a separate load process. Tasks are scheduled an hour
# ahead (they do not run). Each figure (req/s, p50, p99) is printed next to the
# anchor measured in the same run with the same clients and body: a bare Echo
# → asynq.Enqueue server in a process of its own, on the same Redis server;
# with the ratio, and the CPU ms per create of each process (api, worker,
# scheduler, monitor, PostgreSQL, Redis, load generator) read from /proc.
# Run through scripts/bench/run.sh (make bench). About a minute by default.
#   SYSTEM_BENCH_CLIENTS   concurrent clients of each measurement (default "16,64")
#   SYSTEM_BENCH_CREATES   requests per measurement (default 10000)
#   SYSTEM_BENCH_ROUNDS    measurements per client count (default 2)
. "$(dirname "$0")/system.bash"
system_bench -phases create -clients "${SYSTEM_BENCH_CLIENTS:-16,64}" \
  -creates "${SYSTEM_BENCH_CREATES:-10000}" -rounds "${SYSTEM_BENCH_ROUNDS:-2}"
