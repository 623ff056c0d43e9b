//! `state`: the relay's own durable state in the source database.

use serde::{Deserialize, Serialize};

use super::{err, ConfigError};

/// `state.mode`
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StateMode {
    /// Use the state tables if they exist or can be created; otherwise warn once and run
    /// without them (replays after PostgreSQL restarts, as with a slot alone).
    #[default]
    Auto,
    /// Stop with an error if the state tables cannot be used.
    Required,
    /// Never touch them (a role without write access).
    Off,
}

/// `state`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    pub mode: StateMode,
    /// Schema of the state tables (`<schema>.progress`): created if missing, unless the
    /// role may not (then create it with the SQL in the README's "State tables").
    pub schema: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            mode: StateMode::Auto,
            schema: "outbox_relay".into(),
        }
    }
}

impl StateConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.mode != StateMode::Off && self.schema.is_empty() {
            return Err(err("state.schema: must not be empty"));
        }
        Ok(())
    }
}
