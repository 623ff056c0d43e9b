//! Service coordinates, from the same variables `deploy/local/env.sh` exports.

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

pub fn pg_host() -> String {
    var("OUTBOX_RELAY_PG_HOST", "127.0.0.1")
}
pub fn pg_port() -> u16 {
    var("OUTBOX_RELAY_PG_PORT", "54329")
        .parse()
        .expect("OUTBOX_RELAY_PG_PORT")
}
pub fn pg_database() -> String {
    var("OUTBOX_RELAY_PG_DATABASE", "outbox")
}
pub fn pg_user() -> String {
    var("OUTBOX_RELAY_PG_USER", "outbox")
}
pub fn pg_password() -> String {
    var("OUTBOX_RELAY_PG_PASSWORD", "outbox")
}
pub fn kafka_bootstrap() -> String {
    var("OUTBOX_RELAY_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
}

/// Jaeger's OTLP/HTTP receiver and query API (deploy/local/jaeger.sh).
pub fn jaeger_otlp_port() -> u16 {
    var("OUTBOX_RELAY_JAEGER_OTLP_PORT", "14318")
        .parse()
        .expect("OUTBOX_RELAY_JAEGER_OTLP_PORT")
}
pub fn jaeger_query_port() -> u16 {
    var("OUTBOX_RELAY_JAEGER_QUERY_PORT", "16686")
        .parse()
        .expect("OUTBOX_RELAY_JAEGER_QUERY_PORT")
}

/// The relay binary: `OUTBOX_RELAY_BIN`, or `outbox-relay` next to the test executable's
/// profile directory (`target/<profile>/deps/…` → `target/<profile>/outbox-relay`).
pub fn relay_bin() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("OUTBOX_RELAY_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("outbox-relay");
    assert!(
        bin.exists(),
        "{} does not exist: build it first (cargo build -p outbox-relay) or set OUTBOX_RELAY_BIN",
        bin.display()
    );
    bin
}
