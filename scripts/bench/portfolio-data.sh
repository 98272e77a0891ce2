#!/usr/bin/env bash
# Benchmarks of the portfolio data tasks: refresh_all_prices over 1,000 and
# 5,000 symbols × 5 days with the simulated provider, and calculate_metrics on a
# portfolio of 200 holdings over 252 returns. Prints rows/s and the peak heap
# growth of a run (peak-heap-MiB): it stays flat from 1,000 to 5,000 symbols
# because symbols are read and written one batch at a time. A micro-benchmark:
# the handlers run in the test process, without the worker, Asynq or the API.
# Needs TASKFORGE_TEST_DATABASE_URL (scripts/bench/run.sh sets it).
set -euo pipefail
cd "$(dirname "$0")/../../pkg"
: "${TASKFORGE_TEST_DATABASE_URL:?run through scripts/bench/run.sh}"
go test -run '^$' -bench 'BenchmarkRefreshAllPrices|BenchmarkCalculateMetrics' \
  -benchtime "${BENCH_TIME:-3x}" -benchmem -count 1 ./portfolio/
