//! `sink`: the broker.

use outbox_connectors::aws::AwsConfig;
use outbox_connectors::kafka::KafkaConfig;
use serde::Deserialize;

use super::{err, ConfigError};

/// `sink.kind`
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    Kafka,
    /// Amazon SNS topics (destinations are topic ARNs).
    Sns,
    /// Amazon SQS queues (destinations are queue URLs).
    Sqs,
    /// Acknowledges everything immediately (benchmarks, dry runs).
    Null,
}

/// `sink`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub kind: SinkKind,
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    /// SNS settings (region, endpoint, FIFO, concurrency, retries); see the README.
    #[serde(default)]
    pub sns: Option<AwsConfig>,
    /// SQS settings, the same keys as `sns`.
    #[serde(default)]
    pub sqs: Option<AwsConfig>,
}

impl SinkConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match self.kind {
            SinkKind::Kafka => {
                let kafka = self
                    .kafka
                    .as_ref()
                    .ok_or_else(|| err("sink.kafka: required when sink.kind is kafka"))?;
                kafka.producer_properties().map_err(err)?;
            }
            SinkKind::Sns => self
                .sns
                .as_ref()
                .ok_or_else(|| err("sink.sns: required when sink.kind is sns"))?
                .validate("sink.sns")
                .map_err(err)?,
            SinkKind::Sqs => self
                .sqs
                .as_ref()
                .ok_or_else(|| err("sink.sqs: required when sink.kind is sqs"))?
                .validate("sink.sqs")
                .map_err(err)?,
            SinkKind::Null => {}
        }
        Ok(())
    }
}
