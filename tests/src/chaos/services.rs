//! The chaos suite's own PostgreSQL cluster, Kafka broker and Toxiproxy, on ports of their
//! own: it restarts, kills and cuts them, which the shared services of the other tests
//! must never see. Started by the deploy/local scripts with a run directory of their own.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::toxiproxy::Toxiproxy;

pub const RUN: &str = "/tmp/outbox-relay-chaos";
pub const PG_PORT: u16 = 54359;
pub const KAFKA_PORT: u16 = 29092;
const KAFKA_CONTROLLER_PORT: u16 = 29093;
/// The broker's second listener, reached through the proxy below.
const KAFKA_PROXIED_PORT: u16 = 29094;
/// Where the relay reaches Kafka: Toxiproxy, forwarding to the proxied listener, which
/// advertises this port, so every broker connection of the relay goes through the proxy.
pub const KAFKA_PROXY_PORT: u16 = 29095;
/// Where the relay reaches PostgreSQL (replication and SQL connections): Toxiproxy.
pub const PG_PROXY_PORT: u16 = 29096;
/// Where the relay reaches the SNS/SQS emulator: Toxiproxy.
pub const AWS_PROXY_PORT: u16 = 29097;
pub const TOXIPROXY_PORT: u16 = 18474;

pub const PG_PROXY: &str = "chaos-pg";
pub const SINK_PROXY: &str = "chaos-sink";

/// Held for a whole run (released when dropped, or when the process ends however it ends).
pub struct RunLock(#[allow(dead_code)] std::fs::File);

/// Takes the machine's chaos lock: two runs at once (another checkout, the test suite next
/// to `tests/chaos.sh`) would wipe, restart and cut each other's services and drop each
/// other's slots. Waits up to an hour for the run holding it.
pub fn lock_run() -> Result<RunLock, String> {
    std::fs::create_dir_all(RUN).map_err(|e| format!("{RUN}: {e}"))?;
    let path = format!("{RUN}/chaos.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{path}: {e}"))?;
    let start = Instant::now();
    let mut said = false;
    loop {
        // flock(2): released by the kernel when the process ends, however it ends.
        match file.try_lock() {
            Ok(()) => return Ok(RunLock(file)),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(format!("{path}: {e}")),
        }
        if !said {
            eprintln!("chaos: another chaos run holds {path}; waiting for it (up to an hour)");
            said = true;
        }
        if start.elapsed() > Duration::from_secs(3600) {
            return Err(format!("{path} still held after an hour"));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../deploy/local/{name}"))
}

fn pg_env() -> Vec<(&'static str, String)> {
    vec![
        ("OUTBOX_RELAY_RUN", RUN.to_string()),
        ("OUTBOX_RELAY_PG_PORT", PG_PORT.to_string()),
        ("OUTBOX_RELAY_PG_TLS_DIR", format!("{RUN}/pg-tls")),
    ]
}

fn kafka_env() -> Vec<(&'static str, String)> {
    vec![
        ("OUTBOX_RELAY_RUN", RUN.to_string()),
        ("OUTBOX_RELAY_KAFKA_PORT", KAFKA_PORT.to_string()),
        (
            "OUTBOX_RELAY_KAFKA_CONTROLLER_PORT",
            KAFKA_CONTROLLER_PORT.to_string(),
        ),
        (
            "OUTBOX_RELAY_KAFKA_BOOTSTRAP",
            format!("127.0.0.1:{KAFKA_PORT}"),
        ),
        (
            "OUTBOX_RELAY_KAFKA_PROXIED_PORT",
            KAFKA_PROXIED_PORT.to_string(),
        ),
        (
            "OUTBOX_RELAY_KAFKA_PROXY_PORT",
            KAFKA_PROXY_PORT.to_string(),
        ),
        ("OUTBOX_RELAY_KAFKA_HEAP_OPTS", "-Xms1g -Xmx1g".to_string()),
    ]
}

fn run(name: &str, args: &[&str], env: &[(&'static str, String)]) -> Result<String, String> {
    let out = Command::new(script(name))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .map_err(|e| format!("{name}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{name} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn pg_conn() -> String {
    format!(
        "host=127.0.0.1 port={PG_PORT} dbname={} user={} password={} sslmode=disable",
        crate::env::pg_database(),
        crate::env::pg_user(),
        crate::env::pg_password()
    )
}

pub fn kafka_bootstrap() -> String {
    format!("127.0.0.1:{KAFKA_PORT}")
}

/// Starts the private PostgreSQL cluster (kept between runs, like tests' PrivateCluster).
pub fn start_pg() -> Result<(), String> {
    run("postgres.sh", &["start"], &pg_env()).map(drop)
}

pub fn restart_pg(mode: &str) -> Result<(), String> {
    run("postgres.sh", &["restart", mode], &pg_env()).map(drop)
}

/// A fresh private broker: wiped (a run's topics are large and only its own), started.
pub fn fresh_kafka() -> Result<(), String> {
    run("kafka.sh", &["wipe"], &kafka_env())?;
    start_kafka()
}

pub fn start_kafka() -> Result<(), String> {
    run("kafka.sh", &["start"], &kafka_env()).map(drop)
}

pub fn kill_kafka() -> Result<(), String> {
    run("kafka.sh", &["kill"], &kafka_env()).map(drop)
}

pub fn stop_kafka() -> Result<(), String> {
    run("kafka.sh", &["stop"], &kafka_env()).map(drop)
}

/// Starts Toxiproxy and creates the PostgreSQL proxy and the sink's (`sink_upstream`).
pub fn start_toxiproxy(sink_upstream: &str, sink_listen: u16) -> Result<Toxiproxy, String> {
    run(
        "toxiproxy.sh",
        &["start"],
        &[
            ("OUTBOX_RELAY_RUN", RUN.to_string()),
            ("OUTBOX_RELAY_TOXIPROXY_PORT", TOXIPROXY_PORT.to_string()),
        ],
    )?;
    let t = Toxiproxy::new(TOXIPROXY_PORT);
    t.create_proxy(PG_PROXY, PG_PROXY_PORT, &format!("127.0.0.1:{PG_PORT}"))?;
    t.create_proxy(SINK_PROXY, sink_listen, sink_upstream)?;
    Ok(t)
}

/// The upstream of the Kafka proxy.
pub fn kafka_proxied() -> String {
    format!("127.0.0.1:{KAFKA_PROXIED_PORT}")
}
