//! Noticing a replication connection whose server has gone silent.
//!
//! A connection whose packets vanish (a NAT or firewall dropping the flow, a
//! failed-over load balancer) gives no error until TCP gives up, many minutes
//! later. So the read half fails a read that gets no byte within the receive
//! timeout, and the write half, which sends status updates from another task,
//! asks the server for an immediate keepalive (`replyRequested`) once the
//! stream has been quiet for half of it. The request matters: a walsender
//! that has nothing to send and already has our confirmation sends nothing at
//! all, so silence alone would prove nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When bytes last arrived on a connection, shared by its two halves.
#[derive(Debug)]
pub(crate) struct Heard {
    origin: Instant,
    /// Milliseconds after `origin`.
    last_ms: AtomicU64,
}

impl Heard {
    pub fn new() -> Arc<Self> {
        Arc::new(Heard {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    /// Bytes arrived just now.
    pub fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Time since bytes last arrived (or since the watch began).
    pub fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

/// The write half's view: whether to ask the server for a keepalive.
#[derive(Debug, Clone)]
pub(crate) struct PingPolicy {
    heard: Arc<Heard>,
    /// Ask once the stream has been quiet this long; `None`: never ask.
    after: Option<Duration>,
}

impl PingPolicy {
    /// Pings after half the receive timeout, which leaves the other half for
    /// the status interval and the answer's round trip.
    pub fn new(heard: Arc<Heard>, receive_timeout: Option<Duration>) -> Self {
        PingPolicy {
            heard,
            after: receive_timeout.map(|t| t / 2),
        }
    }

    pub fn wants_ping(&self) -> bool {
        self.after
            .is_some_and(|after| self.heard.quiet_for() >= after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_after_half_the_timeout_of_silence() {
        let heard = Heard::new();
        let policy = PingPolicy::new(heard.clone(), Some(Duration::from_secs(10)));
        assert!(!policy.wants_ping());
        std::thread::sleep(Duration::from_millis(30));
        assert!(!policy.wants_ping(), "30 ms of 5 s");
        let never = PingPolicy::new(heard.clone(), None);
        assert!(!never.wants_ping());
        let short = PingPolicy::new(heard.clone(), Some(Duration::from_millis(40)));
        assert!(short.wants_ping(), "quiet for 30 ms, asks after 20 ms");
        heard.touch();
        assert!(!short.wants_ping(), "just heard from the server");
        assert!(heard.quiet_for() < Duration::from_millis(20));
    }
}
