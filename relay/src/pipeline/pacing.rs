//! Read pacing: while the relay is catching up on a backlog it reads the replication
//! stream at most about once a millisecond once the socket is drained; while it keeps up
//! it reads as soon as bytes arrive.
//!
//! Why: a reader faster than the walsender otherwise parks and is woken for every few
//! messages. On the 1M-event drain that was about 100k thread wake-ups, a large share of
//! the relay's CPU, most of it in the kernel; with reads a millisecond apart the null
//! drain went from about 3.8 to 3.3 CPU-µs per event (docs/benchmarks.md). In steady
//! state the same pacing cost 2 ms of p50 latency at 5k events/s for a tenth of the CPU,
//! so it is only on while the transactions being read are old: then a millisecond more
//! does not matter, and the reads that find a full socket are never delayed anyway.

use std::time::Duration;

use outbox_pgoutput::time::pg_timestamp_to_unix_micros;

/// The least time between two reads that find the socket drained, while catching up.
pub const READ_GAP: Duration = Duration::from_millis(1);

/// How the replication stream should read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPace {
    /// As soon as bytes arrive (keeping up).
    Immediate,
    /// At most once per this gap when the socket is drained (catching up).
    Gap(Duration),
}

impl ReadPace {
    /// What `ReplicationStream::coalesce_reads` takes.
    pub fn gap(self) -> Option<Duration> {
        match self {
            ReadPace::Immediate => None,
            ReadPace::Gap(gap) => Some(gap),
        }
    }
}

/// A transaction read this long after its commit means the relay is behind.
pub const CATCHING_UP_AFTER_US: i64 = 100_000;

/// Whether the relay is catching up, from the commit times of the transactions it reads.
#[derive(Debug, Default)]
pub struct Pacing {
    catching_up: bool,
}

impl Pacing {
    /// A transaction begins (pgoutput's Begin carries its commit time); `now_us` is the
    /// relay's clock. Returns the pace to read at when it changed, `None` otherwise.
    pub fn on_begin(&mut self, commit_ts: i64, now_us: i64) -> Option<ReadPace> {
        let behind = now_us - pg_timestamp_to_unix_micros(commit_ts) > CATCHING_UP_AFTER_US;
        if behind == self.catching_up {
            return None;
        }
        self.catching_up = behind;
        Some(if behind {
            ReadPace::Gap(READ_GAP)
        } else {
            ReadPace::Immediate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL timestamps count from 2000-01-01.
    const PG_EPOCH_US: i64 = 946_684_800_000_000;

    #[test]
    fn paces_reads_only_while_transactions_are_old() {
        let mut p = Pacing::default();
        let now = PG_EPOCH_US + 10_000_000_000;
        let commit_at = |age_us: i64| now - PG_EPOCH_US - age_us;
        assert_eq!(p.on_begin(commit_at(5_000), now), None, "keeping up");
        assert_eq!(
            p.on_begin(commit_at(CATCHING_UP_AFTER_US + 1), now),
            Some(ReadPace::Gap(READ_GAP)),
            "behind: pace"
        );
        assert_eq!(p.on_begin(commit_at(2_000_000), now), None, "still behind");
        assert_eq!(
            p.on_begin(commit_at(1_000), now),
            Some(ReadPace::Immediate),
            "caught up"
        );
        assert_eq!(p.on_begin(commit_at(CATCHING_UP_AFTER_US), now), None);
    }
}
