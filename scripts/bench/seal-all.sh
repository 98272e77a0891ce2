#!/usr/bin/env bash
# Cost of crypto.seal_all_params: pkg/secret's BenchmarkParamsPath (a task's
# params from the API's JSON to the handler: decode, seal, row JSON and Asynq
# envelope, then the worker's decode, open and mask list) in three modes —
# plain (no keyring: the anchor), sensitive (the default) and seal_all — and
# the ratios of their time and stored bytes per task. An in-process
# micro-benchmark: it leaves out the PostgreSQL insert and the Redis enqueue
# (which carry the larger sealed bytes), HTTP, authentication and the handler,
# so the ratio bounds the CPU cost of the params path, not a create's latency.
# COUNT (default 3) runs of BENCHTIME (default 20000x) each; the median is used.
set -euo pipefail
cd "$(dirname "$0")/../.."
count=${COUNT:-3}
benchtime=${BENCHTIME:-20000x}
(cd pkg && go test -count="$count" -run '^$' -bench '^BenchmarkParamsPath$' -benchtime "$benchtime" ./secret/) |
  awk '
    /^BenchmarkParamsPath\// {
      split($1, p, "/"); mode = p[2]; sub(/-[0-9]+$/, "", mode)
      ns[mode] = ns[mode] " " $3; bytes[mode] = $5
    }
    function median(s,   a, n, i, j, t) {
      n = split(s, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return a[int((n + 1) / 2)]
    }
    END {
      for (m in ns) med[m] = median(ns[m])
      printf "params path per task (median of runs): plain %.1f µs, sensitive %.1f µs, seal_all %.1f µs\n", med["plain"] / 1000, med["sensitive"] / 1000, med["seal_all"] / 1000
      printf "stored bytes per task (row JSON + envelope): plain %d, sensitive %d, seal_all %d\n", bytes["plain"], bytes["sensitive"], bytes["seal_all"]
      printf "seal_all / sensitive: time %.2fx, bytes %.2fx; seal_all / plain: time %.2fx, bytes %.2fx\n", med["seal_all"] / med["sensitive"], bytes["seal_all"] / bytes["sensitive"], med["seal_all"] / med["plain"], bytes["seal_all"] / bytes["plain"]
    }'
