#!/usr/bin/env bash
# Installs the tools the tests and generators need into ./bin (once).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
for s in scripts/install-*.sh; do
  [ "$s" = scripts/install-tools.sh ] && continue
  [ -x "$s" ] && "$s"
done
exit 0
