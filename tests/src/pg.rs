//! PostgreSQL helpers for tests.

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::env;

fn conn_str() -> String {
    conn_str_at(env::pg_port())
}

fn conn_str_at(port: u16) -> String {
    format!(
        "host={} port={} dbname={} user={} password={} sslmode=disable",
        env::pg_host(),
        port,
        env::pg_database(),
        env::pg_user(),
        env::pg_password()
    )
}

async fn try_connect() -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(&conn_str(), NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A plain SQL connection as the main test role.
pub async fn connect() -> Client {
    try_connect().await.unwrap_or_else(|e| {
        panic!(
            "cannot connect to PostgreSQL at {}:{} ({e}); start it with deploy/local/postgres.sh",
            env::pg_host(),
            env::pg_port()
        )
    })
}

/// Like [`connect`], but keeps trying for up to `timeout` while the server is down or
/// starting up (restart tests).
pub async fn connect_retrying(timeout: Duration) -> Client {
    let start = std::time::Instant::now();
    loop {
        match try_connect().await {
            Ok(client) => return client,
            Err(_) if start.elapsed() < timeout => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("PostgreSQL still unreachable after {timeout:?}: {e}"),
        }
    }
}

/// A cluster of a test's own, for server settings that would harm the other users of
/// the shared one (a small `max_slot_wal_keep_size` invalidates every lagging slot on
/// the server). Started by `deploy/local/postgres.sh` with its own run dir on the port
/// `OUTBOX_RELAY_PG_PORT + 10`, with the same server binaries (`OUTBOX_RELAY_PG_BINDIR`
/// when the version matrix sets it), roles and database; left running for the next run.
pub struct PrivateCluster {
    pub port: u16,
}

impl PrivateCluster {
    pub fn start() -> PrivateCluster {
        let port = env::pg_port() + 10;
        let run = format!("/tmp/outbox-relay-private-{port}");
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/postgres.sh");
        let out = std::process::Command::new(&script)
            .arg("start")
            .env("OUTBOX_RELAY_RUN", &run)
            .env("OUTBOX_RELAY_PG_PORT", port.to_string())
            .env("OUTBOX_RELAY_PG_TLS_DIR", format!("{run}/pg-tls"))
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
        assert!(
            out.status.success(),
            "postgres.sh start (private cluster on {port}) failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PrivateCluster { port }
    }

    pub async fn connect(&self) -> Client {
        let (client, conn) = tokio_postgres::connect(&conn_str_at(self.port), NoTls)
            .await
            .unwrap_or_else(|e| panic!("private cluster on {}: {e}", self.port));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }
}

/// The server's major version (`server_version_num / 10000`).
pub async fn server_major(client: &Client) -> i32 {
    let v: String = client
        .query_one("SHOW server_version_num", &[])
        .await
        .unwrap()
        .get(0);
    v.parse::<i32>().unwrap() / 10000
}

/// Restarts the project's cluster (`deploy/local/postgres.sh restart <mode>`): `fast`
/// terminates every session and checkpoints; `immediate` is a crash, recovered from WAL
/// at start. Blocks until the server accepts connections again.
pub fn restart(mode: &str) {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/postgres.sh");
    let out = std::process::Command::new(&script)
        .args(["restart", mode])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "postgres.sh restart {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates a Debezium-shaped outbox table. `nullable` leaves the Debezium NOT NULLs off
/// (bad-input tests need NULLs); `payload_type` is jsonb, json, text or bytea.
pub async fn create_outbox_table(client: &Client, table: &str, payload_type: &str, nullable: bool) {
    let nn = if nullable { "" } else { " NOT NULL" };
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                aggregatetype varchar(255){nn},
                aggregateid varchar(255){nn},
                type varchar(255){nn},
                payload {payload_type},
                timestamp timestamptz NOT NULL DEFAULT now(),
                tracingspancontext varchar(512)
            )"
        ))
        .await
        .expect("create outbox table");
}

/// Removes what a test created: the slot (waiting for its reader to go), the
/// publication and the tables.
pub async fn cleanup(client: &Client, slot: &str, publication: &str, tables: &[&str]) {
    for _ in 0..50 {
        let active: Option<bool> = client
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .ok()
            .flatten()
            .map(|r| r.get(0));
        match active {
            Some(true) => tokio::time::sleep(Duration::from_millis(200)).await,
            Some(false) => {
                let _ = client
                    .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                    .await;
                break;
            }
            None => break,
        }
    }
    let _ = client
        .batch_execute(&format!("DROP PUBLICATION IF EXISTS {publication}"))
        .await;
    let _ = client
        .execute(
            "DELETE FROM outbox_relay.progress WHERE slot = $1",
            &[&slot],
        )
        .await;
    let _ = client
        .execute(
            "DELETE FROM outbox_relay.snapshot WHERE slot = $1",
            &[&slot],
        )
        .await;
    for t in tables {
        let _ = client
            .batch_execute(&format!("DROP TABLE IF EXISTS {t}"))
            .await;
    }
}

/// `confirmed_flush_lsn` of a slot as a number, once no process is reading it.
pub async fn confirmed_flush_when_inactive(client: &Client, slot: &str) -> u64 {
    for _ in 0..100 {
        let row = client
            .query_one(
                "SELECT active, (confirmed_flush_lsn - '0/0')::int8 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .expect("slot exists");
        if !row.get::<_, bool>(0) {
            return row.get::<_, i64>(1) as u64;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("slot {slot} stayed active");
}

pub async fn confirmed_flush(client: &Client, slot: &str) -> Option<u64> {
    client
        .query_opt(
            "SELECT (confirmed_flush_lsn - '0/0')::int8 FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .expect("query slot")
        .and_then(|r| r.get::<_, Option<i64>>(0))
        .map(|v| v as u64)
}

/// The relay's own durable record of delivered progress for `slot` (the state table in
/// the default schema), as a number.
pub async fn recorded_progress(client: &Client, slot: &str) -> Option<u64> {
    client
        .query_opt(
            "SELECT (confirmed_lsn - '0/0')::int8 FROM outbox_relay.progress WHERE slot = $1",
            &[&slot],
        )
        .await
        .ok()
        .flatten()
        .map(|r| r.get::<_, i64>(0) as u64)
}

/// Parses `X/Y`.
pub fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').expect("lsn has a slash");
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// The newest installed `pg_recvlogical` (Debian's /usr/lib/postgresql/<major>/bin), for
/// the benchmarks' reference reader.
pub fn recvlogical_binary() -> std::path::PathBuf {
    std::fs::read_dir("/usr/lib/postgresql")
        .expect("postgresql installed")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin/pg_recvlogical"))
        .filter(|p| p.exists())
        .max()
        .expect("pg_recvlogical")
}
