#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks, from the Debian
# packages (`apt-get install postgresql`). Never for production data: it
# trusts every local connection.
#
#   scripts/pg.sh init DIR [PORT] create a cluster in DIR, start it on
#                                 127.0.0.1:PORT (default: the first free
#                                 port from 55432), print its admin URL
#   scripts/pg.sh stop DIR        stop it (fast: clients are disconnected)
#   scripts/pg.sh start DIR       start it again
#
# PostgreSQL refuses to run as root, so as root the cluster belongs to the
# `postgres` user the Debian package creates.
set -euo pipefail

bindir() {
  if [[ -n "${PARASOL_PG_BIN:-}" ]]; then echo "$PARASOL_PG_BIN"; return; fi
  if command -v pg_config >/dev/null 2>&1 && [[ -x "$(pg_config --bindir)/initdb" ]]; then
    pg_config --bindir; return
  fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [[ -z "$d" ]]; then
    echo "pg.sh: no PostgreSQL server binaries found; apt-get install -y postgresql" >&2
    exit 1
  fi
  echo "$d"
}

as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

BIN=$(bindir)
cmd=${1:?usage: pg.sh init DIR [PORT] | stop DIR | start DIR}
dir=${2:?data directory}

case "$cmd" in
  init)
    port=${3:-}
    if [[ -z "$port" ]]; then
      port=55432
      while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    fi
    mkdir -p "$dir"
    if [[ "$(id -u)" == 0 ]]; then chown postgres: "$dir"; fi
    as_owner "$BIN/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
    # Many test servers share one cluster, each with its own pool.
    cat >>"$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = ${PARASOL_PG_MAX_CONNECTIONS:-400}
fsync = ${PARASOL_PG_FSYNC:-off}
synchronous_commit = ${PARASOL_PG_FSYNC:-off}
full_page_writes = ${PARASOL_PG_FSYNC:-off}
shared_buffers = 128MB
CONF
    as_owner "$BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    as_owner "$BIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null
    ;;
  start)
    as_owner "$BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null
    ;;
  *)
    echo "pg.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac
