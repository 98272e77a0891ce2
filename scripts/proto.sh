#!/usr/bin/env bash
# Regenerates pkg/taskpb from proto/ with the project's pinned tools.
#   scripts/proto.sh          regenerate
#   scripts/proto.sh --check  regenerate and fail when the committed code differs
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-protoc.sh
rm -f pkg/taskpb/*.pb.go
protoc -I proto --plugin=protoc-gen-go=bin/protoc-gen-go --go_out=pkg/taskpb --go_opt=paths=source_relative \
  --go_opt=Mtaskforge/v1/options.proto=github.com/taskforge/taskforge/pkg/taskpb proto/taskforge/v1/*.proto
mv pkg/taskpb/taskforge/v1/*.pb.go pkg/taskpb/ && rm -rf pkg/taskpb/taskforge
if [ "${1:-}" = --check ]; then
  git diff --exit-code -- pkg/taskpb || { echo "generated code is stale: run make proto and commit" >&2; exit 1; }
  echo "protobuf code is up to date"
fi
