#!/usr/bin/env bash
# Fails when generated code is stale: regenerates the API's Go client from
# services/api/openapi.yaml into a temporary file (with the oapi-codegen version
# pinned as a tool dependency of services/api) and compares it with the
# committed services/api/client/client.gen.go. Regenerate with
#   make generate    (go generate in services/api/client)
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d "${TMPDIR:-/tmp}/taskforge-gen.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The same configuration, writing elsewhere.
sed "s#^output: .*#output: $tmp/client.gen.go#" services/api/client/oapi-codegen.yaml >"$tmp/config.yaml"
(cd services/api && go tool oapi-codegen -config "$tmp/config.yaml" openapi.yaml)
if ! diff -u services/api/client/client.gen.go "$tmp/client.gen.go" >"$tmp/diff"; then
  head -50 "$tmp/diff"
  echo "services/api/client/client.gen.go is stale: run make generate (go generate in services/api/client) and commit" >&2
  exit 1
fi
echo "generated code is up to date"
