# shellcheck shell=bash
# Shared settings for the local infrastructure scripts. Source it; do not run it.
# Everything is overridable from the environment so that two checkouts can coexist.

# Downloads and build outputs that survive between runs (jars, cargo target dir).
export OUTBOX_RELAY_CACHE="${OUTBOX_RELAY_CACHE:-$HOME/.cache/outbox-relay}"
# Runtime state (database cluster, broker logs, pid files); disposable.
export OUTBOX_RELAY_RUN="${OUTBOX_RELAY_RUN:-/tmp/outbox-relay}"

# PostgreSQL: a project-owned cluster, not the distribution's default one.
export OUTBOX_RELAY_PG_HOST="${OUTBOX_RELAY_PG_HOST:-127.0.0.1}"
export OUTBOX_RELAY_PG_PORT="${OUTBOX_RELAY_PG_PORT:-54329}"
export OUTBOX_RELAY_PG_DATABASE="${OUTBOX_RELAY_PG_DATABASE:-outbox}"
export OUTBOX_RELAY_PG_USER="${OUTBOX_RELAY_PG_USER:-outbox}"
export OUTBOX_RELAY_PG_PASSWORD="${OUTBOX_RELAY_PG_PASSWORD:-outbox}"
export OUTBOX_RELAY_PG_TLS_DIR="${OUTBOX_RELAY_PG_TLS_DIR:-$OUTBOX_RELAY_RUN/pg-tls}"

# Kafka in KRaft mode (one combined broker/controller node).
export OUTBOX_RELAY_KAFKA_PORT="${OUTBOX_RELAY_KAFKA_PORT:-19092}"
export OUTBOX_RELAY_KAFKA_CONTROLLER_PORT="${OUTBOX_RELAY_KAFKA_CONTROLLER_PORT:-19093}"
export OUTBOX_RELAY_KAFKA_BOOTSTRAP="${OUTBOX_RELAY_KAFKA_BOOTSTRAP:-127.0.0.1:$OUTBOX_RELAY_KAFKA_PORT}"

# One cargo target dir outside the clone, so a fresh clone reuses earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$OUTBOX_RELAY_CACHE/target}"

# Jaeger (OTLP receiver for the relay's batch spans; deploy/local/jaeger.sh).
export OUTBOX_RELAY_JAEGER_OTLP_PORT="${OUTBOX_RELAY_JAEGER_OTLP_PORT:-14318}"
export OUTBOX_RELAY_JAEGER_QUERY_PORT="${OUTBOX_RELAY_JAEGER_QUERY_PORT:-16686}"
