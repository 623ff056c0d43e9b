//! The Kafka publisher.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{
    BaseRecord, DeliveryFuture, FutureProducer, FutureRecord, Producer, ThreadedProducer,
};

use super::circuits::KafkaCircuits;
use super::context::RelayKafkaContext;
use super::delivery::BatchDelivery;
use super::stats::StatsCell;
use super::{classify, KafkaConfig};
use crate::policy::CircuitReport;
use crate::{Delivery, ErrorClass, EventOutcome, OutboxEvent, PublishError, Publisher};

/// How long to wait before offering a record again when librdkafka's queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(2);

/// How often open circuits are checked for a due probe.
const PROBE_TICK: Duration = Duration::from_millis(250);
/// How long a probe's metadata request may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct KafkaPublisher {
    /// Delivery reports go to one state per batch (`delivery.rs`).
    producer: Arc<ThreadedProducer<RelayKafkaContext>>,
    circuits: Arc<KafkaCircuits>,
    prober: Option<tokio::task::JoinHandle<()>>,
    stats: StatsCell,
}

impl Drop for KafkaPublisher {
    fn drop(&mut self) {
        if let Some(p) = &self.prober {
            p.abort();
        }
    }
}

impl KafkaPublisher {
    pub fn new(config: &KafkaConfig) -> Result<Self, PublishError> {
        let props = config
            .producer_properties()
            .map_err(|e| PublishError::new(ErrorClass::Fatal, "config", e))?;
        let mut client = ClientConfig::new();
        for (k, v) in &props {
            client.set(k, v);
        }
        let circuits = Arc::new(KafkaCircuits::new(config.circuit_breaker.settings()));
        let stats = StatsCell::default();
        let producer: ThreadedProducer<RelayKafkaContext> = client
            .create_with_context(RelayKafkaContext::new(circuits.clone(), stats.clone()))
            .map_err(|e| {
                PublishError::new(
                    ErrorClass::Fatal,
                    "config",
                    format!("sink.kafka: cannot create the producer: {e}"),
                )
            })?;
        let producer = Arc::new(producer);
        // Outside a runtime (unit tests of the configuration) there is nothing to probe.
        let prober = (config.circuit_breaker.settings().is_some()
            && tokio::runtime::Handle::try_current().is_ok())
        .then(|| tokio::spawn(probe_open_circuits(producer.clone(), circuits.clone())));
        Ok(KafkaPublisher {
            producer,
            circuits,
            prober,
            stats,
        })
    }

    /// Hands record `index` of `batch` to librdkafka, waiting while its queue is full; a
    /// record it refuses is settled with the refusal.
    async fn enqueue(&self, event: &OutboxEvent, batch: &Arc<BatchDelivery>, index: usize) {
        let headers = headers_of(event);
        let mut record = BaseRecord::with_opaque_to(&event.destination, batch.slot(index))
            .key(event.aggregate_id.as_bytes())
            .timestamp(event.timestamp_ms)
            .headers(headers);
        if let Some(payload) = &event.payload {
            record = record.payload(payload.as_ref());
        }
        if let Some(partition) = event.partition {
            record = record.partition(partition);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((err, back)) => {
                    // The slot goes with the record: settle it before it drops.
                    batch.settle(index, Err(classify(&err)));
                    drop(back);
                    return;
                }
            }
        }
    }
}

/// The event's headers as librdkafka takes them.
fn headers_of(event: &OutboxEvent) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(event.headers.len());
    for (key, value) in &event.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_ref()),
        });
    }
    headers
}

/// Kafka's own rule for topic names (Topic.validate): 1 to 249 of [a-zA-Z0-9._-], not
/// "." or "..".
pub(super) fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > 249 {
        return Err(format!("topic {topic:?} must be 1 to 249 characters long"));
    }
    if topic == "." || topic == ".." {
        return Err(format!("topic {topic:?} is not allowed"));
    }
    if let Some(bad) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic {topic:?} contains {bad:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// Hands one record to librdkafka, waiting while its queue is full (shared with the
/// transactional publisher).
pub(super) async fn enqueue(
    producer: &FutureProducer<RelayKafkaContext>,
    event: &OutboxEvent,
) -> Result<DeliveryFuture, PublishError> {
    let headers = headers_of(event);
    let mut record = FutureRecord::to(&event.destination)
        .key(event.aggregate_id.as_bytes())
        .timestamp(event.timestamp_ms)
        .headers(headers);
    if let Some(payload) = &event.payload {
        record = record.payload(payload.as_ref());
    }
    if let Some(partition) = event.partition {
        record = record.partition(partition);
    }
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
            }
            Err((err, _)) => return Err(classify(&err)),
        }
    }
}

