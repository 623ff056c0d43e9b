//! Kafka connector configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `sink.kafka`: where and how to produce.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list (librdkafka `bootstrap.servers`).
    pub brokers: String,
    /// Any librdkafka producer property, passed through unchanged: SASL/SSL
    /// (`security.protocol`, `sasl.mechanism`, `sasl.username`, `sasl.password`,
    /// `ssl.ca.location`...), `compression.type`, `linger.ms`, `batch.size`...
    /// The properties the ordering guarantee rests on cannot be overridden.
    #[serde(default, serialize_with = "redacted_properties")]
    pub properties: BTreeMap<String, String>,
    /// Per topic: opens when every broker is unreachable for `failure_threshold` reconnect
    /// attempts in a row; see `crate::policy::BreakerConfig`.
    #[serde(default)]
    pub circuit_breaker: crate::policy::BreakerConfig,
    /// Exactly-once delivery to `read_committed` consumers: every batch is one Kafka
    /// transaction that also records, in `progress_topic`, the position it covers; a
    /// restarted relay skips what Kafka already committed (see kafka/transactional.rs).
    #[serde(default)]
    pub exactly_once: bool,
    /// The producer's `transactional.id` (exactly_once): stable per slot, so that a
    /// restarted or standby relay fences the old one. Empty: `outbox-relay.<database>.<slot>`.
    #[serde(default)]
    pub transactional_id: String,
    /// The compacted topic holding each transactional id's committed position
    /// (exactly_once); created (one partition, `cleanup.policy=compact`) if missing.
    #[serde(default = "default_progress_topic")]
    pub progress_topic: String,
    /// How long a Kafka transaction collects batches before it commits (exactly_once):
    /// longer means fewer commits and more latency.
    #[serde(
        default = "default_transaction_interval",
        rename = "transaction_interval_ms",
        with = "crate::duration_ms"
    )]
    pub transaction_interval: std::time::Duration,
}

fn default_transaction_interval() -> std::time::Duration {
    std::time::Duration::from_millis(100)
}

fn default_progress_topic() -> String {
    "outbox-relay-progress".into()
}

/// Property names whose values are credentials (librdkafka marks them sensitive):
/// written out as `***`.
const SENSITIVE: &[&str] = &[
    "password",
    "secret",
    "key.pem",
    "ssl_key",
    "oauthbearer.config",
    "jaas",
];

/// Whether a librdkafka property holds a credential.
pub fn is_sensitive(property: &str) -> bool {
    let p = property.to_ascii_lowercase();
    SENSITIVE.iter().any(|s| p.contains(s))
}

/// The properties with credentials replaced by `***`, for `outbox-relay config`.
fn redacted_properties<S: serde::Serializer>(
    properties: &BTreeMap<String, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(properties.iter().map(|(k, v)| {
        let v = if is_sensitive(k) { "***" } else { v.as_str() };
        (k, v)
    }))
}

/// Properties the relay sets and a user may not change, with the reason given in errors.
pub(crate) const LOCKED: &[(&str, &str, &str)] = &[
    (
        "enable.idempotence",
        "true",
        "per-partition order through retries depends on it",
    ),
    (
        "acks",
        "all",
        "an event counts as published only once all in-sync replicas have it",
    ),
    (
        "enable.gapless.guarantee",
        "true",
        "a failed batch must stop the producer rather than leave a gap",
    ),
    (
        "max.in.flight.requests.per.connection",
        "1",
        "a produce request that fails with a retriable error must not be overtaken by the next one: a broker with no state for the producer on a partition appends whatever sequence arrives first (KAFKA-15591), and librdkafka then counts the overtaken records as delivered",
    ),
];

/// Defaults a user may override.
pub(crate) const DEFAULTS: &[(&str, &str)] = &[
    // 0 = retry until delivered: a broker outage stalls the relay (Postgres keeps the WAL)
    // instead of failing messages, which would force a replay.
    ("message.timeout.ms", "0"),
    // A topic that does not exist yet (created by infrastructure code a little after the
    // first event of a new aggregate type) is waited for this long before its records
    // fail as unknown: librdkafka's default, 30 s, turned a late topic into parked events.
    // The same window as the SNS/SQS connector's `transient_error_window_ms`.
    ("topic.metadata.propagation.max.ms", "300000"),
    ("linger.ms", "5"),
    ("queue.buffering.max.kbytes", "65536"),
    ("queue.buffering.max.messages", "1000000"),
    ("client.id", "outbox-relay"),
    // The Java client's partitioner (murmur2 of the key, modulo the partition count),
    // which Debezium and every other Java producer use: a key lands on the same
    // partition as before a cut-over from Debezium, or as a Java producer sharing the
    // topic puts it, so per-aggregate order holds across the switch. librdkafka's own
    // default (`consistent_random`, CRC32) would move most keys. Overridable so that a
    // topic already written with another partitioner can keep its mapping.
    ("partitioner", "murmur2_random"),
    // A broker connection that died silently (NAT or firewall idle timeout, a node gone
    // without a FIN) is noticed by TCP keepalive instead of waiting for a request timeout.
    ("socket.keepalive.enable", "true"),
    // librdkafka's statistics (broker round trips, queue depth, batch sizes) become
    // metrics (kafka/stats.rs); every 10 s costs one JSON report. 0 turns them off.
    ("statistics.interval.ms", "10000"),
];

