#!/usr/bin/env bash
# The PostgreSQL version matrix: the tests that depend on the server (end to end, crash,
# server restarts, slot loss, WAL safety, failover slots, pgoutput versions) against each supported major,
# each on its own cluster from deploy/local/pg-versions.sh (never the main one on 54329,
# which pg_restart would restart). Prints a Markdown table (the one in
# docs/compatibility.md) and "N passed, M failed".
#
#   tests/matrix.sh                 13 14 15 16 17 18
#   tests/matrix.sh 15 18           only those majors
#   MATRIX_TESTS="e2e crash" tests/matrix.sh 17
#
# Kafka must be running (deploy/local/kafka.sh start). Logs: $OUTBOX_RELAY_RUN/matrix/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=SCRIPTDIR/../deploy/local/env.sh
source "$root/deploy/local/env.sh"
export PATH="$HOME/.cargo/bin:$PATH"

majors=("$@")
((${#majors[@]})) || majors=(13 14 15 16 17 18)
read -r -a tests <<<"${MATRIX_TESTS:-e2e crash pg_restart slot_lost wal_safety failover_slot pgoutput_versions}"
logs="$OUTBOX_RELAY_RUN/matrix"
mkdir -p "$logs"

cd "$root"
test_args=()
for t in "${tests[@]}"; do test_args+=(--test "$t"); done
echo "== build" >&2
cargo build -p outbox-relay --bins --locked >&2
cargo test -p outbox-relay-tests --locked --no-run "${test_args[@]}" >&2

declare -A cell
declare -A version
passed=0
failed=0
for m in "${majors[@]}"; do
    echo "== PostgreSQL $m" >&2
    env_lines="$("$root/deploy/local/pg-versions.sh" start "$m")"
    for t in "${tests[@]}"; do
        log="$logs/pg$m-$t.log"
        t0=$SECONDS
        if (eval "$env_lines" && cargo test -p outbox-relay-tests --locked --test "$t") >"$log" 2>&1; then
            cell[$m,$t]="pass ($((SECONDS - t0)) s)"
            passed=$((passed + 1))
        else
            cell[$m,$t]="**FAIL** ($((SECONDS - t0)) s)"
            failed=$((failed + 1))
            tail -n 30 "$log" >&2
        fi
        echo "   $t: ${cell[$m,$t]}" >&2
    done
    version[$m]="$(eval "$env_lines" && PGPASSWORD="$OUTBOX_RELAY_PG_PASSWORD" \
        "$root/deploy/local/postgres.sh" psql -Atc 'SHOW server_version' 2>/dev/null | cut -d' ' -f1)"
done

printf '| PostgreSQL |'
for t in "${tests[@]}"; do printf ' %s |' "$t"; done
printf '\n|---|'
for _ in "${tests[@]}"; do printf -- '---|'; done
printf '\n'
for m in "${majors[@]}"; do
    printf '| %s |' "${version[$m]:-$m}"
    for t in "${tests[@]}"; do printf ' %s |' "${cell[$m,$t]}"; done
    printf '\n'
done
echo "$passed passed, $failed failed"
((failed == 0))
