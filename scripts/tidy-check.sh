#!/usr/bin/env bash
# Fails when a module's go.mod or go.sum is not what `go mod tidy` makes of it
# (after `go work sync` raised a requirement, say), so that every go command
# the project runs (vet, test, build, with and without the workspace) finds
# every sum it needs. Changes nothing: go mod tidy -diff only prints. Fix with
# `make tidy` (go work sync, then go mod tidy in every module).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d "${TMPDIR:-/tmp}/taskforge-tidy.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
rc=0
for m in $(go list -m -f '{{.Dir}}'); do
  rel=${m#"$PWD"/}
  if ! (cd "$m" && go mod tidy -diff) >"$tmp/diff" 2>&1; then
    echo "$rel is not tidy: run make tidy" >&2
    head -20 "$tmp/diff" >&2
    rc=1
  fi
done
[ $rc = 0 ] && echo "go.mod and go.sum files are tidy"
exit $rc
