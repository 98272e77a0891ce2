#!/usr/bin/env bash
# Regenerates pkg/taskpb from proto/ with the project's pinned tools.
#   scripts/proto.sh          regenerate
#   scripts/proto.sh --check  generate into a temporary directory and fail when
#                             the committed code differs; never touches the tree
# Code is generated into a temporary directory first either way, so a failing
# protoc (a missing include, a syntax error) leaves the committed files as they are.
# PROTO_DIR replaces proto/ as the source root (a test uses it to make protoc fail).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_PROTOC_INSTALL:-}" = 1 ] || scripts/install-protoc.sh
check=
[ "${1:-}" = --check ] && check=1

tmp=$(mktemp -d "${TMPDIR:-/tmp}/taskforge-proto.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
src=${PROTO_DIR:-proto}
if ! protoc -I "$src" --plugin=protoc-gen-go=bin/protoc-gen-go --go_out="$tmp" --go_opt=paths=source_relative \
  --go_opt=Mtaskforge/v1/options.proto=github.com/taskforge/taskforge/pkg/taskpb "$src"/taskforge/v1/*.proto; then
  echo "protoc failed: pkg/taskpb left unchanged (is libprotobuf-dev installed? scripts/install-protoc.sh installs it)" >&2
  exit 1
fi
gen="$tmp/taskforge/v1"

if [ -n "$check" ]; then
  mkdir "$tmp/committed"
  cp pkg/taskpb/*.pb.go "$tmp/committed/" 2>/dev/null || true
  if ! diff -ru "$tmp/committed" "$gen" >"$tmp/diff"; then
    head -50 "$tmp/diff"
    echo "pkg/taskpb is stale: run make proto and commit" >&2
    exit 1
  fi
  echo "protobuf code is up to date"
  exit 0
fi
rm -f pkg/taskpb/*.pb.go
cp "$gen"/*.pb.go pkg/taskpb/
echo "regenerated pkg/taskpb"