#[async_trait::async_trait]
impl Publisher for KafkaPublisher {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn validate_destination(&self, topic: &str) -> Result<(), String> {
        validate_topic(topic)
    }

    async fn accept(&self, batch: Vec<OutboxEvent>) -> Result<Delivery, PublishError> {
        let mut last_topic: Option<&Arc<str>> = None;
        for event in &batch {
            if last_topic.is_none_or(|t| !Arc::ptr_eq(t, &event.destination)) {
                self.circuits.track(&event.destination);
                last_topic = Some(&event.destination);
            }
        }
        let delivery = BatchDelivery::new(batch.len());
        for (index, event) in batch.iter().enumerate() {
            self.enqueue(event, &delivery, index).await;
        }
        let circuits = self.circuits.clone();
        let accepted_at = tokio::time::Instant::now();
        Ok(async move {
            let results = delivery.wait().await;
            let mut outcomes = Vec::with_capacity(batch.len());
            let mut delivered_to: Option<Arc<str>> = None;
            for (event, result) in batch.into_iter().zip(results) {
                // One success per run of a topic is all its breaker needs.
                if result.is_ok()
                    && delivered_to
                        .as_ref()
                        .is_none_or(|t| !Arc::ptr_eq(t, &event.destination))
                {
                    circuits.on_delivered(&event.destination, accepted_at);
                    delivered_to = Some(event.destination.clone());
                }
                outcomes.push(EventOutcome { event, result });
            }
            outcomes
        }
        .boxed())
    }

    async fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| PublishError::new(ErrorClass::Fatal, "kafka", e.to_string()))?
            .map_err(|e| classify(&e))
    }

    fn circuits(&self) -> Vec<CircuitReport> {
        self.circuits.reports()
    }

    fn probes_open_circuits(&self) -> bool {
        self.prober.is_some()
    }

    fn client_gauges(&self) -> Vec<crate::ClientGauge> {
        self.stats.get()
    }

    async fn probe(&self, timeout: Duration) -> Result<(), PublishError> {
        probe_metadata(self.producer.clone(), timeout).await
    }
}

/// A producer whose client can be asked for metadata (both Kafka publishers' producers).
pub(super) trait MetadataSource: Send + Sync + 'static {
    fn metadata(&self, topic: Option<&str>, timeout: Duration) -> KafkaResult<Metadata>;
}

impl MetadataSource for ThreadedProducer<RelayKafkaContext> {
    fn metadata(&self, topic: Option<&str>, timeout: Duration) -> KafkaResult<Metadata> {
        self.client().fetch_metadata(topic, timeout)
    }
}

impl MetadataSource for FutureProducer<RelayKafkaContext> {
    fn metadata(&self, topic: Option<&str>, timeout: Duration) -> KafkaResult<Metadata> {
        self.client().fetch_metadata(topic, timeout)
    }
}

/// Whether the brokers answer a metadata request within `timeout` (the health probe of
/// both Kafka publishers).
pub(super) async fn probe_metadata<P: MetadataSource>(
    producer: Arc<P>,
    timeout: Duration,
) -> Result<(), PublishError> {
    tokio::task::spawn_blocking(move || producer.metadata(None, timeout))
        .await
        .map_err(|e| PublishError::new(ErrorClass::Fatal, "kafka", e.to_string()))?
        .map(|_| ())
        .map_err(|e| {
            PublishError::new(
                ErrorClass::Retryable,
                "unreachable",
                format!("Kafka brokers did not answer a metadata request: {e}"),
            )
        })
}

/// Probes each open circuit whose cool-down has passed with a metadata request for its
/// topic: an answer closes the circuit, none opens it again for a longer cool-down.
async fn probe_open_circuits(
    producer: Arc<ThreadedProducer<RelayKafkaContext>>,
    circuits: Arc<KafkaCircuits>,
) {
    let mut tick = tokio::time::interval(PROBE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Concurrently: a probe may take its whole timeout while the brokers are down.
        let probes = circuits.due_probes().into_iter().map(|topic| {
            let producer = producer.clone();
            let circuits = circuits.clone();
            async move {
                let sent_at = tokio::time::Instant::now();
                let name = topic.to_string();
                let ok = tokio::task::spawn_blocking(move || {
                    producer
                        .metadata(Some(&name), PROBE_TIMEOUT)
                        .is_ok_and(|m| {
                            m.topics()
                                .iter()
                                .any(|t| t.name() == name && t.error().is_none())
                        })
                })
                .await
                .unwrap_or(false);
                circuits.probed(&topic, ok, sent_at);
            }
        });
        futures::future::join_all(probes).await;
    }
}
