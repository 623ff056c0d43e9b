//! librdkafka's log and error callbacks, routed to `tracing` with repeats held back.
//!
//! While a broker is unreachable librdkafka reports every failed connection attempt twice
//! (a `FAIL` log line and a global `BrokerTransportFailure` error, plus `AllBrokersDown`),
//! at its reconnect backoff: measured, 226 ERROR lines in 8 s, all saying the same thing.
//! The first message of a kind is logged at once; repeats within [`WINDOW`] are counted,
//! and the next one logged after the window says how many were held back. Nothing is
//! hidden for long: a condition that persists is reported again every window.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

/// How long repeats of one message are held back.
pub const WINDOW: Duration = Duration::from_secs(30);

/// Past this many distinct kinds, kinds not seen for a window are forgotten.
const MAX_KINDS: usize = 256;

/// The producer's client context: librdkafka's logs and global errors, rate limited.
pub struct RelayKafkaContext {
    limiter: Mutex<Limiter>,
}

impl Default for RelayKafkaContext {
    fn default() -> Self {
        RelayKafkaContext {
            limiter: Mutex::new(Limiter::new(WINDOW)),
        }
    }
}

impl RelayKafkaContext {
    /// `Some(suffix)` when the message of this kind is to be logged now.
    fn admit(&self, kind: &str) -> Option<String> {
        let mut limiter = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        limiter.admit(kind, Instant::now()).map(|held| match held {
            0 => String::new(),
            n => format!(" ({n} more like it in the last {}s)", WINDOW.as_secs()),
        })
    }
}

impl ClientContext for RelayKafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // The relay sets enable.gapless.guarantee on purpose (connectors::kafka::config);
        // librdkafka's "experimental" warning about it at every start is not news.
        if fac == "CONFWARN" && message.contains("enable.gapless.guarantee") {
            tracing::debug!(target: "librdkafka", "{fac} {message}");
            return;
        }
        if matches!(level, RDKafkaLogLevel::Debug) {
            tracing::debug!(target: "librdkafka", "{fac} {message}");
            return;
        }
        let Some(suffix) = self.admit(&format!("{fac} {}", kind_of(message))) else {
            return;
        };
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "{fac} {message}{suffix}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", "{fac} {message}{suffix}")
            }
            _ => tracing::info!(target: "librdkafka", "{fac} {message}{suffix}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(suffix) = self.admit(&format!("{error} {}", kind_of(reason))) {
            tracing::error!(target: "librdkafka", "{error}: {reason}{suffix}");
        }
    }
}

/// A message without its trailing parenthesised detail, which librdkafka varies between
/// repeats: "… failed: Connection refused (after 0ms in state CONNECT, 2 identical
/// error(s) suppressed)" and "… (after 1ms in state CONNECT)" are one kind.
fn kind_of(message: &str) -> &str {
    let trimmed = message.trim_end();
    if trimmed.ends_with(')') {
        if let Some(open) = trimmed.rfind(" (") {
            return &trimmed[..open];
        }
    }
    trimmed
}

/// Decides, per kind of message, whether to log it now.
struct Limiter {
    window: Duration,
    kinds: HashMap<String, Kind>,
}

struct Kind {
    logged_at: Instant,
    held: u64,
}

impl Limiter {
    fn new(window: Duration) -> Self {
        Limiter {
            window,
            kinds: HashMap::new(),
        }
    }

    /// `Some(held)` if a message of `kind` arriving at `now` is to be logged, with the
    /// number of its kind held back since the last one logged; `None` to hold it back.
    fn admit(&mut self, kind: &str, now: Instant) -> Option<u64> {
        if let Some(k) = self.kinds.get_mut(kind) {
            if now.duration_since(k.logged_at) < self.window {
                k.held += 1;
                return None;
            }
            let held = k.held;
            k.logged_at = now;
            k.held = 0;
            return Some(held);
        }
        if self.kinds.len() >= MAX_KINDS {
            let window = self.window;
            self.kinds
                .retain(|_, k| now.duration_since(k.logged_at) < window);
        }
        self.kinds.insert(
            kind.to_string(),
            Kind {
                logged_at: now,
                held: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_held_back_and_counted_in_the_next_one_logged() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Duration::from_secs(30));
        assert_eq!(l.admit("FAIL refused", t0), Some(0));
        for ms in [50, 100, 29_999] {
            assert_eq!(
                l.admit("FAIL refused", t0 + Duration::from_millis(ms)),
                None
            );
        }
        // Another kind is independent.
        assert_eq!(
            l.admit("AllBrokersDown", t0 + Duration::from_millis(60)),
            Some(0)
        );
        assert_eq!(
            l.admit("FAIL refused", t0 + Duration::from_secs(30)),
            Some(3)
        );
        assert_eq!(l.admit("FAIL refused", t0 + Duration::from_secs(31)), None);
        assert_eq!(
            l.admit("FAIL refused", t0 + Duration::from_secs(60)),
            Some(1)
        );
    }

    #[test]
    fn kinds_are_forgotten_only_when_many_and_stale() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Duration::from_secs(30));
        for i in 0..MAX_KINDS {
            assert_eq!(l.admit(&format!("k{i}"), t0), Some(0));
        }
        // Full, but every kind is within its window: nothing forgotten, k0 still held.
        assert_eq!(l.admit("new", t0 + Duration::from_secs(1)), Some(0));
        assert_eq!(l.admit("k0", t0 + Duration::from_secs(2)), None);
        // A window later the stale kinds go when the next new kind arrives.
        assert_eq!(l.admit("newer", t0 + Duration::from_secs(40)), Some(0));
        assert!(l.kinds.len() <= 3, "{}", l.kinds.len());
    }

    #[test]
    fn the_varying_parenthesised_detail_does_not_make_a_new_kind() {
        let a = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)";
        let b = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 1ms in state CONNECT, 2 identical error(s) suppressed)";
        assert_eq!(kind_of(a), kind_of(b));
        assert_eq!(
            kind_of(a),
            "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused"
        );
        let other_broker = "127.0.0.1:2/bootstrap: Connect to ipv4#127.0.0.1:2 failed: Connection refused (after 0ms in state CONNECT)";
        assert_ne!(kind_of(a), kind_of(other_broker));
        assert_eq!(kind_of("1/1 brokers are down"), "1/1 brokers are down");
    }
}
