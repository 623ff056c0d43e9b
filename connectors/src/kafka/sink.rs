//! The Kafka publisher.

use std::time::Duration;

use futures::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use super::context::RelayKafkaContext;
use super::{classify, KafkaConfig};
use crate::{Delivery, ErrorClass, EventOutcome, OutboxEvent, PublishError, Publisher};

/// How long to wait before offering a record again when librdkafka's queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(2);

pub struct KafkaPublisher {
    producer: FutureProducer<RelayKafkaContext>,
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
        let producer: FutureProducer<RelayKafkaContext> = client
            .create_with_context(RelayKafkaContext::default())
            .map_err(|e| {
                PublishError::new(
                    ErrorClass::Fatal,
                    "config",
                    format!("sink.kafka: cannot create the producer: {e}"),
                )
            })?;
        Ok(KafkaPublisher { producer })
    }

    /// Hands one record to librdkafka, waiting while its queue is full.
    async fn enqueue(&self, event: &OutboxEvent) -> Result<DeliveryFuture, PublishError> {
        let mut headers = OwnedHeaders::new_with_capacity(event.headers.len());
        for (key, value) in &event.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_ref()),
            });
        }
        let mut record = FutureRecord::to(&event.destination)
            .key(event.aggregate_id.as_bytes())
            .timestamp(event.timestamp_ms)
            .headers(headers);
        if let Some(payload) = &event.payload {
            record = record.payload(payload.as_ref());
        }
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((err, _)) => return Err(classify(&err)),
            }
        }
    }
}

#[async_trait::async_trait]
impl Publisher for KafkaPublisher {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn validate_destination(&self, topic: &str) -> Result<(), String> {
        // Kafka's own rule (Topic.validate): 1 to 249 of [a-zA-Z0-9._-], not "." or "..".
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

    async fn accept(&self, batch: Vec<OutboxEvent>) -> Result<Delivery, PublishError> {
        let mut pending = Vec::with_capacity(batch.len());
        for event in batch {
            let delivery = self.enqueue(&event).await;
            pending.push((event, delivery));
        }
        Ok(async move {
            let mut outcomes = Vec::with_capacity(pending.len());
            for (event, delivery) in pending {
                let result = match delivery {
                    Err(e) => Err(e),
                    Ok(fut) => match fut.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((err, _message))) => Err(classify(&err)),
                        Err(_canceled) => Err(PublishError::new(
                            ErrorClass::Fatal,
                            "producer_closed",
                            "the Kafka producer was closed before delivery was confirmed",
                        )),
                    },
                };
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

    async fn probe(&self, timeout: Duration) -> Result<(), PublishError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout))
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
}
