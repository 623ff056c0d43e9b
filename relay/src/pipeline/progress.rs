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
    /// With `outbox.cleanup`, the confirmation sent to the server stays at or before
    /// this (0: no hold): see `cleanup.rs`.
    confirm_hold: AtomicU64,
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
    /// What the status updates confirm to the server: the flush watermark, held back
    /// by the cleanup when it has rows still to delete.
    pub fn confirmable(&self) -> Lsn {
        let flushed = self.flushed();
        match self.confirm_hold.load(Ordering::Acquire) {
            0 => flushed,
            hold => flushed.min(Lsn(hold)),
        }
    }
    /// Moves the hold forward (it never moves backwards).
    pub fn hold_confirmation(&self, lsn: Lsn) {
        self.confirm_hold.fetch_max(lsn.0.max(1), Ordering::AcqRel);
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
    fn the_confirmation_is_held_back_only_when_a_hold_is_set() {
        let p = Progress::default();
        p.advance_flushed(Lsn(100));
        assert_eq!(p.confirmable(), Lsn(100));
        p.hold_confirmation(Lsn(40));
        assert_eq!(p.confirmable(), Lsn(40));
        p.hold_confirmation(Lsn(30));
        assert_eq!(p.confirmable(), Lsn(40));
        p.hold_confirmation(Lsn(500));
        assert_eq!(p.confirmable(), Lsn(100));
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
