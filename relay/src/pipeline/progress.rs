//! WAL positions shared between the reader, the acker and the status task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use outbox_pgoutput::Lsn;

/// Positions only move forward: every update is a `fetch_max`.
#[derive(Debug, Default)]
pub struct Progress {
    /// The newest WAL position received.
    received: AtomicU64,
    /// The newest position such that everything before it is durable at the sink.
    flushed: AtomicU64,
    /// The server's current end of WAL, from XLogData and keepalives.
    server_wal_end: AtomicU64,
    /// When the batch the acker is waiting for was handed to the sink: the oldest event
    /// not yet acknowledged. None while the acker waits for nothing.
    oldest_inflight: Mutex<Option<Instant>>,
}

impl Progress {
    pub fn received(&self) -> Lsn {
        Lsn(self.received.load(Ordering::Acquire))
    }
    pub fn flushed(&self) -> Lsn {
        Lsn(self.flushed.load(Ordering::Acquire))
    }
    pub fn server_wal_end(&self) -> Lsn {
        Lsn(self.server_wal_end.load(Ordering::Acquire))
    }
    pub fn note_received(&self, lsn: Lsn) {
        self.received.fetch_max(lsn.0, Ordering::AcqRel);
    }
    pub fn advance_flushed(&self, lsn: Lsn) {
        self.flushed.fetch_max(lsn.0, Ordering::AcqRel);
    }
    pub fn note_server_wal_end(&self, lsn: Lsn) {
        self.server_wal_end.fetch_max(lsn.0, Ordering::AcqRel);
    }
    pub fn set_oldest_inflight(&self, accepted_at: Option<Instant>) {
        *self
            .oldest_inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = accepted_at;
    }
    /// How long the oldest unacknowledged batch has waited; zero when none is waiting.
    pub fn oldest_inflight_age(&self) -> Duration {
        self.oldest_inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map_or(Duration::ZERO, |t| t.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_moves_backwards() {
        let p = Progress::default();
        p.advance_flushed(Lsn(10));
        p.advance_flushed(Lsn(5));
        assert_eq!(p.flushed(), Lsn(10));
        p.note_received(Lsn(3));
        p.note_received(Lsn(2));
        assert_eq!(p.received(), Lsn(3));
    }

    #[test]
    fn oldest_inflight_age_is_zero_when_nothing_waits() {
        let p = Progress::default();
        assert_eq!(p.oldest_inflight_age(), Duration::ZERO);
        p.set_oldest_inflight(Some(Instant::now() - Duration::from_secs(5)));
        assert!(p.oldest_inflight_age() >= Duration::from_secs(5));
        p.set_oldest_inflight(None);
        assert_eq!(p.oldest_inflight_age(), Duration::ZERO);
    }
}
