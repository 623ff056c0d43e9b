//! Leader election among replicas of one slot (`ha.enabled`), through PostgreSQL itself.
//!
//! The leader is the replica whose SQL session holds the slot's advisory lock
//! (`pg_try_advisory_lock(hashtext('outbox-relay'), hashtext(<slot>))`). Standbys try to
//! take it every `ha.poll_interval_ms`. The lock lives exactly as long as the session
//! that took it, so it needs no renewal protocol; what matters is how fast a dead,
//! frozen or cut-off leader's session ends, and that the leader stops first:
//!
//! - **The leader** runs a query on its lock session every `lease / 3` and exits the
//!   process (code 3) once none has succeeded for `lease`: whatever it still holds
//!   (librdkafka's queue, batches in flight) dies with it, so it cannot publish after
//!   that point.
//! - **PostgreSQL** ends the lock session after `2 × lease` of silence
//!   (`idle_session_timeout`, PostgreSQL 14+) or when TCP keepalives fail
//!   (`tcp_keepalives_*`, set on the session to about the same time): the lock is free
//!   for a standby only after the leader's own deadline has passed.
//! - **The slot** admits one reader: the new leader terminates the walsender the old one
//!   may have left behind (the old leader's process or connection is gone by then), so a
//!   takeover does not wait for `wal_sender_timeout`.
//!
//! A crash releases the lock at once (the server sees the socket close). A leader frozen
//! (SIGSTOP) or cut off from the database loses it after `2 × lease`. The one window this
//! cannot close: a leader frozen while the broker already held its requests, resumed after
//! the takeover, may have librdkafka finish sending them before its watchdog runs (a few
//! milliseconds). Those are duplicates of events above the confirmed flush position that
//! the new leader also publishes; exactly-once Kafka (transactional fencing) would close
//! it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_pgwire::connect_sql;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::RelayError;
use crate::telemetry::{Health, Metrics};

/// The lock key, visible in `pg_locks` as classid/objid.
const LOCK: &str = "SELECT pg_try_advisory_lock(hashtext('outbox-relay'), hashtext($1))";

/// Leadership held: lost when [`Lease::lost`] resolves.
pub struct Lease {
    lost: watch::Receiver<bool>,
    watchdog: JoinHandle<()>,
}

impl Lease {
    /// Resolves when the lease could not be renewed (the process must stop publishing).
    pub async fn lost(&mut self) {
        while !*self.lost.borrow() {
            if self.lost.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.watchdog.abort();
    }
}

/// Waits until this replica leads (`Ok(Some)`), or shutdown is requested while it is a
/// standby (`Ok(None)`).
pub async fn acquire(
    config: &Config,
    metrics: &Metrics,
    health: &Health,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Lease>, RelayError> {
    let ha = &config.ha;
    let slot = &config.source.slot;
    let opts = config.source.connect_options()?;
    health.set_standby(true);
    metrics.leader.set(0);
    let mut warned = false;
    loop {
        let attempt = async {
            let (client, connection) = connect_sql(&opts).await?;
            configure_session(&client, ha.lease).await;
            let mut announced = false;
            loop {
                let held: bool = client.query_one(LOCK, &[slot]).await?.get(0);
                if held {
                    return Ok::<_, RelayError>((client, connection));
                }
                if !announced {
                    info!(slot = %slot, "standby: another replica leads this slot; waiting for its lock");
                    announced = true;
                }
                tokio::time::sleep(ha.poll_interval).await;
            }
        };
        let result = tokio::select! {
            r = attempt => r,
            _ = shutdown.changed() => return Ok(None),
        };
        match result {
            Ok((client, connection)) => {
                let client = Arc::new(client);
                // One lock (on `source.slot`) covers every shard's slot: one leader reads
                // them all.
                for slot in config.shard_slots() {
                    take_over_slot(&client, &slot).await;
                }
                health.set_standby(false);
                metrics.leader.set(1);
                metrics.leader_transitions.inc();
                info!(slot = %slot, "leading: this replica holds the slot's lock");
                let (tx, lost) = watch::channel(false);
                let lease = ha.lease;
                let watchdog = tokio::spawn(async move {
                    watch_lease(&client, lease).await;
                    let _ = tx.send(true);
                    connection.abort();
                });
                return Ok(Some(Lease { lost, watchdog }));
            }
            Err(e) => {
                if !warned {
                    warn!(error = %e, "standby: cannot reach the database to contend for leadership; retrying");
                    warned = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(ha.poll_interval) => {}
                    _ = shutdown.changed() => return Ok(None),
                }
            }
        }
    }
}

/// Makes PostgreSQL end this session soon after it falls silent, which releases the lock:
/// `idle_session_timeout` for a frozen client (its kernel still answers keepalives), TCP
/// keepalives for a vanished one. Both at twice the lease, so the leader's own deadline
/// (one lease) passes first.
async fn configure_session(client: &Client, lease: Duration) {
    let secs = (lease.as_secs_f64() * 2.0).ceil() as u64;
    let keepalive = format!(
        "SET tcp_keepalives_idle = {}; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = {}",
        secs.div_ceil(2).max(1),
        secs.div_ceil(2).max(1)
    );
    if let Err(e) = client.batch_execute(&keepalive).await {
        warn!(error = %e, "could not set TCP keepalives on the leadership session");
    }
    let idle = format!("SET idle_session_timeout = '{}ms'", secs * 1000);
    if let Err(e) = client.batch_execute(&idle).await {
        // PostgreSQL 13 has no idle_session_timeout: a frozen leader keeps the lock until
        // it resumes (and then stops at once, its lease expired).
        warn!(error = %e, "idle_session_timeout is not available (PostgreSQL 13?): a frozen leader is not replaced until it resumes");
    }
}

/// Ends the previous leader's walsender if it is still attached to the slot: its
/// process lost the lock, so it is gone or stopping, and the slot admits one reader.
async fn take_over_slot(client: &Client, slot: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pid: Option<i32> = match client
            .query_opt(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
        {
            Ok(row) => row.and_then(|r| r.get(0)),
            Err(_) => return,
        };
        let Some(pid) = pid else { return };
        if Instant::now() > deadline {
            warn!(
                pid,
                "the previous reader of the slot does not go away; the session will wait for it"
            );
            return;
        }
        info!(pid, "terminating the previous leader's walsender");
        let _ = client
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Returns once the lease is lost: the lock session failed, or no query on it succeeded
/// for `lease`.
async fn watch_lease(client: &Client, lease: Duration) {
    let every = lease / 3;
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        // The deadline counts from the last success: a query that hangs (a cut network)
        // runs into it as surely as one that fails.
        let left = lease.saturating_sub(last_ok.elapsed());
        if left.is_zero() {
            warn!(
                lease_ms = lease.as_millis() as u64,
                "leadership lease expired"
            );
            return;
        }
        match tokio::time::timeout(left, client.simple_query("SELECT 1")).await {
            Ok(Ok(_)) => last_ok = Instant::now(),
            Ok(Err(e)) => {
                warn!(error = %e, "the leadership session failed");
                return;
            }
            Err(_) => {
                warn!(
                    lease_ms = lease.as_millis() as u64,
                    "leadership lease expired"
                );
                return;
            }
        }
    }
}
