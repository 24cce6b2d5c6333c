#!/usr/bin/env bash
# A shared MLflow tracking server on this machine's loopback (127.0.0.1), for sweeps whose jobs
# should all log to one server instead of a SQLite file:
#
#   bash scripts/tracking_server.sh [sqlite|postgres] [--port N] [--workers N] [--background]
#   bash scripts/tracking_server.sh --stop          # stop a --background server (and its PG)
#   python train.py logger.tracking_uri=http://127.0.0.1:5000
#
# sqlite    backend store outputs/mlflow-server.db (the default)
# postgres  backend store $SAGE_POSTGRES_URI (postgresql://user:password@host:5432/db), or,
#           when unset and PostgreSQL is installed (initdb, pg_ctl on PATH or in Debian's
#           /usr/lib/postgresql/<version>/bin), a local cluster in outputs/postgres on
#           127.0.0.1:${SAGE_PG_PORT:-5433}; needs a driver (psycopg / psycopg2), in the dev
#           extra and in pip install -e ".[postgres]"
# Artifacts are proxied by the server (--serve-artifacts) into outputs/mlartifacts-server, so
# clients on other machines upload and download through it. Foreground by default (Ctrl-C
# stops it); --background returns once /health answers. The server's process group id is
# written to outputs/mlflow-server.pid; --stop signals that group only while its leader is
# still an `mlflow server` (a stale file's pid may belong to another process by then). To
# serve other machines, run the same mlflow command with --host 0.0.0.0 --allowed-hosts <name>
# behind your network's access control.
# Environment: SAGE_ROOT (outputs/ is under it), SAGE_PYTHON (default: .venv's python),
# SAGE_MLFLOW_WORKERS (default 2), SAGE_POSTGRES_URI, SAGE_PG_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=sqlite
PORT=5000
WORKERS="${SAGE_MLFLOW_WORKERS:-2}"
BACKGROUND=0
STOP=0
while [ $# -gt 0 ]; do
    case "$1" in
        sqlite | postgres) MODE="$1" ;;
        --port) PORT="$2"; shift ;;
        --port=*) PORT="${1#*=}" ;;
        --workers) WORKERS="$2"; shift ;;
        --workers=*) WORKERS="${1#*=}" ;;
        --background | -d) BACKGROUND=1 ;;
        --stop) STOP=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

OUT="${SAGE_ROOT:-$PWD}/outputs"  # where train.py writes too (SAGE_ROOT as in sage/conf/paths)
PIDFILE="$OUT/mlflow-server.pid"
PGDATA_DIR="$OUT/postgres/data"
PG_PORT="${SAGE_PG_PORT:-5433}"
mkdir -p "$OUT"

# PostgreSQL refuses to run as root: use the system's postgres account then.
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# PG_BIN: the directory of initdb and pg_ctl, on PATH or where Debian/Ubuntu
# (/usr/lib/postgresql/<version>/bin) and the PGDG RPMs (/usr/pgsql-<version>/bin) keep them
# off PATH (the newest version); empty when PostgreSQL is not installed.
find_pg_bin() {
    local dir
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
        return
    fi
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin /usr/pgsql-*/bin | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return
        fi
    done
}

# A PostgreSQL tool from PG_BIN (the name on PATH where PG_BIN lacks it: psql, createdb).
pg() {
    local tool="$1"
    shift
    if [ -x "$PG_BIN/$tool" ]; then tool="$PG_BIN/$tool"; fi
    as_pg "$tool" "$@"
}

# Whether pid $1 is the server this script started: a process group leader (the server calls
# setsid) whose command line is `... mlflow server ...`. A pid file that outlived its server
# (kill -9, a reboot) may name an unrelated process by now, which must not be signalled.
is_our_server() {
    local pid="$1" args pgid
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    if [ -r "/proc/$pid/stat" ]; then
        args="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
        # pid (comm) state ppid pgrp ...: comm may hold spaces and ')', so after the last ')'
        pgid="$(sed -E 's/^.*\) [^ ]+ [0-9]+ ([0-9]+) .*$/\1/' "/proc/$pid/stat" 2>/dev/null)" ||
            return 1
    else
        args="$(ps -o args= -p "$pid" 2>/dev/null)" || return 1
        pgid="$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')"
    fi
    [ "$pgid" = "$pid" ] && [[ "$args" == *mlflow* ]] && [[ "$args" == *" server"* ]]
}

stop_all() {
    if [ -f "$PIDFILE" ]; then
        pid="$(cat "$PIDFILE")"
        if is_our_server "$pid"; then
            # the server runs in its own process group (mlflow starts uvicorn workers under it)
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
            echo "stopped MLflow server (process group $pid)"
        else
            echo "no MLflow server to stop: pid $pid in $PIDFILE is not running \`mlflow server\`" \
                "as a process group leader (the server ended; the pid may be another process's now);" \
                "removed the stale pid file, signalled nothing"
        fi
        rm -f "$PIDFILE"
    fi
    if [ -f "$PGDATA_DIR/postmaster.pid" ]; then
        PG_BIN="$(find_pg_bin)"
        pg pg_ctl -D "$PGDATA_DIR" -m fast -w stop >/dev/null && echo "stopped PostgreSQL"
    fi
}

