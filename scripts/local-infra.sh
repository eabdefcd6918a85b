#!/usr/bin/env bash
# A local PostgreSQL and nats-server on loopback, in a temporary directory, for the tests and the
# benches of the hub on PostgreSQL and NATS (Debian packages `postgresql` and `nats-server`;
# .ci/run installs them).
#
#   scripts/local-infra.sh start [pg|nats|both]   starts them (default both) and prints, one per line:
#       ALIOT_INFRA_DIR=/tmp/aliot-infra.XXXX
#       ALIOT_PG_URL=postgres://aliot@127.0.0.1:PORT/aliot
#       ALIOT_NATS_URL=nats://127.0.0.1:PORT
#   scripts/local-infra.sh stop DIR               stops what DIR runs and removes DIR
#   scripts/local-infra.sh pg-stop DIR            stops only PostgreSQL (its data stays)
#   scripts/local-infra.sh pg-start DIR           starts it again on the same port
#
# `eval "$(scripts/local-infra.sh start)"` sets the variables in a shell.
#
# PostgreSQL: initdb in DIR/pg, trust authentication for the user `aliot` on loopback and the unix
# socket (in DIR), a database `aliot`, fsync on (acknowledged = committed must mean the same as in
# production). PostgreSQL refuses to run as root: as root (CI runs as root), DIR is given to the
# user `nobody` and initdb/pg_ctl run as it through runuser.
# NATS: JetStream on, its store in DIR/nats.
set -euo pipefail

die() {
    echo "local-infra: $*" >&2
    exit 1
}

pg_bin() {
    local name=$1 dir
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        return
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x $dir/$name ]]; then
            echo "$dir/$name"
            return
        fi
    done
    die "$name not found: install the Debian package postgresql (.ci/run installs it)"
}

nats_bin() {
    command -v nats-server 2>/dev/null || { [[ -x /usr/sbin/nats-server ]] && echo /usr/sbin/nats-server; } ||
        die "nats-server not found: install the Debian package nats-server (.ci/run installs it)"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Runs a command as the owner of the PostgreSQL data (nobody when we are root).
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u nobody -- "$@"
    else
        "$@"
    fi
}

wait_port() {
    local port=$1 i
    for ((i = 0; i < 200; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

pg_start() {
    local dir=$1 port
    port=$(cat "$dir/pg.port")
    as_pg "$(pg_bin pg_ctl)" -D "$dir/pg" -l "$dir/pg.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=200" \
        start >/dev/null || { cat "$dir/pg.log" >&2; die "PostgreSQL did not start (log above)"; }
}

pg_stop() {
    local dir=$1
    if [[ -f $dir/pg/postmaster.pid ]]; then
        as_pg "$(pg_bin pg_ctl)" -D "$dir/pg" -m fast -w -t 60 stop >/dev/null || true
    fi
}

start_pg() {
    local dir=$1 port
    port=$(free_port)
    echo "$port" >"$dir/pg.port"
    as_pg "$(pg_bin initdb)" -D "$dir/pg" -U aliot --auth=trust --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; die "initdb failed (log above)"; }
    pg_start "$dir"
    as_pg "$(pg_bin psql)" -h "$dir" -p "$port" -U aliot -d postgres -q -c 'CREATE DATABASE aliot' >/dev/null
    echo "ALIOT_PG_URL=postgres://aliot@127.0.0.1:$port/aliot"
}

start_nats() {
    local dir=$1 port
    port=$(free_port)
    echo "$port" >"$dir/nats.port"
    mkdir -p "$dir/nats"
    "$(nats_bin)" -a 127.0.0.1 -p "$port" -js -sd "$dir/nats" -P "$dir/nats.pid" -l "$dir/nats.log" \
        </dev/null >/dev/null 2>&1 &
    wait_port "$port" || { cat "$dir/nats.log" >&2 || true; die "nats-server did not start (log above)"; }
    echo "ALIOT_NATS_URL=nats://127.0.0.1:$port"
}

stop_all() {
    local dir=$1
    [[ -d $dir && -f $dir/.aliot-infra ]] || die "$dir is not a directory made by local-infra.sh start"
    pg_stop "$dir"
    if [[ -f $dir/nats.pid ]]; then
        local pid
        pid=$(cat "$dir/nats.pid")
        kill "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    fi
    rm -rf "$dir"
}

cmd=${1:-}
case $cmd in
start)
    what=${2:-both}
    case $what in pg | nats | both) ;; *) die "start takes pg, nats or both" ;; esac
    # Fail before making anything when a binary is missing.
    if [[ $what != nats ]]; then pg_bin initdb >/dev/null; fi
    if [[ $what != pg ]]; then nats_bin >/dev/null; fi
    dir=$(mktemp -d "${TMPDIR:-/tmp}/aliot-infra.XXXXXX")
    touch "$dir/.aliot-infra"
    if [[ $(id -u) -eq 0 ]]; then chown nobody "$dir"; fi
    trap 'stop_all "$dir" >/dev/null 2>&1 || true' EXIT # a failed start leaves nothing behind
    echo "ALIOT_INFRA_DIR=$dir"
    if [[ $what != nats ]]; then start_pg "$dir"; fi
    if [[ $what != pg ]]; then start_nats "$dir"; fi
    trap - EXIT
    ;;
stop) stop_all "${2:?stop takes the directory that start printed}" ;;
pg-stop) pg_stop "${2:?pg-stop takes the directory}" ;;
pg-start) pg_start "${2:?pg-start takes the directory}" ;;
*) die "usage: $0 start [pg|nats|both] | stop DIR | pg-stop DIR | pg-start DIR" ;;
esac
