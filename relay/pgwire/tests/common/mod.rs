//! Shared helpers for the tests against the local cluster started by
//! `deploy/local/postgres.sh`. Connection settings come from the same
//! OUTBOX_RELAY_PG_* variables as env.sh, with its defaults.
#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use outbox_pgwire::{connect_sql, ConnectOptions, PgWireError, ReplicationClient, SslMode};

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

pub fn host() -> String {
    env_or("OUTBOX_RELAY_PG_HOST", "127.0.0.1")
}

pub fn port() -> u16 {
    env_or("OUTBOX_RELAY_PG_PORT", "54329")
        .parse()
        .expect("OUTBOX_RELAY_PG_PORT is not a port number")
}

pub fn dbname() -> String {
    env_or("OUTBOX_RELAY_PG_DATABASE", "outbox")
}

pub fn tls_dir() -> PathBuf {
    let run = env_or("OUTBOX_RELAY_RUN", "/tmp/outbox-relay");
    PathBuf::from(env_or("OUTBOX_RELAY_PG_TLS_DIR", &format!("{run}/pg-tls")))
}

/// Options for one of the test roles made by postgres.sh.
pub fn opts(user: &str, password: Option<&str>) -> ConnectOptions {
    let mut o = ConnectOptions::new(host(), port(), user, dbname());
    o.password = password.map(str::to_owned);
    o.application_name = "outbox-pgwire-tests".into();
    o.connect_timeout = Duration::from_secs(10);
    o
}

/// The main (superuser) role.
pub fn main_opts() -> ConnectOptions {
    let user = env_or("OUTBOX_RELAY_PG_USER", "outbox");
    let password = env_or("OUTBOX_RELAY_PG_PASSWORD", "outbox");
    opts(&user, Some(&password))
}

fn unreachable(o: &ConnectOptions, e: &PgWireError) -> String {
    format!(
        "cannot reach the test PostgreSQL at {} as {:?}: {e}\n\
         Start it with `deploy/local/postgres.sh start` (or set OUTBOX_RELAY_PG_HOST/PORT/USER/PASSWORD/DATABASE).",
        o.addr(),
        o.user
    )
}

/// An SQL connection as the main user; panics with instructions when the
/// database is not there, so that a missing cluster fails the tests instead
/// of skipping them.
pub async fn admin() -> tokio_postgres::Client {
    let o = main_opts();
    match connect_sql(&o).await {
        Ok((client, _task)) => client,
        Err(e) => panic!("{}", unreachable(&o, &e)),
    }
}

/// A replication connection as the main user, with the same clear failure.
pub async fn replication() -> ReplicationClient {
    let mut o = main_opts();
    o.sslmode = SslMode::Disable;
    match ReplicationClient::connect(&o).await {
        Ok(c) => c,
        Err(e) => panic!("{}", unreachable(&o, &e)),
    }
}

/// A name no other test (or concurrent test run) uses.
pub fn unique(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fails the test instead of hanging when the server never sends what we wait for.
pub async fn within<T>(what: &str, secs: u64, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs}s waiting for {what}"),
    }
}

/// Runs `body` on its own task so that `cleanup` runs even when it panics
/// (its connections are dropped by then, so slots are free to drop).
pub async fn with_cleanup<B, C>(body: B, cleanup: C)
where
    B: Future<Output = ()> + Send + 'static,
    C: Future<Output = ()>,
{
    let result = tokio::spawn(body).await;
    cleanup.await;
    if let Err(e) = result {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

/// Runs one query over the replication connection's SQL path and returns
/// the single text value.
pub async fn repl_scalar(client: &mut ReplicationClient, sql: &str) -> Option<String> {
    let rows = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0][0].clone()
}

/// `ssl` from pg_stat_ssl for this SQL connection.
pub async fn sql_uses_ssl(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}
