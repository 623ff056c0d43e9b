//! `sink`: the broker.

use outbox_connectors::kafka::KafkaConfig;
use serde::Deserialize;

use super::{err, ConfigError};

/// `sink.kind`
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    Kafka,
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
            SinkKind::Null => {}
        }
        Ok(())
    }
}
