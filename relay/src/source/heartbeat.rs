//! Heartbeats: a tiny non-transactional logical message written on an interval.
//!
//! When nothing the publication covers is written, the slot's confirmed position only
//! moves with keepalives, and on a server where other databases write heavily the WAL
//! behind the slot can pile up. The message passes through our own slot, lets the relay
//! confirm a newer position, and is never published.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;
use tracing::warn;

use crate::telemetry::Metrics;

pub const HEARTBEAT_PREFIX: &str = "outbox-relay-heartbeat";

pub async fn run(client: Arc<Client>, interval: Duration, metrics: Metrics) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut warned = false;
    loop {
        tick.tick().await;
        let sql = format!("SELECT pg_logical_emit_message(false, '{HEARTBEAT_PREFIX}', '')");
        if let Err(e) = client.batch_execute(&sql).await {
            metrics.errors.with_label_values(&["heartbeat"]).inc();
            if !warned {
                warn!(error = %e, "heartbeat failed (the role may lack EXECUTE on pg_logical_emit_message); the slot still advances on keepalives");
                warned = true;
            }
        }
    }
}
