#!/usr/bin/env bash
# fresh-check.sh (`make fresh-check`) proves the README's two commands on a
# clean machine: it builds a minimal Debian 12 root with debootstrap in a
# temporary directory, copies in only the Go toolchain and a fresh clone of this
# repository's HEAD (commit first: uncommitted changes are not in it), and runs,
# as root inside it with chroot:
#
#   1. scripts/dev.sh until the API's /readyz answers 200 and a demo task
#      (calculate_metrics on pf_demo_growth) completes, then stops it (SIGTERM);
#   2. scripts/test.sh, to its end.
#
# It prints the time of each and exits non-zero when either fails, took longer
# than its limit, or left the clone's work tree changed. Nothing is cached for
# the project inside the root: no Go module or build cache, no tools, no
# packages but Debian's minimal base (with ca-certificates, which every Debian
# image carries). Only debootstrap's download of the base system is kept, in
# /var/cache/taskforge-fresh, so a second run starts sooner; FRESH_NO_CACHE=1
# downloads it again.
#
# Everything runs in a new PID and mount namespace: when the check ends, every
# process started inside is killed, the mounts go away and the root is removed.
# Servers listen on loopback only (the network namespace is the host's, for
# Debian's and the Go module proxy's registries).
#
# Environment:
#   FRESH_DEV_LIMIT   seconds scripts/dev.sh may take to be ready (default 180)
#   FRESH_TEST_LIMIT  seconds scripts/test.sh may take (default 600)
#   FRESH_KEEP=1      keep the root for a look afterwards (printed)
#   FRESH_SKIP_TEST=1 stop after step 1 (to time scripts/dev.sh alone)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

[ "$(id -u)" = 0 ] || die "fresh-check needs root (debootstrap, chroot, mounts)"
command -v go >/dev/null 2>&1 || die "Go is required"
for tool in debootstrap unshare curl; do
  command -v "$tool" >/dev/null 2>&1 && continue
  case $tool in
  unshare) apt_install util-linux ;;
  *) apt_install "$tool" ;;
  esac
done

