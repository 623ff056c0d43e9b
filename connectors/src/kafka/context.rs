//! librdkafka's log and error callbacks, routed to `tracing` with repeats held back.
//!
//! While a broker is unreachable librdkafka reports every failed connection attempt twice
//! (a `FAIL` log line and a global `BrokerTransportFailure` error, plus `AllBrokersDown`),
//! at its reconnect backoff: measured, 226 ERROR lines in 8 s, all saying the same thing.
//! The shared [`RateLimiter`] logs the first message of a kind at once and holds back
//! repeats within [`LOG_WINDOW`], counted in the next one logged.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::circuits::KafkaCircuits;
use super::stats::StatsCell;

use crate::policy::{RateLimiter, LOG_WINDOW};

/// The producer's client context: librdkafka's logs and global errors, rate limited; a
/// lost connection to every broker also feeds the circuit breakers.
pub struct RelayKafkaContext {
    limiter: Mutex<RateLimiter>,
    circuits: Arc<KafkaCircuits>,
    stats: StatsCell,
}

impl RelayKafkaContext {
    pub fn new(circuits: Arc<KafkaCircuits>, stats: StatsCell) -> Self {
        RelayKafkaContext {
            limiter: Mutex::new(RateLimiter::new(LOG_WINDOW)),
            circuits,
            stats,
        }
    }

    /// `Some(suffix)` when the message of this kind is to be logged now.
    fn admit(&self, kind: &str) -> Option<String> {
        let mut limiter = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        limiter.admit_suffix(kind, Instant::now())
    }
}

impl ClientContext for RelayKafkaContext {
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        self.stats.set(&statistics);
    }

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
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.circuits.on_brokers_down();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
