#!/usr/bin/env bash
# Installs protoc with its well-known types (Debian's protobuf-compiler and
# libprotobuf-dev, which holds google/protobuf/*.proto) and protoc-gen-go at the
# version pinned in pkg/go.mod into ./bin, so `make proto` is reproducible.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# protoc_include prints the directory holding google/protobuf/descriptor.proto.
protoc_include() {
  local d
  for d in /usr/include /usr/local/include; do
    [ -f "$d/google/protobuf/descriptor.proto" ] && { echo "$d"; return 0; }
  done
  return 1
}
if ! command -v protoc >/dev/null 2>&1 || ! protoc_include >/dev/null; then
  apt_install protobuf-compiler libprotobuf-dev
fi
protoc_include >/dev/null || die "google/protobuf/descriptor.proto not found after installing libprotobuf-dev"
version=$(cd pkg && go list -m -f '{{.Version}}' google.golang.org/protobuf)
if [ ! -x bin/protoc-gen-go ] || [ "$(cat bin/.protoc-gen-go.version 2>/dev/null)" != "$version" ]; then
  mkdir -p bin
  GOBIN="$PWD/bin" GOWORK=off go install "google.golang.org/protobuf/cmd/protoc-gen-go@$version"
  echo "$version" > bin/.protoc-gen-go.version
fi
