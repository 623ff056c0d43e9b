//! `sink`: the broker.

use outbox_connectors::aws::AwsConfig;
use outbox_connectors::kafka::KafkaConfig;
use serde::Deserialize;

use super::{err, ConfigError};

/// `sink.kind`
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(try_from = "Option<String>")]
pub enum SinkKind {
    Kafka,
    /// Amazon SNS topics (destinations are topic ARNs).
    Sns,
    /// Amazon SQS queues (destinations are queue URLs).
    Sqs,
    /// Acknowledges everything immediately (benchmarks, dry runs). Spelled `"null"`
    /// (quoted in YAML) or `none`.
    Null,
}

/// Why a `sink.kind` value is not one of the kinds.
#[derive(Debug, thiserror::Error)]
pub enum SinkKindError {
    /// YAML reads a bare `null`, `~` or an empty value as "no value", not as the word;
    /// treating that as the sink that discards everything would turn a forgotten value
    /// into silent data loss, so it is an error that says how to ask for it.
    #[error(
        "sink.kind: no value (YAML reads a bare null as no value); write kafka, sns, sqs, \"null\" (quoted) or none"
    )]
    Missing,
    #[error("sink.kind: unknown kind {0:?}; expected kafka, sns, sqs, \"null\" or none")]
    Unknown(String),
}

impl TryFrom<Option<String>> for SinkKind {
    type Error = SinkKindError;

    fn try_from(value: Option<String>) -> Result<Self, Self::Error> {
        match value.as_deref() {
            None => Err(SinkKindError::Missing),
            Some("kafka") => Ok(SinkKind::Kafka),
            Some("sns") => Ok(SinkKind::Sns),
            Some("sqs") => Ok(SinkKind::Sqs),
            Some("null" | "none") => Ok(SinkKind::Null),
            Some(other) => Err(SinkKindError::Unknown(other.to_string())),
        }
    }
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
