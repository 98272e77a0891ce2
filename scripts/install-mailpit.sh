#!/usr/bin/env bash
# install-mailpit.sh builds the mailpit SMTP test server once into <repo>/bin/mailpit.
# The notify package's email test starts that binary on loopback ports. The build
# is skipped when the binary is already there at the pinned version (recorded in
# bin/mailpit.version, since a go-install build reports its version as "dev");
# set FORCE=1 to rebuild. On a 2-core machine a cold build takes about a minute.
set -euo pipefail

MAILPIT_VERSION="v1.33.1"

root="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
bindir="${root}/bin"
bin="${bindir}/mailpit"

stamp="${bindir}/mailpit.version"

if [[ -x "${bin}" && "${FORCE:-0}" != "1" ]] &&
	[[ "$(cat "${stamp}" 2>/dev/null)" == "${MAILPIT_VERSION}" ]]; then
	echo "mailpit ${MAILPIT_VERSION} already installed at ${bin}"
	exit 0
fi

mkdir -p "${bindir}"
echo "building mailpit ${MAILPIT_VERSION} into ${bindir} (about a minute on 2 cores)"
start=$(date +%s)
# GOWORK=off: build the tool on its own module graph, not the workspace's.
(cd "${bindir}" && GOWORK=off GOBIN="${bindir}" \
	go install "github.com/axllent/mailpit@${MAILPIT_VERSION}")
echo "${MAILPIT_VERSION}" >"${stamp}"
echo "mailpit installed at ${bin} in $(($(date +%s) - start))s"
