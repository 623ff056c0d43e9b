//! `sink`: the broker.
//!
//! The file keeps the shape `sink: {kind: kafka, kafka: {...}}`; deserializing turns it
//! into a [`SinkConfig`] that holds exactly the chosen connector's settings, so no code
//! after loading asks "is `sink.kafka` there?" again.

use outbox_connectors::aws::AwsConfig;
use outbox_connectors::kafka::KafkaConfig;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

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

/// `sink`: the connector named by `sink.kind`, with its settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "SinkSection")]
pub enum SinkConfig {
    /// `sink.kafka`
    Kafka(KafkaConfig),
    /// `sink.sns`: region, endpoint, FIFO, concurrency, retries; see the README.
    Sns(AwsConfig),
    /// `sink.sqs`: the same keys as `sink.sns`.
    Sqs(AwsConfig),
    /// Acknowledges everything immediately.
    Null,
}

/// The `sink` section as written: the kind and one section per connector. Sections of
/// other kinds are allowed and ignored, so that `RELAY__SINK__KIND=null` can switch a
/// file that configures Kafka to the null sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkSection {
    kind: SinkKind,
    #[serde(default)]
    kafka: Option<KafkaConfig>,
    #[serde(default)]
    sns: Option<AwsConfig>,
    #[serde(default)]
    sqs: Option<AwsConfig>,
}

/// The section that `sink.kind` names is absent.
#[derive(Debug, thiserror::Error)]
#[error("sink.{key}: required when sink.kind is {key}")]
pub struct MissingSinkSection {
    key: &'static str,
}

impl TryFrom<SinkSection> for SinkConfig {
    type Error = MissingSinkSection;

    fn try_from(s: SinkSection) -> Result<Self, Self::Error> {
        let missing = |key| MissingSinkSection { key };
        Ok(match s.kind {
            SinkKind::Kafka => SinkConfig::Kafka(s.kafka.ok_or_else(|| missing("kafka"))?),
            SinkKind::Sns => SinkConfig::Sns(s.sns.ok_or_else(|| missing("sns"))?),
            SinkKind::Sqs => SinkConfig::Sqs(s.sqs.ok_or_else(|| missing("sqs"))?),
            SinkKind::Null => SinkConfig::Null,
        })
    }
}

/// Written back in the shape it is read: `{kind: kafka, kafka: {...}}`.
impl Serialize for SinkConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self {
            SinkConfig::Kafka(c) => {
                map.serialize_entry("kind", "kafka")?;
                map.serialize_entry("kafka", c)?;
            }
            SinkConfig::Sns(c) => {
                map.serialize_entry("kind", "sns")?;
                map.serialize_entry("sns", c)?;
            }
            SinkConfig::Sqs(c) => {
                map.serialize_entry("kind", "sqs")?;
                map.serialize_entry("sqs", c)?;
            }
            SinkConfig::Null => map.serialize_entry("kind", "none")?,
        }
        map.end()
    }
}

impl SinkConfig {
    pub fn kind(&self) -> SinkKind {
        match self {
            SinkConfig::Kafka(_) => SinkKind::Kafka,
            SinkConfig::Sns(_) => SinkKind::Sns,
            SinkConfig::Sqs(_) => SinkKind::Sqs,
            SinkConfig::Null => SinkKind::Null,
        }
    }

    /// The sink's circuit breaker settings (`sink.<kind>.circuit_breaker`), if it has one.
    pub fn circuit_breaker(&self) -> Option<&outbox_connectors::policy::BreakerConfig> {
        match self {
            SinkConfig::Kafka(kafka) => Some(&kafka.circuit_breaker),
            SinkConfig::Sns(aws) | SinkConfig::Sqs(aws) => Some(&aws.circuit_breaker),
            SinkConfig::Null => None,
        }
    }

    /// `circuit_breaker.on_open: park`: events for an open circuit go to parking.
    pub fn parks_on_open(&self) -> bool {
        self.circuit_breaker().is_some_and(|b| b.parks())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match self {
            SinkConfig::Kafka(kafka) => kafka.producer_properties().map(drop).map_err(err),
            SinkConfig::Sns(sns) => sns.validate("sink.sns").map_err(err),
            SinkConfig::Sqs(sqs) => sqs.validate("sink.sqs").map_err(err),
            SinkConfig::Null => Ok(()),
        }
    }
}
