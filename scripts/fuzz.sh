#!/usr/bin/env bash
# Runs every native Go fuzz target (func FuzzXxx(*testing.F)) of every module,
# one after another, each for FUZZTIME (default 60s).
#   scripts/fuzz.sh                     all targets
#   FUZZTIME=20s scripts/fuzz.sh        shorter runs (below about 10s a loaded
#                                       machine may not finish a target's
#                                       baseline run, which go test reports
#                                       as "context deadline exceeded")
#   scripts/fuzz.sh ./pkg/egress        only the targets under these packages
# A failing input is written by go test to the package's
# testdata/fuzz/<FuzzName>/ directory; commit it with the fix so that it runs
# as a seed in every `make test`. The fuzzers need no Redis or PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

command -v go >/dev/null 2>&1 || die "Go is required (https://go.dev/dl)"
fuzztime=${FUZZTIME:-60s}
export CGO_ENABLED=0

if [ $# -gt 0 ]; then
  pkgs=("$@")
else
  mapfile -t pkgs < <(go list -m -f '{{.Dir}}/...' | grep -v /deployments/check)
fi

failed=()
ran=0
while read -r dir; do
  [ -n "$dir" ] || continue
  mapfile -t targets < <(grep -ho '^func Fuzz[A-Za-z0-9_]*(' "$dir"/*_test.go | sed 's/^func //; s/($//' | sort)
  for target in "${targets[@]}"; do
    echo "== $target in ${dir#"$PWD"/} for $fuzztime"
    ran=$((ran + 1))
    if ! (cd "$dir" && go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" .); then
      failed+=("$target in ${dir#"$PWD"/}")
    fi
  done
done < <(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}}{{end}}' "${pkgs[@]}" | sort -u)

echo
echo "fuzz targets: $ran run, ${#failed[@]} failed"
for f in "${failed[@]}"; do echo "  failed: $f"; done
[ ${#failed[@]} = 0 ]