dev_limit=${FRESH_DEV_LIMIT:-180}
test_limit=${FRESH_TEST_LIMIT:-600}
suite=bookworm
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
mirror=${mirror:-http://deb.debian.org/debian}
cache=/var/cache/taskforge-fresh
tarball="$cache/debootstrap-$suite-minbase.tgz"
repo=$PWD
goroot=$(go env GOROOT)

work=$(mktemp -d /var/tmp/taskforge-fresh.XXXXXX)
R="$work/root"
running=()
cleanup() {
  local rc=$? p
  for p in "${running[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${running[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
  if [ -n "${FRESH_KEEP:-}" ]; then
    echo "root kept at $R"
  else
    rm -rf --one-file-system "$work"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t_start=$(date +%s)
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# --- The root: Debian 12 minbase, plus ca-certificates.
mkdir -p "$cache" "$R"
if [ -n "${FRESH_NO_CACHE:-}" ] || [ ! -s "$tarball" ]; then
  say "downloading Debian $suite (minbase) from $mirror"
  debootstrap --variant=minbase --include=ca-certificates --make-tarball="$tarball.part" \
    "$suite" "$work/tarball-scratch" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log"; die "debootstrap --make-tarball failed"; }
  mv "$tarball.part" "$tarball"
  rm -rf "$work/tarball-scratch"
fi
say "building a Debian $suite root in $R"
debootstrap --variant=minbase --include=ca-certificates --unpack-tarball="$tarball" \
  "$suite" "$R" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log"; die "debootstrap failed"; }
cp /etc/resolv.conf "$R/etc/resolv.conf"
# A machine of this kind trusts the certificate authorities this one does
# (local ones in /usr/local/share/ca-certificates, such as a network's proxy CA).
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$R/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/"
  cp /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/ca-certificates.crt"
fi
# The same package sources as this machine (a fresh machine of this kind has them).
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  rm -f "$R/etc/apt/sources.list"
  cp /etc/apt/sources.list.d/debian.sources "$R/etc/apt/sources.list.d/"
fi

# --- Go and a fresh clone, nothing else.
mkdir -p "$R/usr/local" "$R/src"
cp -a "$goroot" "$R/usr/local/go"
git clone -q --no-hardlinks "$repo" "$R/src/taskforge"
commit=$(git -C "$R/src/taskforge" rev-parse --short HEAD)
# The Go module proxy and checksum database this machine is set up for.
goenv="GOPROXY=$(go env GOPROXY) GOSUMDB=$(go env GOSUMDB) GONOSUMDB=$(go env GONOSUMDB) GOPRIVATE=$(go env GOPRIVATE)"
echo "root ready in $(($(date +%s) - t_start))s (taskforge $commit, $(go version | cut -d' ' -f3))"

# Ports for the dev stack that nothing on this machine uses.
api_port=$(free_port) monitor_port=$(free_port) worker_port=$(free_port) sched_port=$(free_port)
redis_port=$(free_port) pg_port=$(free_port)

# inroot CMD runs a shell command as root inside the clean root, in the clone,
# with a clean environment (PATH with Go, HOME=/root), in a new PID and mount
# namespace of its own, whose first process forwards SIGTERM to CMD: when it
# exits, everything CMD started is killed. It execs: run it in the background
# and its PID is that of unshare, whose child is the namespace's first process.
inroot() {
  exec unshare --pid --fork --mount --kill-child -- chroot "$R" /usr/bin/env -i \
    HOME=/root PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    TERM=dumb LANG=C.UTF-8 $goenv \
    DEV_REDIS_PORT="$redis_port" DEV_POSTGRES_PORT="$pg_port" \
    TASKFORGE_API_ADDR="127.0.0.1:$api_port" TASKFORGE_MONITOR_ADDR="127.0.0.1:$monitor_port" \
    TASKFORGE_WORKER_ADMIN_ADDR="127.0.0.1:$worker_port" TASKFORGE_SCHEDULER_ADMIN_ADDR="127.0.0.1:$sched_port" \
    /bin/bash -c "mount -t proc proc /proc && mkdir -p /dev/shm /dev/pts && mount -t tmpfs tmpfs /dev/shm &&
      mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
      cd /src/taskforge && { $1 </dev/null & }; child=\$!
      trap 'kill -TERM \$child' TERM
      wait \$child; rc=\$?; kill -0 \$child 2>/dev/null && { wait \$child; rc=\$?; }; exit \$rc"
}

# run_limited SECONDS LOG CMD runs CMD with inroot, output to LOG, killing it
# (and all it started) past SECONDS; returns its exit status (137 when killed).
run_limited() {
  local limit=$1 log=$2 pid t0
  (inroot "$3") >"$log" 2>&1 </dev/null &
  pid=$!
  running+=("$pid")
  t0=$(date +%s)
  while kill -0 "$pid" 2>/dev/null; do
    if [ $(($(date +%s) - t0)) -ge "$limit" ]; then
      echo "killed after ${limit}s" >>"$log"
      kill -KILL "$pid" 2>/dev/null
      break
    fi
    sleep 1
  done
  wait "$pid"
}

failed=()
api="http://127.0.0.1:$api_port"

# --- 1. scripts/dev.sh: ready, a demo task completes, stopped.
say "1/2 scripts/dev.sh (limit ${dev_limit}s to ready)"
t0=$(date +%s)
(inroot "scripts/dev.sh") >"$work/dev.log" 2>&1 </dev/null &
dev_pid=$!
running+=("$dev_pid")
# Waits up to three times the limit, so that a slow start is still measured.
ready=
while [ $(($(date +%s) - t0)) -lt $((dev_limit * 3)) ]; do
  kill -0 "$dev_pid" 2>/dev/null || break
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "$api/readyz")" = 200 ] && grep -q 'Taskforge is running' "$work/dev.log"; then
    ready=$(($(date +%s) - t0))
    break
  fi
  sleep 1
done
dev_task=
if [ -z "$ready" ]; then
  failed+=("scripts/dev.sh not ready within $((dev_limit * 3))s")
  tail -40 "$work/dev.log"
else
  echo "ready after ${ready}s"
  [ "$ready" -le "$dev_limit" ] || failed+=("scripts/dev.sh ready after ${ready}s, over ${dev_limit}s")
  key=$(cat "$R/src/taskforge/.run/dev-admin-key")
  id=$(curl -sf -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d '{"type":"calculate_metrics","params":{"portfolio_id":"pf_demo_growth"}}' "$api/api/v1/tasks" |
    sed -n 's/.*"task_id":"\([^"]*\)".*/\1/p')
  status=
  for _ in $(seq 1 120); do
    [ -n "$id" ] || break
    status=$(curl -sf -H "Authorization: Bearer $key" "$api/api/v1/tasks/$id" | sed -n 's/.*"status":"\([^"]*\)".*/\1/p')
    case $status in completed | failed | cancelled) break ;; esac
    sleep 0.5
  done
  if [ "$status" = completed ]; then
    dev_task="demo task $id completed $(($(date +%s) - t0 - ready))s after ready"
    echo "$dev_task"
  else
    failed+=("demo task ${id:-(not created)} ended as '${status:-unknown}'")
    tail -40 "$work/dev.log"
  fi
