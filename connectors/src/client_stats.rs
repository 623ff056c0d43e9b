//! What a broker client library reports about itself (librdkafka's statistics), handed
//! to the relay as plain gauges: the relay exports them without knowing any client.

/// One gauge sample, e.g. `kafka_broker_rtt_seconds{broker="b:9092/1", stat="p99"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientGauge {
    /// The metric name without the relay's `outbox_relay_` prefix.
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}
