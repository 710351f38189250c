#!/usr/bin/env bash
# A private PostgreSQL cluster on loopback for tests and CI, from Debian's packages.
#
#   bash ops/postgres/pg.sh install   # apt-get install postgresql when initdb is missing
#   bash ops/postgres/pg.sh start     # initdb (once), start, create role+database `hotline`
#   bash ops/postgres/pg.sh status    # exit 0 when pg_isready answers
#   bash ops/postgres/pg.sh stop      # fast shutdown
#   bash ops/postgres/pg.sh url       # print the SQLAlchemy URL
#
# The cluster lives under $PG_HOME_DIR (default <repo>/var/pg) and, when we are root, runs as
# the `postgres` system user. It is a throwaway test cluster: fsync is off.
#
# Environment (defaults in brackets): PG_HOME_DIR [<repo>/var/pg]  PG_PORT [55432]
#   PG_BIN_DIR [newest /usr/lib/postgresql/<ver>/bin]  PG_WAIT_SECONDS [60]
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

PG_PORT="${PG_PORT:-55432}"
PG_WAIT_SECONDS="${PG_WAIT_SECONDS:-60}"
DB_NAME=hotline
DB_USER=hotline
DB_PASSWORD=hotline

DB_URL="postgresql+psycopg://$DB_USER:$DB_PASSWORD@127.0.0.1:$PG_PORT/$DB_NAME"

log() { echo "postgres: $*"; }
die() { echo "postgres: ERROR: $*" >&2; exit 1; }

# Where the cluster lives. As root the server runs as `postgres`, which must be able to reach
# the folder; when a parent of the work tree is closed to it (e.g. a clone under /root), the
# default moves to /var/tmp, named after the work tree so two clones never share a cluster.
resolve_home() {
    if [[ -n "${PG_HOME_DIR:-}" ]]; then
        echo "$PG_HOME_DIR"
    elif [[ "$(id -u)" != 0 ]] || (cd / && runuser -u postgres -- test -x "$REPO_ROOT"); then
        echo "$REPO_ROOT/var/pg"
    else
        echo "/var/tmp/hotline-pg-$(echo "$REPO_ROOT" | cksum | cut -d' ' -f1)"
    fi
}
PG_HOME_DIR="$(resolve_home)"
DATA_DIR="$PG_HOME_DIR/data"
SOCKET_DIR="$PG_HOME_DIR/run"
if ((${#SOCKET_DIR} > 80)); then  # a Unix socket path is limited to ~107 bytes
    SOCKET_DIR="/tmp/hotline-pg-$(echo "$PG_HOME_DIR" | cksum | cut -d' ' -f1)"
fi
LOG_FILE="$PG_HOME_DIR/postgres.log"

find_bin_dir() {
    if [[ -n "${PG_BIN_DIR:-}" ]]; then
        echo "$PG_BIN_DIR"
        return 0
    fi
    local dir
    dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2> /dev/null \
        | sort -V | tail -n 1)"
    [[ -n "$dir" && -x "$dir/initdb" ]] && echo "$dir"
}

bin() {
    local dir
    dir="$(find_bin_dir)" || die "PostgreSQL is not installed; run: bash ops/postgres/pg.sh install"
    echo "$dir/$1"
}

# Run a command as the cluster owner: `postgres` when we are root, else ourselves.
# From `/`, since the caller's directory may be closed to `postgres`.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

cmd_install() {
    if find_bin_dir > /dev/null; then
        log "installed ($(find_bin_dir))"
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || die "installing needs root: apt-get install -y postgresql"
    log "installing Debian's postgresql package"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
    find_bin_dir > /dev/null || die "initdb still missing after apt-get install postgresql"
}

init_cluster() {
    mkdir -p "$PG_HOME_DIR" "$SOCKET_DIR"
    if [[ "$(id -u)" == 0 ]]; then
        chown postgres:postgres "$PG_HOME_DIR" "$SOCKET_DIR"
    fi
    if [[ -f "$DATA_DIR/PG_VERSION" ]]; then
        return 0
    fi
    log "initdb in $DATA_DIR"
    local pwfile="$PG_HOME_DIR/.initdb-pw"
    echo "postgres" > "$pwfile"
    if [[ "$(id -u)" == 0 ]]; then
        chown postgres:postgres "$pwfile"
    fi
    as_owner "$(bin initdb)" -D "$DATA_DIR" -U postgres --pwfile="$pwfile" -E UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 > "$PG_HOME_DIR/initdb.log" 2>&1 \
        || { rm -f "$pwfile"; cat "$PG_HOME_DIR/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pwfile"
    as_owner tee -a "$DATA_DIR/postgresql.conf" > /dev/null <<EOF

# Added by ops/postgres/pg.sh: loopback only, private socket dir, throwaway durability.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$SOCKET_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
shared_buffers = 64MB
EOF
}

check_version() {
    local data_version bin_version
    data_version="$(cat "$DATA_DIR/PG_VERSION")"
    bin_version="$(basename "$(dirname "$(find_bin_dir)")")"
    [[ "$data_version" == "$bin_version" ]] \
        || die "$DATA_DIR was made by PostgreSQL $data_version but $bin_version is installed; remove $PG_HOME_DIR"
}

is_ready() {
    "$(bin pg_isready)" -q -h 127.0.0.1 -p "$PG_PORT" -d "$DB_NAME" -U "$DB_USER"
}

psql_admin() {
    as_owner "$(bin psql)" -v ON_ERROR_STOP=1 -q -X -h "$SOCKET_DIR" -p "$PG_PORT" -U postgres "$@"
}

ensure_database() {
    psql_admin -d postgres <<EOF
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASSWORD';
  END IF;
END
\$\$;
EOF
    if [[ "$(psql_admin -d postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]]; then
        psql_admin -d postgres -c "CREATE DATABASE $DB_NAME OWNER $DB_USER ENCODING 'UTF8'"
    fi
}

cmd_start() {
    find_bin_dir > /dev/null || cmd_install
    init_cluster
    check_version
    if as_owner "$(bin pg_ctl)" -D "$DATA_DIR" status > /dev/null 2>&1; then
        log "already running on 127.0.0.1:$PG_PORT"
    else
        log "starting on 127.0.0.1:$PG_PORT, log $LOG_FILE"
        as_owner "$(bin pg_ctl)" -D "$DATA_DIR" -l "$LOG_FILE" -w -t "$PG_WAIT_SECONDS" start \
            > /dev/null || { tail -n 30 "$LOG_FILE" >&2; die "pg_ctl start failed"; }
    fi
    ensure_database
    is_ready || die "pg_isready does not answer on 127.0.0.1:$PG_PORT"
    log "ready: $DB_URL"
}

cmd_status() {
    if find_bin_dir > /dev/null && is_ready; then
        log "ready: $DB_URL"
        return 0
    fi
    log "not running on 127.0.0.1:$PG_PORT"
    return 1
}

cmd_stop() {
    if [[ ! -f "$DATA_DIR/PG_VERSION" ]] || ! find_bin_dir > /dev/null; then
        log "not running (no cluster in $DATA_DIR)"
        return 0
    fi
    if ! as_owner "$(bin pg_ctl)" -D "$DATA_DIR" status > /dev/null 2>&1; then
        log "not running"
        return 0
    fi
    as_owner "$(bin pg_ctl)" -D "$DATA_DIR" -m fast -w -t "$PG_WAIT_SECONDS" stop > /dev/null
    log "stopped"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    url) echo "$DB_URL" ;;
    *)
        echo "usage: $0 {install|start|stop|status|url}" >&2
        exit 2
        ;;
esac
