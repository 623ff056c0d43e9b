//! Heartbeats: a tiny transactional logical message written on an interval, and the lag
//! in seconds measured with them.
//!
//! When nothing the publication covers is written, the slot's confirmed position only
//! moves with keepalives, and on a server where other databases write heavily the WAL
//! behind the slot can pile up. The message is a transaction of its own that passes
//! through our slot: its commit is a position the relay confirms once everything before
//! it is delivered, so the slot really advances. It is never published.
//!
//! Each heartbeat's server time and an upper bound of its commit position are kept; once
//! the flush watermark passes that position, everything committed before that time is
//! delivered: `last_acked_commit_timestamp_seconds`, and the lag is the time since then.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use outbox_pgoutput::Lsn;
use tokio_postgres::Client;
use tracing::warn;

use crate::pipeline::Progress;
use crate::telemetry::Metrics;

pub const HEARTBEAT_PREFIX: &str = "outbox-relay-heartbeat";

/// Heartbeats written and not yet known to be delivered, oldest first.
#[derive(Debug, Default)]
pub struct Pending {
    beats: VecDeque<(Lsn, f64)>,
    /// Unix time of the newest delivered heartbeat.
    acked_at: Option<f64>,
}

/// How many unacknowledged heartbeats are kept: a stalled relay must not grow memory;
/// dropping the oldest only makes the lag estimate coarser, never smaller.
const MAX_PENDING: usize = 1024;

impl Pending {
    /// A heartbeat written at server time `at` (Unix seconds), committed before `lsn`.
    pub fn written(&mut self, lsn: Lsn, at: f64) {
        if self.beats.len() == MAX_PENDING {
            self.beats.pop_front();
        }
        self.beats.push_back((lsn, at));
    }

    /// Drops the heartbeats at or below the flush watermark; returns the time of the
    /// newest delivered one.
    pub fn flushed(&mut self, watermark: Lsn) -> Option<f64> {
        while let Some(&(lsn, at)) = self.beats.front() {
            if lsn > watermark {
                break;
            }
            self.acked_at = Some(at);
            self.beats.pop_front();
        }
        self.acked_at
    }
}

pub async fn run(
    client: Arc<Client>,
    progress: Arc<Progress>,
    interval: Duration,
    metrics: Metrics,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut pending = Pending::default();
    let mut warned = false;
    loop {
        tick.tick().await;
        // One implicit transaction; the insert position read afterwards is at or past
        // its commit record, so the watermark passing it means the heartbeat is done.
        let beat = async {
            let at: f64 = client
                .query_one(
                    &format!("SELECT extract(epoch FROM now())::float8 FROM pg_logical_emit_message(true, '{HEARTBEAT_PREFIX}', '')"),
                    &[],
                )
                .await?
                .get(0);
            let end: String = client
                .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
                .await?
                .get(0);
            Ok::<_, tokio_postgres::Error>((end, at))
        };
        match beat.await {
            Ok((end, at)) => {
                if let Ok(lsn) = end.parse::<Lsn>() {
                    pending.written(lsn, at);
                }
            }
            Err(e) => {
                metrics.errors.with_label_values(&["heartbeat"]).inc();
                if !warned {
                    warn!(error = %e, "heartbeat failed (the role may lack EXECUTE on pg_logical_emit_message); the slot still advances on keepalives, and the lag in seconds is not measured");
                    warned = true;
                }
            }
        }
        if let Some(acked) = pending.flushed(progress.flushed()) {
            metrics.last_acked_commit_timestamp.set(acked);
            metrics
                .source_lag_seconds
                .set((unix_now() - acked).max(0.0));
        }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_heartbeats_at_or_below_the_watermark_count_as_delivered() {
        let mut p = Pending::default();
        assert_eq!(p.flushed(Lsn(100)), None);
        p.written(Lsn(10), 1.0);
        p.written(Lsn(20), 2.0);
        p.written(Lsn(30), 3.0);
        assert_eq!(p.flushed(Lsn(19)), Some(1.0));
        assert_eq!(p.flushed(Lsn(19)), Some(1.0));
        assert_eq!(p.flushed(Lsn(30)), Some(3.0));
        assert!(p.beats.is_empty());
    }

    #[test]
    fn a_stalled_relay_keeps_a_bounded_queue() {
        let mut p = Pending::default();
        for i in 0..(MAX_PENDING as u64 + 10) {
            p.written(Lsn(i + 1), i as f64);
        }
        assert_eq!(p.beats.len(), MAX_PENDING);
        assert_eq!(p.flushed(Lsn(u64::MAX)), Some((MAX_PENDING + 9) as f64));
    }
}
