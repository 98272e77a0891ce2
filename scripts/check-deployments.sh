#!/usr/bin/env bash
# check-deployments.sh validates everything under deployments/ offline, without a
# docker engine, a Kubernetes cluster or internet access (only the Go module proxy
# and Debian's packages are used, to install the tools once):
#
#   1. each service module builds as its container image builds it
#      (GOWORK=off, CGO_ENABLED=0, static), and so does the image's health probe;
#   2. deployments/check (go test): the Dockerfile parsed by BuildKit's parser;
#      compose.yaml loaded by compose-go as `docker compose config` would
#      (compose-spec schema, interpolation, required secrets, depends_on, ports);
#      the Helm chart linted and rendered with Helm's own Go packages (the
#      linter behind `helm lint --strict` and the engine behind `helm template`,
#      pinned in deployments/check/go.mod; no helm binary) with several value
#      sets, every rendered object decoded strictly into the Kubernetes API types (unknown fields are errors), KEDA and Prometheus Operator objects
#      checked against their CRD fields, and the chart's own rules (probes,
#      resources, PDBs, grace period > worker shutdown timeout, migration hook);
#   3. the Prometheus alert rules: `promtool check rules` and `promtool test rules`.
#
# Tools: promtool comes from Debian's `prometheus` package (a prebuilt binary),
# installed when missing (root only; its service is not started).
# Exit status is non-zero when any check fails; each check prints its result.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. scripts/lib.sh

failed=()
passed=()
start_all=$(date +%s)

# step NAME CMD...: runs one check, records and prints its outcome and duration.
step() {
	local name="$1"
	shift
	local t0 rc
	t0=$(date +%s)
	echo "==> $name"
	"$@"
	rc=$?
	if [ $rc -eq 0 ]; then
		passed+=("$name")
		echo "    ok: $name ($(($(date +%s) - t0))s)"
	else
		failed+=("$name")
		echo "    FAIL: $name (exit $rc, $(($(date +%s) - t0))s)"
	fi
}

# --- tools -------------------------------------------------------------------

ensure_promtool() {
	command -v promtool >/dev/null 2>&1 && return 0
	echo "installing promtool (Debian package prometheus; its service is not started)"
	# Keep the package's maintainer scripts from starting a Prometheus server.
	local made_policy=""
	if [ "$(id -u)" = 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		made_policy=1
	fi
	(apt_install prometheus)
	local rc=$?
	[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
	if command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now prometheus >/dev/null 2>&1 || true
	fi
	[ $rc -eq 0 ] && command -v promtool >/dev/null 2>&1
}

# --- checks ------------------------------------------------------------------

build_services() {
	local out rc=0 s
	out=$(mktemp -d "${TMPDIR:-/tmp}/taskforge-build.XXXXXX")
	for s in api worker scheduler monitor cli; do
		if ! ls services/$s/*.go >/dev/null 2>&1; then
			echo "    services/$s: no main package yet"
			rc=1
			continue
		fi
		if (cd "services/$s" && GOWORK=off CGO_ENABLED=0 go build -o "$out/$s" .); then
			if go version -m "$out/$s" | grep -q 'CGO_ENABLED=0'; then
				echo "    services/$s: static binary, $(du -h "$out/$s" | cut -f1)"
			else
				echo "    services/$s: not built with CGO_ENABLED=0"
				rc=1
			fi
		else
			echo "    services/$s: GOWORK=off build failed"
			rc=1
		fi
	done
	# The image's health probe: standard library only, built outside any module.
	if (cd "$out" && GOWORK=off CGO_ENABLED=0 go build -o "$out/healthcheck" "$root/deployments/docker/healthcheck/main.go"); then
		echo "    deployments/docker/healthcheck: built"
	else
		rc=1
	fi
	rm -rf "$out"
	return $rc
}

go_checks() {
	(cd deployments/check && GOWORK=off go test -count=1 -v ./... 2>&1 |
		grep -E '^(--- |ok |FAIL|PASS|panic)|^\s+\S+_test\.go:' | sed 's/^/    /'
	exit "${PIPESTATUS[0]}")
}

alert_rules() {
	(cd deployments/prometheus && promtool check rules alerts.yaml && promtool test rules alerts_test.yaml) 2>&1 | sed 's/^/    /'
	return "${PIPESTATUS[0]}"
}

# --- run ---------------------------------------------------------------------

step "install promtool" ensure_promtool
step "services build with GOWORK=off CGO_ENABLED=0 (as in deployments/docker/Dockerfile)" build_services
step "Dockerfile, compose.yaml and Helm chart (go test in deployments/check)" go_checks
if [[ " ${failed[*]} " == *" install promtool "* ]]; then
	failed+=("alert rules (promtool missing)")
else
	step "Prometheus alert rules (promtool check rules, promtool test rules)" alert_rules
fi

echo
echo "check-deployments: ${#passed[@]} passed, ${#failed[@]} failed in $(($(date +%s) - start_all))s"
for f in "${failed[@]}"; do echo "  failed: $f"; done
[ ${#failed[@]} -eq 0 ]
