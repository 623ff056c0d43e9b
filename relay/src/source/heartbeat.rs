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

/// Writes one heartbeat: its server time (Unix seconds) and a position at or past its
/// commit record.
#[async_trait::async_trait]
pub trait HeartbeatWriter: Send + Sync + 'static {
    async fn beat(&self) -> Result<(Lsn, f64), String>;
}

/// The heartbeat as a transactional logical message on the relay's SQL connection.
pub struct SqlHeartbeat(pub Arc<Client>);

#[async_trait::async_trait]
impl HeartbeatWriter for SqlHeartbeat {
    async fn beat(&self) -> Result<(Lsn, f64), String> {
        // One implicit transaction; the insert position read afterwards is at or past
        // its commit record, so the watermark passing it means the heartbeat is done.
        let at: f64 = self
            .0
            .query_one(
                &format!("SELECT extract(epoch FROM now())::float8 FROM pg_logical_emit_message(true, '{HEARTBEAT_PREFIX}', '')"),
                &[],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        let end: String = self
            .0
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        let lsn = end
            .parse::<Lsn>()
            .map_err(|e| format!("pg_current_wal_insert_lsn() = {end:?}: {e}"))?;
        Ok((lsn, at))
    }
}

/// Writes a heartbeat every `interval` and updates the lag metrics from the ones the
/// flush watermark has passed.
pub async fn run(
    writer: impl HeartbeatWriter,
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
        match writer.beat().await {
            Ok((lsn, at)) => pending.written(lsn, at),
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
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Mutex;

    use super::*;

    /// Heartbeats at positions 100, 200, 300…, at server times 1000.0, 1001.0…; fails
    /// while `down` is set.
    #[derive(Clone, Default)]
    struct Scripted {
        written: Arc<AtomicU64>,
        down: Arc<AtomicBool>,
        log: Arc<Mutex<Vec<tokio::time::Instant>>>,
    }

    #[async_trait::async_trait]
    impl HeartbeatWriter for Scripted {
        async fn beat(&self) -> Result<(Lsn, f64), String> {
            self.log.lock().unwrap().push(tokio::time::Instant::now());
            if self.down.load(Ordering::SeqCst) {
                return Err("permission denied for function pg_logical_emit_message".into());
            }
            let n = self.written.fetch_add(1, Ordering::SeqCst) + 1;
            Ok((Lsn(100 * n), 999.0 + n as f64))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn beats_every_interval_and_counts_one_as_delivered_once_the_watermark_passes_it() {
        let writer = Scripted::default();
        let progress = Arc::new(Progress::default());
        let metrics = Metrics::new();
        let task = tokio::spawn(run(
            writer.clone(),
            progress.clone(),
            Duration::from_secs(10),
            metrics.clone(),
        ));
        let start = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(35)).await;
        let times: Vec<u64> = writer
            .log
            .lock()
            .unwrap()
            .iter()
            .map(|t| (*t - start).as_secs())
            .collect();
        assert_eq!(
            times,
            vec![10, 20, 30],
            "one heartbeat per interval, none at start"
        );
        assert_eq!(
            metrics.last_acked_commit_timestamp.get(),
            0.0,
            "none delivered yet"
        );

        // The watermark passes the first two: the newest of them counts.
        progress.advance_flushed(Lsn(250));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(metrics.last_acked_commit_timestamp.get(), 1001.0);
        assert!(metrics.source_lag_seconds.get() > 0.0);

        // Failures are counted, beating goes on, and it recovers.
        writer.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(
            metrics.errors.with_label_values(&["heartbeat"]).get(),
            2,
            "one failed heartbeat per interval"
        );
        writer.down.store(false, Ordering::SeqCst);
        progress.advance_flushed(Lsn(u64::MAX / 2));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(metrics.last_acked_commit_timestamp.get(), 1004.0);
        assert_eq!(writer.log.lock().unwrap().len(), 7);
        task.abort();
    }

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
