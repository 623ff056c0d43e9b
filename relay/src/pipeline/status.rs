//! Standby status updates: the only way the flush watermark reaches PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use outbox_pgwire::{PgWireError, StatusSender};
use tokio::sync::{oneshot, Notify};
use tracing::debug;

use super::Progress;
use crate::telemetry::Metrics;

/// Sends status updates every `interval`, at once when the server asks, and a final one
/// when told to stop; write/flush/apply never move backwards because `Progress` doesn't.
///
/// It runs apart from the reader so that the server hears from us even while the reader
/// is blocked on a full in-flight budget (otherwise `wal_sender_timeout` would cut us off).
pub async fn run(
    mut sender: StatusSender,
    progress: Arc<Progress>,
    metrics: Metrics,
    reply_now: Arc<Notify>,
    mut stop: oneshot::Receiver<()>,
    interval: Duration,
) -> Result<(), PgWireError> {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = reply_now.notified() => {}
            _ = &mut stop => break,
        }
        send(&mut sender, &progress, &metrics).await?;
    }
    send(&mut sender, &progress, &metrics).await?;
    sender.finish().await
}

async fn send(
    sender: &mut StatusSender,
    progress: &Progress,
    metrics: &Metrics,
) -> Result<(), PgWireError> {
    // With `outbox.cleanup` the confirmation stays before rows not deleted yet, so a
    // restart replays (and the cleanup finds) them.
    let flush = progress.confirmable();
    let write = progress.received().max(flush);
    sender.send_status(write, flush, flush, false).await?;
    debug!(%write, %flush, "status update");
    metrics.confirmed_flush_lsn.set(flush.0 as i64);
    metrics.received_lsn.set(write.0 as i64);
    let end = progress.server_wal_end().max(write);
    metrics
        .replication_lag_bytes
        .set(end.0.saturating_sub(flush.0) as i64);
    metrics
        .oldest_inflight_age
        .set(progress.oldest_inflight_age().as_secs_f64());
    Ok(())
}
