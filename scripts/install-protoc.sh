#!/usr/bin/env bash
# Installs protoc (Debian's protobuf-compiler) and protoc-gen-go at the version
# pinned in pkg/go.mod into ./bin, so `make proto` is reproducible.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
command -v protoc >/dev/null 2>&1 || apt_install protobuf-compiler
version=$(cd pkg && go list -m -f '{{.Version}}' google.golang.org/protobuf)
if [ ! -x bin/protoc-gen-go ] || [ "$(cat bin/.protoc-gen-go.version 2>/dev/null)" != "$version" ]; then
  mkdir -p bin
  GOBIN="$PWD/bin" GOWORK=off go install "google.golang.org/protobuf/cmd/protoc-gen-go@$version"
  echo "$version" > bin/.protoc-gen-go.version
fi
