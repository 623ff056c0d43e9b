//! Configuration: a YAML or TOML file overlaid by `RELAY__SECTION__KEY` environment
//! variables, validated once at start with errors that name the offending key.
//!
//! The doc comments on the structs below are the configuration reference; the README's
//! table names the same keys (relay/tests/config_reference compares them).

mod ha;
mod outbox;
mod render;
mod runtime;
mod secret;
mod sink;
mod source;
mod state;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use ha::HaConfig;
pub use outbox::{
    CleanupPolicy, CloudEventsConfig, CloudEventsMode, ColumnNames, HeaderColumn,
    InvalidEventPolicy, MessagesConfig, OutboxConfig, RouteConfig, RouteOverride, TableConfig,
};
pub use render::render;
pub use runtime::{LogFormat, OtlpConfig, OtlpTarget, PipelineConfig, TelemetryConfig};
pub use secret::Secret;
pub use sink::{SinkConfig, SinkKind};
pub use source::{SlotLostPolicy, SnapshotMode, SourceConfig};
pub use state::{StateConfig, StateMode};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The PostgreSQL database whose outbox tables are relayed.
    pub source: SourceConfig,
    /// Which tables and logical messages are outbox events, and where they go.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// The broker.
    pub sink: SinkConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The relay's own durable state (progress) in the source database.
    #[serde(default)]
    pub state: StateConfig,
    /// Standby replicas and leader election.
    #[serde(default)]
    pub ha: HaConfig,
}

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Loads `file` (if any) and then the `RELAY__…` environment variables on top.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let config: Config = raw(file, env)?
            .try_deserialize()
            .map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The log format and level as far as they can be read from a configuration that
    /// [`Config::load`] rejected, so that the rejection itself is logged the way the
    /// operator asked for (JSON lines stay JSON); the defaults where they cannot be read.
    pub fn log_settings_of_invalid(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> (LogFormat, String) {
        let defaults = TelemetryConfig::default();
        let Ok(raw) = raw(file, env) else {
            return (defaults.log_format, defaults.log_level);
        };
        (
            raw.get("telemetry.log_format")
                .unwrap_or(defaults.log_format),
            raw.get("telemetry.log_level").unwrap_or(defaults.log_level),
        )
    }

    /// Checks that need more than one field, or a field's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.source.validate()?;
        self.outbox.validate()?;
        self.sink.validate()?;
        self.pipeline.validate()?;
        self.telemetry.validate()?;
        self.state.validate()?;
        self.ha.validate()?;
        if self.outbox.on_invalid == InvalidEventPolicy::Park && self.state.mode == StateMode::Off {
            return Err(err(
                "outbox.on_invalid: park needs the state tables, but state.mode is off; set on_invalid to dead_letter or halt, or enable state",
            ));
        }
        if self.pipeline.destination_share < 1.0 && !self.sink.parks_on_open() {
            return Err(err(
                "pipeline.destination_share below 1 parks a destination's events beyond its share, which needs sink.<kind>.circuit_breaker.on_open: park",
            ));
        }
        if let SinkConfig::Kafka(k) = &self.sink {
            if k.exactly_once && self.sink.parks_on_open() {
                return Err(err(
                    "sink.kafka.exactly_once: cannot be combined with circuit_breaker.on_open: park (a broker outage aborts the open transaction and stalls; set on_open to stall)",
                ));
            }
        }
        if self.sink.parks_on_open() && self.state.mode == StateMode::Off {
            return Err(err(
                "circuit_breaker.on_open: park needs the state tables, but state.mode is off; set on_open to stall, or enable state",
            ));
        }
        self.validate_outbox_for_sink()?;
        self.validate_shards()?;
        if self.source.may_snapshot() && self.state.mode == StateMode::Off {
            return Err(err(
                "source.snapshot / source.on_slot_lost: a snapshot needs the state tables (they record that it is incomplete, so a crash during it leads to a new one), but state.mode is off",
            ));
        }
        Ok(())
    }
}

impl Config {
    /// What cannot be split by the shards' row filters.
    fn validate_shards(&self) -> Result<(), ConfigError> {
        if self.source.shards <= 1 {
            return Ok(());
        }
        // Logical messages pass no row filter: every shard's slot carries all of them.
        // Reading them from one shard only would put an aggregate that writes both rows
        // and messages in two streams, and its order would be lost; so no messages.
        if self.outbox.messages.is_some() {
            return Err(err(format!(
                "outbox.messages: cannot be combined with source.shards {} (logical messages are not split by the publications' row filters, so an aggregate's messages and rows would be in different shards and their order lost); write outbox rows instead, or set source.shards: 1",
                self.source.shards
            )));
        }
        // A snapshot reads the whole tables, not one shard's rows: each shard would
        // publish every row.
        if self.source.may_snapshot() {
            return Err(err(format!(
                "source.snapshot / source.on_slot_lost: snapshots cannot be combined with source.shards {} (each shard would publish every row of the tables); set source.snapshot: never and source.on_slot_lost: halt",
                self.source.shards
            )));
        }
        Ok(())
    }

    /// Outbox features that only some sinks can carry.
    fn validate_outbox_for_sink(&self) -> Result<(), ConfigError> {
        if !matches!(self.sink, SinkConfig::Kafka(_) | SinkConfig::Null) {
            if let Some(i) = self
                .outbox
                .tables
                .iter()
                .position(|t| t.partition_column.is_some())
            {
                return Err(err(format!(
                    "outbox.tables[{i}].partition_column: only Kafka has partitions (sink.kind is {})",
                    format!("{:?}", self.sink.kind()).to_ascii_lowercase()
                )));
            }
        }
        if let (Some(_), SinkConfig::Sns(aws) | SinkConfig::Sqs(aws)) =
            (&self.outbox.cloudevents, &self.sink)
        {
            if !aws.raw_payload {
                return Err(err(
                    "outbox.cloudevents: needs sink.<kind>.raw_payload: true (the relay's JSON envelope would wrap the CloudEvent's data, which its attributes do not describe)",
                ));
            }
        }
        Ok(())
    }
}

/// The file overlaid by the `RELAY__…` variables, not yet deserialized.
fn raw(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<config::Config, ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError(format!(
                "file {} does not exist",
                path.display()
            )));
        }
        builder = builder.add_source(config::File::from(path));
    }
    let env: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("RELAY__"))
        .collect();
    // Values stay text: with `try_parsing` the config crate turned `007` into the
    // number 7 and `True` into `true` before serde saw them, so a password arrived
    // rewritten. Numeric and boolean keys still work because the config crate's
    // deserializer parses a string when the target type is a number or a bool.
    builder = builder.add_source(
        config::Environment::with_prefix("RELAY")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(false)
            .source(Some(env)),
    );
    builder.build().map_err(|e| ConfigError(e.to_string()))
}

pub(crate) fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

#[cfg(test)]
mod tests;
