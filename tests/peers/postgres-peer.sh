#!/bin/sh
# postgres-peer.sh - a private PostgreSQL 15 for the queue tests.
#
#   postgres-peer.sh start          initdb into a new temporary directory DIR
#                                   (owned by the postgres user, as tests run
#                                   as root), start it listening on
#                                   127.0.0.1 on a free port and on a socket
#                                   in DIR; print "DIR PORT PID" on one line.
#                                   The password of the user postgres is in
#                                   DIR/password (scram-sha-256 everywhere).
#   postgres-peer.sh stop DIR       stop the server by its own pid (SIGINT:
#                                   fast shutdown, then SIGKILL after 20 s),
#                                   remove DIR.
#   postgres-peer.sh stop-only DIR  stop the server, keep DIR.
#   postgres-peer.sh start-again DIR  start it again on its port.
#   postgres-peer.sh freeze DIR S   SIGSTOP the server and its processes
#                                   (by their pids): connections stay open,
#                                   nothing answers; SIGCONT after S
#                                   seconds in any case (a failing test
#                                   leaves no frozen server).
#   postgres-peer.sh thaw DIR       SIGCONT them.
#   postgres-peer.sh sql DIR DB SQL run SQL in database DB, print the rows
#                                   unaligned, '|' between fields.
#   postgres-peer.sh createdb DIR DB  create database DB.
# fsync is off (tests), on with MAILPOOL_PG_FSYNC=on (make bench).
# The server never touches the system's clusters (no pg_ctlcluster).
set -eu

bin=/usr/lib/postgresql/15/bin
here=$(dirname "$0")

as_pg() { runuser -u postgres -- "$@"; }

pg_start() {    # DIR PORT
    as_pg "$bin/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $2 -k $1 -c fsync=${MAILPOOL_PG_FSYNC:-off} -c max_connections=300" \
        start >/dev/null
}

pg_pid() { head -n 1 "$1/data/postmaster.pid" 2>/dev/null || true; }

pg_stop() {     # DIR
    pid=$(pg_pid "$1")
    [ -n "$pid" ] || return 0
    kill -INT "$pid" 2>/dev/null || return 0
    i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt 200 ]; then kill -KILL "$pid" 2>/dev/null || true; fi
        sleep 0.1
    done
}

pg_signal_all() {   # DIR SIG: the server's pid and its children's
    pid=$(pg_pid "$1")
    [ -n "$pid" ] || return 0
    kids=$(ps -o pid= --ppid "$pid" || true)
    # shellcheck disable=SC2086
    kill -"$2" $kids "$pid" 2>/dev/null || true
}

psql_in() {     # DIR DB SQL
    port=$(cat "$1/port")
    PGPASSWORD=$(cat "$1/password") "$bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$port" -U postgres -d "$2" -c "$3"
}

case "${1:-}" in
start)
    dir=$(mktemp -d /tmp/mailpool-pg-XXXXXX)
    chown postgres "$dir"
    chmod 0700 "$dir"
    head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dir/password"
    chown postgres "$dir/password"
    chmod 0600 "$dir/password"
    as_pg "$bin/initdb" -D "$dir/data" -U postgres -A scram-sha-256 \
        --pwfile="$dir/password" -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2; exit 1; }
    for try in 1 2 3; do
        port=$("$here/free-ports.py" pg | cut -d' ' -f2)
        if pg_start "$dir" "$port" 2>>"$dir/start.log"; then
            echo "$port" > "$dir/port"
            echo "$dir $port $(pg_pid "$dir")"
            exit 0
        fi
    done
    cat "$dir/server.log" "$dir/start.log" >&2 || true
    exit 1
    ;;
stop)
    pg_stop "$2"
    case "$2" in /tmp/mailpool-pg-*) rm -rf "$2" ;; esac
    ;;
stop-only)
    pg_stop "$2"
    ;;
start-again)
    pg_start "$2" "$(cat "$2/port")"
    echo "$2 $(cat "$2/port") $(pg_pid "$2")"
    ;;
freeze)
    pg_signal_all "$2" STOP
    (sleep "${3:-10}"; pg_signal_all "$2" CONT) >/dev/null 2>&1 &
    ;;
thaw)
    pg_signal_all "$2" CONT
    ;;
sql)
    psql_in "$2" "$3" "$4"
    ;;
createdb)
    psql_in "$2" postgres "CREATE DATABASE \"$3\""
    ;;
*)
    echo "usage: $0 start | stop DIR | stop-only DIR | start-again DIR | freeze DIR S | thaw DIR | sql DIR DB SQL | createdb DIR DB" >&2
    exit 2
    ;;
esac