impl KafkaConfig {
    /// The full librdkafka property set, or an error naming the offending property.
    pub fn producer_properties(&self) -> Result<BTreeMap<String, String>, String> {
        let mut props: BTreeMap<String, String> = DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (raw_key, value) in &self.properties {
            // librdkafka names use dots and never underscores; environment variables
            // cannot hold dots, so `RELAY__SINK__KAFKA__PROPERTIES__SASL_PASSWORD`
            // arrives as `sasl_password` and means `sasl.password`.
            let key = &raw_key.replace('_', ".");
            if let Some((_, want, why)) = LOCKED.iter().find(|(k, _, _)| k == key) {
                if value != want {
                    return Err(format!(
                        "sink.kafka.properties.{key}: must be {want:?} (got {value:?}): {why}"
                    ));
                }
            }
            if key == "bootstrap.servers" {
                return Err(
                    "sink.kafka.properties.bootstrap.servers: set sink.kafka.brokers instead"
                        .into(),
                );
            }
            props.insert(key.to_string(), value.clone());
        }
        for (k, v, _) in LOCKED {
            props.insert(k.to_string(), v.to_string());
        }
        if self.brokers.trim().is_empty() {
            return Err("sink.kafka.brokers: must name at least one host:port".into());
        }
        props.insert("bootstrap.servers".into(), self.brokers.clone());
        Ok(props)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(props: &[(&str, &str)]) -> KafkaConfig {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            circuit_breaker: Default::default(),
            exactly_once: false,
            transactional_id: String::new(),
            progress_topic: default_progress_topic(),
            transaction_interval: default_transaction_interval(),
        }
    }

    #[test]
    fn passes_user_properties_through_and_locks_ordering_ones() {
        let props = config(&[
            ("compression.type", "lz4"),
            ("linger.ms", "20"),
            ("acks", "all"),
        ])
        .producer_properties()
        .unwrap();
        assert_eq!(props["compression.type"], "lz4");
        assert_eq!(props["linger.ms"], "20");
        assert_eq!(props["enable.idempotence"], "true");
        assert_eq!(props["bootstrap.servers"], "127.0.0.1:9092");
        assert_eq!(props["message.timeout.ms"], "0");
        assert_eq!(props["partitioner"], "murmur2_random");
        assert_eq!(props["socket.keepalive.enable"], "true");
    }

    #[test]
    fn the_partitioner_can_be_set_for_topics_written_with_another_one() {
        let props = config(&[("partitioner", "consistent_random")])
            .producer_properties()
            .unwrap();
        assert_eq!(props["partitioner"], "consistent_random");
    }

    #[test]
    fn underscores_stand_for_dots_so_environment_variables_can_set_any_property() {
        let props = config(&[
            ("sasl_password", "s3cret"),
            ("security_protocol", "SASL_SSL"),
        ])
        .producer_properties()
        .unwrap();
        assert_eq!(props["sasl.password"], "s3cret");
        assert_eq!(props["security.protocol"], "SASL_SSL");
        let err = config(&[("enable_idempotence", "false")])
            .producer_properties()
            .unwrap_err();
        assert!(err.contains("enable.idempotence"), "{err}");
    }

    #[test]
    fn rejects_weakening_the_ordering_guarantee() {
        let err = config(&[("enable.idempotence", "false")])
            .producer_properties()
            .unwrap_err();
        assert!(
            err.starts_with("sink.kafka.properties.enable.idempotence: must be \"true\""),
            "{err}"
        );
        let err = config(&[("acks", "1")]).producer_properties().unwrap_err();
        assert!(err.contains("acks"), "{err}");
        // librdkafka's default, 5, lets a request overtake a failed one
        // (tests/kafka_first_request.rs).
        assert_eq!(
            config(&[]).producer_properties().unwrap()["max.in.flight.requests.per.connection"],
            "1"
        );
        let err = config(&[("max.in.flight.requests.per.connection", "5")])
            .producer_properties()
            .unwrap_err();
        assert!(err.contains("KAFKA-15591"), "{err}");
    }
}
