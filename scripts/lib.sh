#!/usr/bin/env bash
# Shared helpers for the project's scripts: install and start a local Redis and
# PostgreSQL on loopback, without docker. Source it; it defines functions only.

# die prints a message and exits.
die() { echo "error: $*" >&2; exit 1; }

# apt_install installs Debian packages when running as root, else explains.
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    die "missing $*; install it with: sudo apt-get install -y $*"
  fi
  if [ -z "${TASKFORGE_APT_UPDATED:-}" ]; then
    apt-get update -qq >/dev/null || die "apt-get update failed"
    export TASKFORGE_APT_UPDATED=1
  fi
  # Niced: on a fresh machine the install overlaps the Go build, which is the
  # longer of the two and should keep the CPU.
  DEBIAN_FRONTEND=noninteractive nice -n 10 apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed"
}

# ensure_stores makes redis-server, redis-sentinel (the Sentinel failover
# tests) and PostgreSQL's initdb/pg_ctl available, installing what is missing
# in one apt run. The packages' own services are disabled (the project runs
# its own, on its own ports), and PostgreSQL's package is told not to create
# its default cluster.
ensure_stores() {
  local pkgs=()
  command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
  command -v redis-sentinel >/dev/null 2>&1 || pkgs+=(redis-sentinel)
  pg_bin >/dev/null || pkgs+=(postgresql postgresql-contrib)
  [ ${#pkgs[@]} -gt 0 ] || return 0
  echo "installing ${pkgs[*]}..." >&2
  if [ "$(id -u)" = 0 ] && [[ " ${pkgs[*]} " == *" postgresql "* ]] && [ ! -e /etc/postgresql-common/createcluster.d/taskforge.conf ]; then
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/taskforge.conf
  fi
  apt_install "${pkgs[@]}"
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now redis-server redis-sentinel postgresql >/dev/null 2>&1 || true
  fi
  command -v redis-server >/dev/null 2>&1 || die "redis-server still missing"
  command -v redis-sentinel >/dev/null 2>&1 || die "redis-sentinel still missing"
  pg_bin >/dev/null || die "PostgreSQL binaries still missing"
}

# ensure_chromium makes a headless-capable Chromium available for the
# console's browser tests (Debian's chromium package, driven over CDP).
ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && return 0
  echo "installing chromium (the console's browser tests)..." >&2
  apt_install chromium
  command -v chromium >/dev/null 2>&1 || die "chromium still missing"
}

# ensure_cc makes a C compiler available: go test -race needs cgo.
ensure_cc() {
  command -v "$(go env CC 2>/dev/null || echo gcc)" >/dev/null 2>&1 && return 0
  echo "installing gcc (go test -race needs cgo)..." >&2
  apt_install gcc libc6-dev
}

# pg_bin prints the directory holding initdb and pg_ctl.
pg_bin() {
  local d
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir; return 0
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

# free_port prints a TCP port nobody listens on at 127.0.0.1.
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( (RANDOM * 32768 + RANDOM) % 30000 + 20000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  die "no free port found"
}

# as_pg runs a command as the postgres user when we are root (PostgreSQL refuses
# to run as root), else as ourselves.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# start_redis DIR PORT [extra args] starts a throw-away Redis in DIR on 127.0.0.1:PORT.
start_redis() {
  local dir=$1 port=$2; shift 2
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save '' "$@" >/dev/null \
    || die "redis-server failed to start (see $dir/redis.log)"
  for _ in $(seq 1 300); do
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  die "redis-server did not answer on port $port (see $dir/redis.log)"
}

# stop_redis DIR stops the Redis started in DIR.
stop_redis() {
  local dir=$1
  [ -f "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
}

# start_postgres DIR PORT initialises (once) and starts PostgreSQL in DIR on
# 127.0.0.1:PORT with trust authentication for local connections.
start_postgres() {
  local dir=$1 port=$2 bin; shift 2
  bin=$(pg_bin) || die "PostgreSQL not installed"
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    as_pg true # creates the user when missing
    chown -R postgres: "$dir"
    # Every parent must be traversable by postgres.
    local p=$dir
    while [ "$p" != / ]; do p=$(dirname "$p"); chmod o+x "$p" 2>/dev/null || true; done
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
      || die "initdb failed (see $dir/initdb.log)"
  fi
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 $*" start >/dev/null \
    || { tail -n 20 "$dir/postgres.log" >&2 2>/dev/null; die "PostgreSQL failed to start (see $dir/postgres.log)"; }
}

# stop_postgres DIR stops the PostgreSQL started in DIR.
stop_postgres() {
  local dir=$1 bin
  bin=$(pg_bin) || return 0
  [ -f "$dir/data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

# psql_as DIR PORT SQL runs SQL as the postgres superuser.
psql_as() {
  local dir=$1 port=$2; shift 2
  as_pg "$(pg_bin)/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt -c "$*"
}

# build_ldflags prints the -ldflags that stamp the version and revision of this
# checkout into a service binary (pkg/buildinfo); nothing outside a git checkout.
build_ldflags() {
  local rev ver
  rev=$(git rev-parse HEAD 2>/dev/null) || return 0
  ver=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
  git diff --quiet HEAD 2>/dev/null || rev="$rev-dirty"
  # The services read them from pkg/buildinfo, the CLI from its own package (it
  # does not link pkg); -X of a package not linked is ignored.
  echo "-X github.com/taskforge/taskforge/pkg/buildinfo.version=$ver -X github.com/taskforge/taskforge/pkg/buildinfo.revision=$rev" \
    "-X github.com/taskforge/taskforge/services/cli/internal/cli.version=$ver -X github.com/taskforge/taskforge/services/cli/internal/cli.revision=$rev"
}

# build_services DIR [SERVICE...] builds the services (default: all four and
# the CLI) into DIR/taskforge-NAME (the CLI into DIR/taskforge), stamped with
# this checkout's version and revision, static (CGO_ENABLED=0) as in the
# container images. One go build for all of them, so shared packages compile
# once and links run in parallel.
build_services() {
  local dir=$1 s flags tmp pkgs=(); shift
  [ $# -gt 0 ] || set -- api worker scheduler monitor cli
  # -s -w as in the container images: no DWARF (profiles and stack traces
  # keep their symbols), and a faster link.
  flags="-s -w $(build_ldflags)"
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.build.XXXXXX")
  for s in "$@"; do pkgs+=("./services/$s"); done
  if ! CGO_ENABLED=0 go build -ldflags "$flags" -o "$tmp/" "${pkgs[@]}"; then
    rm -rf "$tmp"
    echo "go build ${pkgs[*]} failed" >&2
    return 1
  fi
  for s in "$@"; do
    if [ "$s" = cli ]; then mv -f "$tmp/cli" "$dir/taskforge"; else mv -f "$tmp/$s" "$dir/taskforge-$s"; fi
  done
  rmdir "$tmp"
}