if [ "$STOP" = 1 ]; then
    stop_all
    exit 0
fi

PY="${SAGE_PYTHON:-$(bash scripts/venv.sh)}"

if [ -f "$PIDFILE" ]; then
    if is_our_server "$(cat "$PIDFILE")"; then
        echo "error: a server is already running (pid $(cat "$PIDFILE")); stop it: $0 --stop" >&2
        exit 1
    fi
    rm -f "$PIDFILE"  # stale: its server ended
fi
# SO_REUSEADDR as the server sets it: closed connections in TIME_WAIT do not block the port
PROBE="import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(sys.argv[1])))"
if ! "$PY" -c "$PROBE" "$PORT" 2>/dev/null; then
    echo "error: port $PORT on 127.0.0.1 is in use; choose another: --port N" >&2
    exit 1
fi

start_local_postgres() {
    PG_BIN="$(find_pg_bin)"
    if [ -z "$PG_BIN" ]; then
        echo "error: PostgreSQL is not installed (no initdb/pg_ctl on PATH or in" \
            "/usr/lib/postgresql/*/bin); install it (apt-get install postgresql) or set" \
            "SAGE_POSTGRES_URI=postgresql://user:password@host:5432/db" >&2
        exit 1
    fi
    mkdir -p "$OUT/postgres"
    [ "$(id -u)" = 0 ] && chown postgres "$OUT/postgres"
    if [ ! -f "$PGDATA_DIR/PG_VERSION" ]; then
        # trust authentication is safe only because the cluster listens on loopback alone
        pg initdb -D "$PGDATA_DIR" -U sage --auth=trust >/dev/null
    fi
    if ! pg pg_ctl -D "$PGDATA_DIR" status >/dev/null 2>&1; then
        pg pg_ctl -D "$PGDATA_DIR" -l "$OUT/postgres/postgres.log" -w \
            -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=''" \
            start >/dev/null
    fi
    pg psql -h 127.0.0.1 -p "$PG_PORT" -U sage -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'mlflow'" | grep -q 1 ||
        pg createdb -h 127.0.0.1 -p "$PG_PORT" -U sage mlflow
    echo "postgresql+$DRIVER://sage@127.0.0.1:$PG_PORT/mlflow"
}

case "$MODE" in
    sqlite)
        BACKEND="sqlite:///$OUT/mlflow-server.db"
        ;;
    postgres)
        # A bare postgresql:// means psycopg 3 to SQLAlchemy >= 2.1 and psycopg2 to 2.0, so the
        # local cluster's URI names the driver that is installed.
        if "$PY" -c "import psycopg" 2>/dev/null; then
            DRIVER=psycopg
        elif "$PY" -c "import psycopg2" 2>/dev/null; then
            DRIVER=psycopg2
        else
            echo "error: the postgres backend needs a driver: pip install -e \".[postgres]\"" >&2
            exit 1
        fi
        BACKEND="${SAGE_POSTGRES_URI:-$(start_local_postgres)}"
        ;;
esac

# MLflow's job runner (GenAI scorers, trace jobs; a dozen extra processes) is not used by SAGE.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
# The server gets its own session so that one signal to its process group also ends the
# uvicorn workers mlflow starts (a plain kill of the mlflow CLI would orphan them).
# shellcheck disable=SC2016
NEW_SESSION='import os, sys; os.setsid(); os.execv(sys.executable, [sys.executable, *sys.argv[1:]])'
ARGS=(-m mlflow server
    --backend-store-uri "$BACKEND"
    --serve-artifacts --artifacts-destination "$OUT/mlartifacts-server"
    --host 127.0.0.1 --port "$PORT" --workers "$WORKERS")
URL="http://127.0.0.1:$PORT"
SHOWN="$(printf '%s' "$BACKEND" | sed -E 's#(://[^:/@]+):[^@]*@#\1:***@#')"  # no password
echo "MLflow server: $URL (backend $SHOWN, artifacts $OUT/mlartifacts-server)"
echo "Use it:        python train.py logger.tracking_uri=$URL"

if [ "$BACKGROUND" = 1 ]; then
    nohup "$PY" -c "$NEW_SESSION" "${ARGS[@]}" >"$OUT/mlflow-server.log" 2>&1 &
    echo $! >"$PIDFILE"
    if ! "$PY" - "$URL/health" <<'EOF'; then
import sys, time, urllib.request
for _ in range(240):  # up to 2 min on a loaded machine
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit(1)
EOF
        echo "error: the server did not answer on $URL/health; see $OUT/mlflow-server.log" >&2
        stop_all
        exit 1
    fi
    echo "Running in the background (log $OUT/mlflow-server.log); stop: $0 --stop"
else
    "$PY" -c "$NEW_SESSION" "${ARGS[@]}" &
    echo $! >"$PIDFILE"
    trap 'stop_all; exit 0' INT TERM
    wait
    rm -f "$PIDFILE"
fi
