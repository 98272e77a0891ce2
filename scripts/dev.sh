#!/usr/bin/env bash
# Runs the whole Taskforge stack on this machine for development (`make dev`):
#   - installs Redis and PostgreSQL from the OS packages when missing (as root),
#   - starts them on loopback ports with their data under ./.run (kept across runs),
#   - creates the taskforge role and database when missing,
#   - builds api, worker, scheduler and monitor into ./bin,
#   - applies the migrations and loads the demo data (api seed-demo),
#   - runs the four services with their logs prefixed by the service name,
#   - waits until the API is ready and prints the URLs and a development admin key.
# Ctrl-C stops the services (gracefully, SIGTERM), then Redis and PostgreSQL.
#
# Environment:
#   DEV_REDIS_PORT     Redis port (default 6390)
#   DEV_POSTGRES_PORT  PostgreSQL port (default 5490)
#   TASKFORGE_*        any configuration key, e.g. TASKFORGE_LOG_LEVEL=debug or
#                      TASKFORGE_API_ADDR=127.0.0.1:18080 (Redis, database, admin
#                      key and storage directory are set by this script)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

root=$PWD
run="$root/.run"
redis_port=${DEV_REDIS_PORT:-6390}
pg_port=${DEV_POSTGRES_PORT:-5490}
services=(api worker scheduler monitor)
# The services' addresses: the configuration's defaults unless set in the
# environment.
api_addr=${TASKFORGE_API_ADDR:-127.0.0.1:8080}
monitor_addr=${TASKFORGE_MONITOR_ADDR:-127.0.0.1:8081}
worker_admin=${TASKFORGE_WORKER_ADMIN_ADDR:-127.0.0.1:9091}
scheduler_admin=${TASKFORGE_SCHEDULER_ADMIN_ADDR:-127.0.0.1:9092}

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# http_status HOST:PORT PATH prints the HTTP status of a GET, or 000. Plain bash,
# so that a fresh machine needs no curl.
http_status() {
  local host=${1%:*} port=${1##*:} path=$2 line
  if ! { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then echo 000; return; fi
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$1" >&3
  if IFS=' ' read -r -t 5 _ line _ <&3; then echo "$line"; else echo 000; fi
  exec 3<&- 3>&-
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

command -v go >/dev/null 2>&1 || die "Go is required (https://go.dev/dl)"
for tool in setsid sed; do command -v "$tool" >/dev/null 2>&1 || die "$tool is required"; done

# --- Cleanup: services first (SIGTERM to each process group), then the stores.
pids=()
names=()
stopping=
cleanup() {
  [ -n "$stopping" ] && return
  stopping=1
  trap '' INT TERM
  echo
  say "stopping"
  local i pid
  for i in "${!pids[@]}"; do
    kill -TERM -- "-${pids[$i]}" 2>/dev/null || true
  done
  [ -n "${build_pid:-}" ] && kill "$build_pid" 2>/dev/null || true
  [ -n "${cli_pid:-}" ] && kill "$cli_pid" 2>/dev/null || true
  # The worker drains running tasks for up to worker.shutdown_timeout.
  for _ in $(seq 1 400); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "${names[$i]} did not stop in 40s; killing it" >&2
      kill -KILL -- "-${pids[$i]}" 2>/dev/null || true
    fi
  done
  stop_dev_redis
  stop_postgres "$run/pg"
  say "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stop_dev_redis() {
  local pid
  [ -f "$run/redis/redis.pid" ] || return 0
  pid=$(cat "$run/redis/redis.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$run/redis/redis.pid"
}

# --- Redis and PostgreSQL.
# The build runs while Redis and PostgreSQL are installed and started: on a
# fresh machine the two take about as long, and overlap.
t_begin=$SECONDS
say "building ${services[*]} into bin/ (in the background)"
mkdir -p "$run"
build_services bin "${services[@]}" >"$run/build.log" 2>&1 &
build_pid=$!
ensure_stores
mkdir -p "$run/results"
# A previous run that was killed hard may have left them running: restart clean.
stop_dev_redis
stop_postgres "$run/pg"
for p in "DEV_REDIS_PORT $redis_port" "DEV_POSTGRES_PORT $pg_port" "TASKFORGE_API_ADDR ${api_addr##*:}" \
  "TASKFORGE_MONITOR_ADDR ${monitor_addr##*:}" "TASKFORGE_WORKER_ADMIN_ADDR ${worker_admin##*:}" \
  "TASKFORGE_SCHEDULER_ADMIN_ADDR ${scheduler_admin##*:}"; do
  port_busy "${p#* }" && die "port ${p#* } on 127.0.0.1 is in use (another 'make dev' still running?): stop that process or choose another port with ${p% *}"
done

say "starting Redis on 127.0.0.1:$redis_port (data in .run/redis)"
start_redis "$run/redis" "$redis_port" --appendonly yes
say "starting PostgreSQL on 127.0.0.1:$pg_port (data in .run/pg)"
start_postgres "$run/pg" "$pg_port"
if [ "$(psql_as "$run/pg" "$pg_port" "SELECT 1 FROM pg_roles WHERE rolname = 'taskforge'")" != 1 ]; then
  psql_as "$run/pg" "$pg_port" "CREATE ROLE taskforge LOGIN"
fi
if [ "$(psql_as "$run/pg" "$pg_port" "SELECT 1 FROM pg_database WHERE datname = 'taskforge'")" != 1 ]; then
  psql_as "$run/pg" "$pg_port" "CREATE DATABASE taskforge OWNER taskforge"
fi

# --- Configuration shared by every service (env beats any --config file).
if [ ! -s "$run/dev-admin-key" ]; then
  (umask 077; echo "tfdev_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$run/dev-admin-key")
fi
admin_key=$(cat "$run/dev-admin-key")
export TASKFORGE_ENV=development
export TASKFORGE_LOG_FORMAT=${TASKFORGE_LOG_FORMAT:-console}
export TASKFORGE_REDIS_ADDR="127.0.0.1:$redis_port"
export TASKFORGE_DATABASE_URL="postgres://taskforge@127.0.0.1:$pg_port/taskforge?sslmode=disable"
export TASKFORGE_AUTH_BOOTSTRAP_ADMIN_KEY="$admin_key"
export TASKFORGE_STORAGE_LOCAL_DIR="$run/results"
export TASKFORGE_API_ADDR=$api_addr TASKFORGE_MONITOR_ADDR=$monitor_addr
export TASKFORGE_WORKER_ADMIN_ADDR=$worker_admin TASKFORGE_SCHEDULER_ADMIN_ADDR=$scheduler_admin

# --- Build.
say "waiting for the build"
if ! wait "$build_pid"; then
  cat "$run/build.log" >&2
  die "go build failed (see above)"
fi
built=("${services[@]}")
echo "built in $((SECONDS - t_begin))s"
# The CLI is not part of the stack: it builds while the stack starts.
( if build_services bin cli >"$run/build-cli.log" 2>&1; then echo "bin/taskforge built"; else echo "bin/taskforge failed to build: see .run/build-cli.log" >&2; fi ) &
cli_pid=$!

# --- Schema and demo data.
say "applying migrations"
bin/taskforge-api migrate up
say "loading the demo data"
set +e
seed_out=$(bin/taskforge-api seed-demo 2>&1)
seed_rc=$?
set -e
if [ $seed_rc = 0 ]; then
  echo "$seed_out"
elif grep -q 'unknown command' <<<"$seed_out"; then
  echo "this API has no seed-demo command yet: no demo data loaded" >&2
else
  echo "$seed_out" >&2
  die "seed-demo failed"
fi

# --- Services, each in its own process group, logs prefixed with its name.
prefix() {
  # Ignore Ctrl-C: the prefixer must outlive its service's shutdown messages.
  trap '' INT
  local tag
  tag=$(printf '%-9s|' "$1")
  exec sed -u "s/^/$tag /"
}
for s in "${built[@]}"; do
  setsid "bin/taskforge-$s" > >(prefix "$s") 2>&1 &
  pids+=($!)
  names+=("$s")
done

# --- Wait for readiness.
wait_ready() {
  local name=$1 addr=$2 i
  for _ in $(seq 1 600); do
    [ "$(http_status "$addr" /readyz)" = 200 ] && return 0
    for i in "${!pids[@]}"; do
      kill -0 "${pids[$i]}" 2>/dev/null || die "${names[$i]} exited during start-up (see its lines above)"
    done
    sleep 0.2
  done
  die "$name did not become ready on $addr within 120s"
}
wait_ready api "$api_addr"
[[ " ${built[*]} " == *" monitor "* ]] && wait_ready monitor "$monitor_addr"

cat <<EOF

$(say "Taskforge is running (Ctrl-C stops everything)")
  API              http://$api_addr/api/v1
  OpenAPI          http://$api_addr/api/v1/openapi.yaml
  Console          http://$api_addr/console/
  Asynqmon         http://$monitor_addr/monitoring
  Metrics          http://$api_addr/metrics  http://$monitor_addr/metrics
                   http://$worker_admin/metrics  http://$scheduler_admin/metrics
  Redis            127.0.0.1:$redis_port     PostgreSQL  127.0.0.1:$pg_port (role and database taskforge)
  Services         ${built[*]}
$([ "$seed_rc" = 0 ] && echo "  Demo portfolios  pf_demo_balanced pf_demo_growth pf_demo_income")

  Development admin key (kept in .run/dev-admin-key):
    $admin_key
  Try the CLI (bin/taskforge, built in the background: "bin/taskforge built" below):
    export TASKFORGE_URL=http://$api_addr TASKFORGE_TOKEN=\$(cat .run/dev-admin-key)
    bin/taskforge task-types
    bin/taskforge tasks create --type calculate_metrics --param portfolio_id=pf_demo_growth --watch
  or curl:
    curl -s -H 'Authorization: Bearer $admin_key' http://$api_addr/api/v1/task-types
    curl -s -H 'Authorization: Bearer $admin_key' -H 'Content-Type: application/json' \\
      -d '{"type":"calculate_metrics","params":{"portfolio_id":"pf_demo_growth"}}' http://$api_addr/api/v1/tasks

EOF

# --- Run until Ctrl-C or until a service exits.
while :; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "${names[$i]} exited; stopping the others" >&2
      exit 1
    fi
  done
  sleep 1
done
