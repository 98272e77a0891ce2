#!/usr/bin/env bash
# Repeated reads of one ended task's JSON result through the result route,
# without and with the result cache, in the same run: reads/s and PostgreSQL
# queries per read (0 with the cache), and the ratio. An in-process
# micro-benchmark (pkg/result/httpresult): it leaves out authentication, rate
# limits and a network between client and API. Needs TASKFORGE_TEST_REDIS_ADDR
# and TASKFORGE_TEST_DATABASE_URL: run it through scripts/bench/run.sh.
#   TASKFORGE_BENCH_TIME   go test -benchtime (default 3s)
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${TASKFORGE_TEST_REDIS_ADDR:?run through scripts/bench/run.sh}"
: "${TASKFORGE_TEST_DATABASE_URL:?run through scripts/bench/run.sh}"
out=$(go test -run '^$' -bench '^BenchmarkTaskResultRead$' -benchtime "${TASKFORGE_BENCH_TIME:-3s}" -count 1 ./pkg/result/httpresult/)
echo "$out" | grep -E '^Benchmark'
echo "$out" | awk '/^BenchmarkTaskResultRead\/postgres/ {pg=$3} /^BenchmarkTaskResultRead\/cache/ {c=$3}
  END { if (pg && c) printf "result read, cache vs PostgreSQL: %.2fx the reads per second\n", pg / c }'
