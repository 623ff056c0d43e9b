# shellcheck shell=bash disable=SC2154 # variables and functions of the script that sources this part
# deploy/local/postgres.sh, part: the test CAs and the server certificate (TLS and
# verify-full tests). Sourced by postgres.sh (its settings, log and die).
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
    # shellcheck disable=SC2034 # read by postgres.sh (cmd_start)
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
