//! How close the slot is to invalidation, polled from `pg_replication_slots`.
//!
//! With `max_slot_wal_keep_size` set, PostgreSQL invalidates a slot whose reader falls
//! further behind than that (`wal_status` goes reserved → extended → unreserved → lost),
//! and the events in the removed WAL are gone. `safe_wal_size` is the WAL that can still
//! be written before that happens: the number to alert on before it costs data.

use std::time::Duration;

use tokio_postgres::Client;
use tracing::debug;

use crate::telemetry::Metrics;

/// Every `wal_status` PostgreSQL reports, plus `missing` for a slot that is not there.
pub const WAL_STATUSES: [&str; 5] = ["reserved", "extended", "unreserved", "lost", "missing"];

/// What one poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotWalState {
    /// `None`: the slot does not exist.
    pub wal_status: Option<String>,
    /// `None`: unlimited, or the slot is lost.
    pub safe_wal_size: Option<i64>,
    /// `None`: unlimited.
    pub max_wal_keep_size: Option<i64>,
}

pub async fn poll(client: &Client, slot: &str) -> Result<SlotWalState, tokio_postgres::Error> {
    // max_slot_wal_keep_size is in MB (-1 = unlimited); pg_size_bytes reads its text.
    let setting = client
        .query_one(
            "SELECT CASE WHEN current_setting('max_slot_wal_keep_size') = '-1' THEN NULL
                         ELSE pg_size_bytes(current_setting('max_slot_wal_keep_size')) END",
            &[],
        )
        .await?;
    let row = client
        .query_opt(
            "SELECT wal_status, safe_wal_size FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(SlotWalState {
        wal_status: row.as_ref().and_then(|r| r.get(0)),
        safe_wal_size: row.as_ref().and_then(|r| r.get(1)),
        max_wal_keep_size: setting.get(0),
    })
}

/// Sets the gauges from one poll.
pub fn export(metrics: &Metrics, state: &SlotWalState) {
    let current = state.wal_status.as_deref().unwrap_or("missing");
    for status in WAL_STATUSES {
        metrics
            .slot_wal_status
            .with_label_values(&[status])
            .set(i64::from(status == current));
    }
    metrics
        .slot_safe_wal_size
        .set(state.safe_wal_size.unwrap_or(-1));
    metrics
        .slot_max_wal_keep_size
        .set(state.max_wal_keep_size.unwrap_or(-1));
}

pub async fn run(
    client: std::sync::Arc<Client>,
    slot: String,
    metrics: Metrics,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match poll(&client, &slot).await {
            Ok(state) => export(&metrics, &state),
            Err(e) => debug!(error = %e, "could not read pg_replication_slots"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(m: &Metrics, s: &str) -> i64 {
        m.slot_wal_status.with_label_values(&[s]).get()
    }

    #[test]
    fn exactly_one_status_is_set_and_unlimited_is_minus_one() {
        let m = Metrics::new();
        export(
            &m,
            &SlotWalState {
                wal_status: Some("unreserved".into()),
                safe_wal_size: Some(1024),
                max_wal_keep_size: Some(64 << 20),
            },
        );
        assert_eq!(status(&m, "unreserved"), 1);
        assert_eq!(status(&m, "reserved"), 0);
        assert_eq!(m.slot_safe_wal_size.get(), 1024);
        assert_eq!(m.slot_max_wal_keep_size.get(), 64 << 20);
        export(
            &m,
            &SlotWalState {
                wal_status: None,
                safe_wal_size: None,
                max_wal_keep_size: None,
            },
        );
        assert_eq!(status(&m, "missing"), 1);
        assert_eq!(status(&m, "unreserved"), 0);
        assert_eq!(m.slot_safe_wal_size.get(), -1);
        assert_eq!(m.slot_max_wal_keep_size.get(), -1);
    }
}
