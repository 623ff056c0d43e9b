//! `ha`: standby replicas and leader election.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{err, ConfigError};

/// `ha`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HaConfig {
    /// Run as one of several replicas of this slot: only the holder of the slot's
    /// leadership lock (a PostgreSQL session advisory lock) streams and publishes; the
    /// others wait as standbys and take over when it dies or loses its database session.
    pub enabled: bool,
    /// The leader renews its lease by using its lock session this often and stops (exits
    /// with code 3) if it could not for `lease_ms`; PostgreSQL ends a lock session that
    /// stays silent for twice that, releasing the lock to a standby. So a leader that
    /// froze or lost its database stops publishing before a standby can start.
    #[serde(rename = "lease_ms", with = "outbox_connectors::duration_ms")]
    pub lease: Duration,
    /// How often a standby tries to take the lock.
    #[serde(rename = "poll_interval_ms", with = "outbox_connectors::duration_ms")]
    pub poll_interval: Duration,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            enabled: false,
            lease: Duration::from_millis(3_000),
            poll_interval: Duration::from_millis(500),
        }
    }
}

impl HaConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.lease < Duration::from_millis(1_000) {
            return Err(err(
                "ha.lease_ms: must be at least 1000 (PostgreSQL's timeouts that release the lock work in whole seconds)",
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(err("ha.poll_interval_ms: must be at least 1"));
        }
        Ok(())
    }
}
