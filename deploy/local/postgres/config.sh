# shellcheck shell=bash disable=SC2154 # variables and functions of the script that sources this part
# deploy/local/postgres.sh, part: postgresql.conf, pg_hba.conf and the bootstrap SQL (roles,
# databases). Sourced by postgres.sh.
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
