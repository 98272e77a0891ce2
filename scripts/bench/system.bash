# Sourced by the system-*.sh benchmarks (not run by run.sh itself): builds the four services as the
# images do (scripts/lib.sh build_services) and the load tool, then runs
# "loadtest system -bin DIR" with the arguments given to system_bench.
# Needs TASKFORGE_TEST_REDIS_ADDR and TASKFORGE_TEST_DATABASE_URL: run the
# scripts through scripts/bench/run.sh. TASKFORGE_BENCH_KEEP_LOGS=1 keeps the
# binaries' JSON logs (the path is printed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. scripts/lib.sh
: "${TASKFORGE_TEST_REDIS_ADDR:?run through scripts/bench/run.sh}"
: "${TASKFORGE_TEST_DATABASE_URL:?run through scripts/bench/run.sh}"
system_bench() {
  local bin
  bin=$(mktemp -d "${TMPDIR:-/tmp}/taskforge-bench-bin.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$bin'" EXIT
  build_services "$bin" api worker scheduler monitor
  (cd services/api && go build -o "$bin/loadtest" ./internal/loadtest)
  "$bin/loadtest" system -bin "$bin" "$@"
}