fi
# Stop as a user's script would: SIGTERM to scripts/dev.sh (the namespace's
# first process), which stops the services, Redis and PostgreSQL.
t_stop=$(date +%s)
ns_init=$(pgrep -P "$dev_pid" 2>/dev/null | head -1 || true)
[ -n "$ns_init" ] && kill -TERM "$ns_init" 2>/dev/null || true
for _ in $(seq 1 600); do kill -0 "$dev_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$dev_pid" 2>/dev/null; then
  failed+=("scripts/dev.sh did not stop within 60s of SIGTERM")
  kill -KILL "$dev_pid" 2>/dev/null || true
else
  grep -q '==> stopped' "$work/dev.log" || failed+=("scripts/dev.sh did not report a clean stop")
  echo "stopped in $(($(date +%s) - t_stop))s"
fi
wait "$dev_pid" 2>/dev/null || true
dev_total=$(($(date +%s) - t0))

# --- 2. scripts/test.sh, first run.
say "2/2 scripts/test.sh (limit ${test_limit}s)"
t0=$(date +%s)
set +e
if [ -n "${FRESH_SKIP_TEST:-}" ]; then
  echo "skipped (FRESH_SKIP_TEST)" >"$work/test.log"
  failed+=("scripts/test.sh skipped")
  true
else
run_limited "$((test_limit + 300))" "$work/test.log" "scripts/test.sh"
fi
test_rc=$?
set -e
test_secs=$(($(date +%s) - t0))
tail -5 "$work/test.log"
[ "$test_rc" = 0 ] || { failed+=("scripts/test.sh exited $test_rc"); grep -E '^(FAIL|--- FAIL|    FAIL)|panic:' "$work/test.log" | head -40; }
[ "$test_secs" -le "$test_limit" ] || failed+=("scripts/test.sh took ${test_secs}s, over ${test_limit}s")

changes=$(git -C "$R/src/taskforge" status --porcelain)
[ -z "$changes" ] || { failed+=("the work tree changed: $(echo "$changes" | head -5 | tr '\n' ' ')"); }

echo
echo "fresh-check of $commit on Debian $suite ($(date -u +%Y-%m-%d), $(nproc) cores):"
echo "  scripts/dev.sh   ready in ${ready:-(never)}s (limit ${dev_limit}s); ${dev_task:-no demo task}; ${dev_total}s in all"
echo "  scripts/test.sh  ${test_secs}s (limit ${test_limit}s), exit $test_rc"
if [ ${#failed[@]} -gt 0 ]; then
  for f in "${failed[@]}"; do echo "  FAILED: $f"; done
  cp "$work/dev.log" "$work/test.log" "${TMPDIR:-/tmp}/" 2>/dev/null && echo "  logs: ${TMPDIR:-/tmp}/dev.log ${TMPDIR:-/tmp}/test.log"
  exit 1
fi
echo "fresh-check passed"
