#!/usr/bin/env bash
# What the prices table's statement triggers (migration 00015, database
# triggers) cost refresh_all_prices: 1,000 symbols × 5 days with the simulated
# provider, without the table triggers (the anchor), with no trigger watching
# prices, with one watching (each statement
# diffs its transition tables and writes one change event) and a refresh of
# identical prices with one watching (no event). Prints ns/op and events/op.
# BENCH_COUNT repeats each (the machine's run-to-run spread is wide). A
# micro-benchmark: the handler runs in the test process.
# Needs TASKFORGE_TEST_DATABASE_URL (scripts/bench/run.sh sets it).
set -euo pipefail
cd "$(dirname "$0")/../../pkg"
: "${TASKFORGE_TEST_DATABASE_URL:?run through scripts/bench/run.sh}"
go test -run '^$' -bench 'BenchmarkPriceRefreshTableTrigger' \
  -benchtime "${BENCH_TIME:-5x}" -benchmem -count "${BENCH_COUNT:-1}" ./trigger/
