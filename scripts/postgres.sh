#!/usr/bin/env bash
# Starts a throw-away PostgreSQL cluster on 127.0.0.1:${ARCHLAB_PG_PORT:-54329} and prints its
# SQLAlchemy URL. Prints nothing (and exits 1) when no server can be started.
# `postgres.sh status` exits 0 when that server is running; `postgres.sh stop` stops it.
set -uo pipefail
port=${ARCHLAB_PG_PORT:-54329}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bin" ] || exit 1
dir=${ARCHLAB_PG_DIR:-/tmp/archlab-pg}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "${1:-}" in
  status) as_pg "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" 2>/dev/null; exit ;;
  stop) as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1; exit ;;
esac
if ! as_pg "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
  rm -rf "$dir"; mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null 2>&1 || exit 1
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null || exit 1
fi
as_pg "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='archlab_test'" \
  | grep -q 1 || as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres archlab_test || exit 1
echo "postgresql+psycopg2://postgres@127.0.0.1:$port/archlab_test"
