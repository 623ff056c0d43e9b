#!/usr/bin/env bash
# A disposable, project-owned PostgreSQL cluster for local development and tests.
#
#   deploy/local/postgres.sh [start]   install if needed, init, configure, start; prints the env
#   deploy/local/postgres.sh stop      fast shutdown
#   deploy/local/postgres.sh restart [fast|immediate]
#                                      restart the running cluster; immediate = a crash
#                                      (no checkpoint, recovery from WAL at start)
#   deploy/local/postgres.sh status    running or not, plus the env
#   deploy/local/postgres.sh psql ...  psql as the main user; extra args are passed on
#
# Ports, paths and credentials come from env.sh beside this script. OUTBOX_RELAY_PG_BINDIR
# names another server's bin dir (deploy/local/pg-versions.sh runs other major versions
# this way, each with its own OUTBOX_RELAY_RUN and port); psql and pg_isready then come
# from the distribution's client if that dir has none.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/local/env.sh
source "$here/env.sh"

PGDATA_DIR="$OUTBOX_RELAY_RUN/pg"
SOCKET_DIR="$OUTBOX_RELAY_RUN/pg-socket"
LOG_FILE="$OUTBOX_RELAY_RUN/pg.log"
TLS_DIR="$OUTBOX_RELAY_PG_TLS_DIR"

