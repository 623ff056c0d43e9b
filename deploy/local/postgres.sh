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

# --- TLS --------------------------------------------------------------------

make_ca() { # name, common name
    local name="$1" cn="$2"
    cat >"$TLS_DIR/$name.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = $cn
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    openssl ecparam -name prime256v1 -genkey -noout -out "$TLS_DIR/$name.key" 2>/dev/null
    openssl req -x509 -new -sha256 -days 3650 -key "$TLS_DIR/$name.key" \
        -config "$TLS_DIR/$name.cnf" -extensions v3_ca -out "$TLS_DIR/$name.crt"
    rm -f "$TLS_DIR/$name.cnf"
}

ensure_tls() {
    local f
    for f in ca.crt ca.key other-ca.crt server.crt server.key; do
        [[ -s "$TLS_DIR/$f" ]] || { make_tls; return; }
    done
}

TLS_CHANGED=0

make_tls() {
    TLS_CHANGED=1
    log "creating throwaway CAs and server certificate in $TLS_DIR"
    mkdir -p "$TLS_DIR"
    rm -f "$TLS_DIR"/*.crt "$TLS_DIR"/*.key "$TLS_DIR"/*.csr "$TLS_DIR"/*.srl
    make_ca ca "outbox-relay test CA"
    make_ca other-ca "outbox-relay unrelated CA"
    # Only DNS:localhost in the SAN: verify-full must pass for "localhost" and
    # fail for "127.0.0.1", which the tests rely on.
    cat >"$TLS_DIR/server.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    openssl ecparam -name prime256v1 -genkey -noout -out "$TLS_DIR/server.key" 2>/dev/null
    openssl req -new -sha256 -key "$TLS_DIR/server.key" -config "$TLS_DIR/server.cnf" \
        -out "$TLS_DIR/server.csr"
    openssl x509 -req -sha256 -days 3650 -in "$TLS_DIR/server.csr" \
        -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
        -extfile "$TLS_DIR/server.cnf" -extensions v3_server -out "$TLS_DIR/server.crt" 2>/dev/null
    rm -f "$TLS_DIR/server.cnf" "$TLS_DIR/server.csr"
}

fix_tls_perms() {
    chown -R postgres:postgres "$TLS_DIR"
    chmod 0755 "$TLS_DIR"
    chmod 0644 "$TLS_DIR"/*.crt
    # PostgreSQL refuses a private key that others can read.
    chmod 0600 "$TLS_DIR"/*.key
}

# --- configuration ----------------------------------------------------------

server_conf() {
    cat <<EOF
# Written by deploy/local/postgres.sh on every start; edit the script, not this file.
listen_addresses = '127.0.0.1,::1'
port = $OUTBOX_RELAY_PG_PORT
unix_socket_directories = '$SOCKET_DIR'
max_connections = 200
shared_buffers = 256MB
wal_level = logical
max_replication_slots = 32
max_wal_senders = 32
# Small on purpose: big transactions spill to disk, which the tests exercise.
logical_decoding_work_mem = 64kB
# A disposable test cluster: durability is not worth the time.
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = '$TLS_DIR/server.crt'
ssl_key_file = '$TLS_DIR/server.key'
ssl_ca_file = '$TLS_DIR/ca.crt'
log_line_prefix = '%m [%p] %q%u@%d '
EOF
}

hba_conf() {
    local kind addr
    echo "# Written by deploy/local/postgres.sh on every start; edit the script, not this file."
    echo "local   all           all                          trust"
    echo "local   replication   all                          trust"
    # "all" in the database column does not match replication connections, so
    # each rule is repeated for the replication pseudo-database.
    for kind in all replication; do
        for addr in 127.0.0.1/32 ::1/128; do
            printf 'host    %-13s %-12s %-15s %s\n' "$kind" relay_trust "$addr" trust
            printf 'host    %-13s %-12s %-15s %s\n' "$kind" relay_md5 "$addr" md5
            printf 'host    %-13s %-12s %-15s %s\n' "$kind" all "$addr" scram-sha-256
        done
    done
}

# Writes $2 to $1 if it differs; returns 0 if the file changed.
write_if_changed() {
    local path="$1" content="$2"
    if [[ -f "$path" ]] && [[ "$(cat "$path")" == "$content" ]]; then
        return 1
    fi
    printf '%s\n' "$content" >"$path"
    chown postgres:postgres "$path"
    chmod 0600 "$path"
    return 0
}

# Returns 0 if anything changed (the caller restarts a running server then).
write_config() {
    local changed=1
    write_if_changed "$PGDATA_DIR/outbox-relay.conf" "$(server_conf)" && changed=0
    write_if_changed "$PGDATA_DIR/pg_hba.conf" "$(hba_conf)" && changed=0
    if ! grep -qx "include 'outbox-relay.conf'" "$PGDATA_DIR/postgresql.conf"; then
        echo "include 'outbox-relay.conf'" >>"$PGDATA_DIR/postgresql.conf"
        changed=0
    fi
    return $changed
}

bootstrap_sql() {
    admin_psql -d postgres \
        -v main_user="$OUTBOX_RELAY_PG_USER" \
        -v main_password="$OUTBOX_RELAY_PG_PASSWORD" \
        -v main_db="$OUTBOX_RELAY_PG_DATABASE" <<'SQL'
SELECT format('CREATE ROLE %I', :'main_user')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'main_user') \gexec
SELECT format('CREATE ROLE %I', r)
  FROM unnest(ARRAY['relay_md5', 'relay_scram', 'relay_trust']) AS r
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec

SET password_encryption = 'scram-sha-256';
SELECT format('ALTER ROLE %I SUPERUSER LOGIN REPLICATION PASSWORD %L', :'main_user', :'main_password') \gexec
ALTER ROLE relay_scram LOGIN REPLICATION PASSWORD 'relay_scram';
ALTER ROLE relay_trust LOGIN REPLICATION PASSWORD NULL;
SET password_encryption = 'md5';
ALTER ROLE relay_md5 LOGIN REPLICATION PASSWORD 'relay_md5';

SELECT format('CREATE DATABASE %I OWNER %I', :'main_db', :'main_user')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'main_db') \gexec
SQL
}

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