log() { printf '[postgres.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- binaries ---------------------------------------------------------------

# Prints the bin dir of the server to use: the existing cluster's major version
# if its binaries are there (a data dir only runs under its own major), else the
# highest installed one. Empty if none is installed.
find_bindir() {
    if [[ -n "${OUTBOX_RELAY_PG_BINDIR:-}" ]]; then
        echo "$OUTBOX_RELAY_PG_BINDIR"
        return
    fi
    if [[ -f "$PGDATA_DIR/PG_VERSION" ]]; then
        local v
        v="$(cat "$PGDATA_DIR/PG_VERSION")"
        if [[ -x "/usr/lib/postgresql/$v/bin/initdb" ]]; then
            echo "/usr/lib/postgresql/$v/bin"
            return
        fi
    fi
    local best=""
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/initdb" ]] || continue
        local v="${d#/usr/lib/postgresql/}"
        v="${v%/bin}"
        if [[ -z "$best" ]] || (( ${v%%.*} > ${best%%.*} )); then best="$v"; fi
    done
    [[ -n "$best" ]] && echo "/usr/lib/postgresql/$best/bin"
    return 0
}

apt_install() {
    [[ $EUID -eq 0 ]] || die "installing packages needs root"
    export DEBIAN_FRONTEND=noninteractive
    # Keep our createcluster.conf edit if dpkg ever asks about it.
    apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install "$@"
}

install_postgres() {
    log "no PostgreSQL server found; installing from apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # postgresql-common first, so that the distribution's default cluster can be
    # switched off before the server package's postinst would create it.
    apt_install postgresql-common
    local conf=/etc/postgresql-common/createcluster.conf
    if grep -Eq '^[#[:space:]]*create_main_cluster' "$conf"; then
        sed -ri 's/^[#[:space:]]*(create_main_cluster)[[:space:]]*=.*$/\1 = false/' "$conf"
    else
        echo 'create_main_cluster = false' >>"$conf"
    fi
    apt_install postgresql postgresql-contrib
}

ensure_tools() {
    local missing=()
    command -v openssl >/dev/null || missing+=(openssl)
    command -v runuser >/dev/null || missing+=(util-linux)
    if ((${#missing[@]})); then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt_install "${missing[@]}"
    fi
}

# --- helpers ----------------------------------------------------------------

# A client tool: the server's own, else the newest the distribution installed (the
# embedded server builds ship no psql; libpq clients talk to every supported major).
client_bin() {
    local tool="$1" d
    if [[ -x "$BINDIR/$tool" ]]; then echo "$BINDIR/$tool"; return; fi
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
        if [[ -x "$d/$tool" ]]; then echo "$d/$tool"; return; fi
    done
    echo "$tool"
}

as_postgres() { (cd / && runuser -u postgres -- "$@"); }

is_running() {
    [[ -f "$PGDATA_DIR/PG_VERSION" ]] && as_postgres "$BINDIR/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1
}

# psql as the bootstrap superuser over the private socket (trust).
admin_psql() {
    "$(client_bin psql)" -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$OUTBOX_RELAY_PG_PORT" -U postgres "$@"
}

print_env() {
    cat <<EOF
export OUTBOX_RELAY_PG_HOST=$OUTBOX_RELAY_PG_HOST
export OUTBOX_RELAY_PG_PORT=$OUTBOX_RELAY_PG_PORT
export OUTBOX_RELAY_PG_DATABASE=$OUTBOX_RELAY_PG_DATABASE
export OUTBOX_RELAY_PG_USER=$OUTBOX_RELAY_PG_USER
export OUTBOX_RELAY_PG_PASSWORD=$OUTBOX_RELAY_PG_PASSWORD
export OUTBOX_RELAY_PG_TLS_DIR=$OUTBOX_RELAY_PG_TLS_DIR
# psql "host=$OUTBOX_RELAY_PG_HOST port=$OUTBOX_RELAY_PG_PORT dbname=$OUTBOX_RELAY_PG_DATABASE user=$OUTBOX_RELAY_PG_USER"
# test roles: relay_trust (no password), relay_md5/relay_md5 (md5), relay_scram/relay_scram (SCRAM)
# TLS: CA $TLS_DIR/ca.crt (server SAN is only DNS:localhost), unrelated CA $TLS_DIR/other-ca.crt
EOF
}

# shellcheck source=SCRIPTDIR/postgres/tls.sh
source "$here/postgres/tls.sh"
# shellcheck source=SCRIPTDIR/postgres/config.sh
source "$here/postgres/config.sh"

# --- subcommands ------------------------------------------------------------

wait_ready() {
    local _
    for _ in $(seq 1 300); do
        if "$(client_bin pg_isready)" -q -h "$OUTBOX_RELAY_PG_HOST" -p "$OUTBOX_RELAY_PG_PORT" \
            -d "$OUTBOX_RELAY_PG_DATABASE"; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 30 "$LOG_FILE" >&2 || true
    die "PostgreSQL did not accept TCP connections on $OUTBOX_RELAY_PG_HOST:$OUTBOX_RELAY_PG_PORT"
}

cmd_start() {
    [[ $EUID -eq 0 ]] || die "run as root (initdb and pg_ctl run as the postgres user via runuser)"
    BINDIR="$(find_bindir)"
    if [[ -z "$BINDIR" ]]; then
        install_postgres
        BINDIR="$(find_bindir)"
        [[ -n "$BINDIR" ]] || die "PostgreSQL installed but no initdb found under /usr/lib/postgresql"
    fi
    ensure_tools
    id postgres >/dev/null 2>&1 || die "no postgres system user (the PostgreSQL packages create it)"

    mkdir -p "$OUTBOX_RELAY_RUN"
    chmod 0755 "$OUTBOX_RELAY_RUN"
    as_postgres test -x "$OUTBOX_RELAY_RUN" ||
        die "the postgres user cannot enter $OUTBOX_RELAY_RUN; set OUTBOX_RELAY_RUN to a path every user can traverse"
    mkdir -p "$SOCKET_DIR"
    chown postgres:postgres "$SOCKET_DIR"
    touch "$LOG_FILE"
    chown postgres:postgres "$LOG_FILE"
    ensure_tls
    fix_tls_perms

    if [[ ! -f "$PGDATA_DIR/PG_VERSION" ]]; then
        log "initdb $PGDATA_DIR ($BINDIR)"
        rm -rf "$PGDATA_DIR"
        mkdir -p "$PGDATA_DIR"
        chown postgres:postgres "$PGDATA_DIR"
        chmod 0700 "$PGDATA_DIR"
        as_postgres "$BINDIR/initdb" -D "$PGDATA_DIR" -U postgres -A trust -E UTF8 \
            --locale=C.UTF-8 --no-sync >/dev/null
    fi

    local changed=1
    write_config && changed=0
    if is_running; then
        if ((changed == 0)); then
            log "configuration changed; restarting"
            as_postgres "$BINDIR/pg_ctl" -D "$PGDATA_DIR" -l "$LOG_FILE" -w -t 60 -m fast restart >/dev/null
        elif ((TLS_CHANGED)); then
            # Certificates are re-read on SIGHUP; no need to drop connections.
            as_postgres "$BINDIR/pg_ctl" -D "$PGDATA_DIR" reload >/dev/null
            sleep 0.5
        fi
    else
        log "starting PostgreSQL on port $OUTBOX_RELAY_PG_PORT (log: $LOG_FILE)"
        if ! as_postgres "$BINDIR/pg_ctl" -D "$PGDATA_DIR" -l "$LOG_FILE" -w -t 60 start >/dev/null; then
            tail -n 30 "$LOG_FILE" >&2 || true
            die "pg_ctl start failed"
        fi
    fi
    wait_ready
    bootstrap_sql
    print_env
}

cmd_stop() {
    BINDIR="$(find_bindir)"
    if [[ -n "$BINDIR" ]] && is_running; then
        as_postgres "$BINDIR/pg_ctl" -D "$PGDATA_DIR" -w -t 60 -m fast stop >/dev/null
        log "stopped"
    else
        log "not running"
    fi
}

cmd_restart() {
    local mode="${1:-fast}"
    [[ "$mode" == fast || "$mode" == immediate ]] || die "restart mode must be fast or immediate (got '$mode')"
    BINDIR="$(find_bindir)"
    { [[ -n "$BINDIR" ]] && is_running; } || die "not running; use start"
    if ! as_postgres "$BINDIR/pg_ctl" -D "$PGDATA_DIR" -l "$LOG_FILE" -w -t 60 -m "$mode" restart >/dev/null; then
        tail -n 30 "$LOG_FILE" >&2 || true
        die "pg_ctl restart -m $mode failed"
    fi
    wait_ready
    log "restarted ($mode)"
}

cmd_status() {
    BINDIR="$(find_bindir)"
    if [[ -n "$BINDIR" ]] && is_running; then
        log "running ($PGDATA_DIR, port $OUTBOX_RELAY_PG_PORT)"
        print_env
    else
        log "not running"
        return 3
    fi
}

cmd_psql() {
    BINDIR="$(find_bindir)"
    local psql_bin=psql
    [[ -n "$BINDIR" ]] && psql_bin="$(client_bin psql)"
    PGPASSWORD="$OUTBOX_RELAY_PG_PASSWORD" exec "$psql_bin" \
        "host=$OUTBOX_RELAY_PG_HOST port=$OUTBOX_RELAY_PG_PORT dbname=$OUTBOX_RELAY_PG_DATABASE user=$OUTBOX_RELAY_PG_USER" "$@"
}

cmd="${1:-start}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_restart "$@" ;;
    status) cmd_status ;;
    psql) cmd_psql "$@" ;;
    -h | --help | help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown subcommand '$cmd' (start, stop, restart, status, psql)" ;;
esac
