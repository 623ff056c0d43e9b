//! `source`: the PostgreSQL connection, slot and publication.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{err, ConfigError, Secret};

/// `source`: the database to read.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Host name or IP address of the primary.
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub database: String,
    /// A role with the REPLICATION attribute (and CREATE on the database if the relay
    /// creates the publication).
    pub user: String,
    /// Password for `user`; prefer `password_file` or `RELAY__SOURCE__PASSWORD`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file holding the password (trailing newline ignored), e.g. a mounted Secret.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `disable`, `prefer`, `require`, `verify-ca` or `verify-full`, as in libpq.
    #[serde(default = "default_sslmode")]
    pub sslmode: String,
    /// CA certificate (PEM) for `verify-ca` / `verify-full`; system roots when absent.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    /// Logical replication slot name.
    #[serde(default = "default_slot")]
    pub slot: String,
    /// Publication name.
    #[serde(default = "default_publication")]
    pub publication: String,
    /// Create the slot at start when it does not exist. With `false` the relay only
    /// verifies it (least-privilege deployments) and stops if it is missing.
    #[serde(default = "yes")]
    pub create_slot: bool,
    /// Create the publication (`FOR TABLE <outbox tables> WITH (publish = 'insert')`) when
    /// missing; with `false` it must exist and cover the outbox tables.
    #[serde(default = "yes")]
    pub create_publication: bool,
    /// pgoutput protocol version: 1 or 2.
    #[serde(default = "default_proto")]
    pub proto_version: u32,
    /// How often a standby status update reports progress to the server.
    #[serde(
        default = "default_status_interval",
        rename = "status_interval_ms",
        with = "outbox_connectors::duration_ms"
    )]
    pub status_interval: Duration,
    #[serde(
        default = "default_connect_timeout",
        rename = "connect_timeout_ms",
        with = "outbox_connectors::duration_ms"
    )]
    pub connect_timeout: Duration,
    /// Emit a non-transactional logical message this often (0 = never) so the slot can
    /// advance on databases where nothing the publication covers is written.
    #[serde(
        default = "default_heartbeat_interval",
        rename = "heartbeat_interval_ms",
        with = "outbox_connectors::duration_ms"
    )]
    pub heartbeat_interval: Duration,

    // Authentication policy (docs/security.md).
    /// libpq's `require_auth`: the methods the server may use, e.g. `scram-sha-256`
    /// or `!password,!md5`; empty allows all.
    #[serde(default)]
    pub require_auth: String,
    /// `disable`, `prefer` or `require`, as in libpq: bind SCRAM to the TLS session.
    #[serde(default = "default_channel_binding")]
    pub channel_binding: String,
    /// Answer a cleartext or MD5 password request even when the server is not
    /// authenticated by a verified certificate (plaintext, or sslmode prefer/require).
    #[serde(default)]
    pub allow_password_without_verified_tls: bool,
    // Dead connections: a server whose packets silently vanish.
    /// While streaming, the longest wait for any byte from the walsender before the
    /// session fails and reconnects (0 = wait forever). After half of it in silence the
    /// status updates ask the server for a keepalive. Must exceed half the server's
    /// `wal_sender_timeout` (a busy walsender answers only that often) and be at least
    /// four status intervals.
    #[serde(
        default = "default_receive_timeout",
        rename = "receive_timeout_ms",
        with = "outbox_connectors::duration_ms"
    )]
    pub receive_timeout: Duration,
    /// `TCP_USER_TIMEOUT` on every PostgreSQL connection (Linux): sent data unacknowledged
    /// this long drops the connection (0 = the OS default, about 15 minutes).
    #[serde(
        default = "default_tcp_user_timeout",
        rename = "tcp_user_timeout_ms",
        with = "outbox_connectors::duration_ms"
    )]
    pub tcp_user_timeout: Duration,
    /// TCP keepalive on every PostgreSQL connection: idle time before the first probe
    /// (0 = keepalive off), time between probes, and unanswered probes before giving up.
    #[serde(
        default = "default_tcp_keepalive_idle",
        rename = "tcp_keepalive_idle_ms",
        with = "outbox_connectors::duration_ms"
    )]
    pub tcp_keepalive_idle: Duration,
    #[serde(
        default = "default_tcp_keepalive_interval",
        rename = "tcp_keepalive_interval_ms",
        with = "outbox_connectors::duration_ms"
    )]
    pub tcp_keepalive_interval: Duration,
    #[serde(default = "default_tcp_keepalive_count")]
    pub tcp_keepalive_count: u32,

    // Slot safety (README "Slot lifecycle").
    /// What to do when the slot existed (the relay's progress record for it is on this
    /// system) and is gone or invalidated: `halt` stops with an error naming the slot,
    /// the last delivered LSN and the operator's choices. `snapshot` creates a new slot
    /// and publishes the outbox rows still in the tables (README "Snapshots"), which
    /// repairs the gap when the rows are kept until delivered (`outbox.cleanup`).
    #[serde(default)]
    pub on_slot_lost: SlotLostPolicy,
    /// When the relay publishes the rows already in the outbox tables (Debezium's
    /// `snapshot.mode`): `never`; `initial`, when it creates the slot for the first
    /// time; `when_needed`, also when the slot was lost (as `on_slot_lost: snapshot`).
    #[serde(default)]
    pub snapshot: SnapshotMode,
    /// Create the slot with `FAILOVER` (PostgreSQL 17+) so it is synchronized to standbys
    /// and survives a failover; an older server refuses it with a clear error.
    #[serde(default)]
    pub slot_failover: bool,
    /// Split the outbox across this many slots and publications by a hash of the
    /// aggregate id (PostgreSQL 15+ row filters), read in parallel: shard i uses slot
    /// `<slot>_<i>` and publication `<publication>_<i>` (docs/scaling.md). 1 = one slot
    /// named `slot`, as without sharding.
    #[serde(default = "one")]
    pub shards: u32,
    /// Set on each shard's copy of the configuration ([`crate::config::Config::shard_configs`]),
    /// never read from the file.
    #[serde(skip)]
    pub shard: Option<crate::source::shards::Shard>,
}

/// `source.on_slot_lost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotLostPolicy {
    /// Stop: the events written while no slot existed are not in any WAL the relay can
    /// read; only the operator can reconcile them.
    #[default]
    Halt,
    /// Create a new slot with a snapshot and publish the rows in the outbox tables, then
    /// stream from the new slot.
    Snapshot,
}

/// `source.snapshot`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Only rows committed after the slot's creation are published.
    #[default]
    Never,
    /// The first start (no slot, no record of one) publishes the rows already there.
    Initial,
    /// `initial`, and a lost slot is repaired the same way.
    WhenNeeded,
}

impl SourceConfig {
    /// A lost slot is repaired by a snapshot rather than halting.
    pub fn snapshot_on_loss(&self) -> bool {
        self.on_slot_lost == SlotLostPolicy::Snapshot || self.snapshot == SnapshotMode::WhenNeeded
    }

    /// Whether this configuration ever snapshots (it then needs the state tables).
    pub fn may_snapshot(&self) -> bool {
        self.snapshot != SnapshotMode::Never || self.snapshot_on_loss()
    }
}

fn default_port() -> u16 {
    5432
}
fn default_sslmode() -> String {
    "prefer".into()
}
fn default_channel_binding() -> String {
    "prefer".into()
}
fn default_slot() -> String {
    "outbox_relay".into()
}
fn default_publication() -> String {
    "outbox_relay".into()
}
fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn default_proto() -> u32 {
    1
}
fn default_status_interval() -> Duration {
    Duration::from_millis(1000)
}
fn default_connect_timeout() -> Duration {
    Duration::from_millis(10_000)
}
fn default_heartbeat_interval() -> Duration {
    Duration::from_millis(30_000)
}
fn default_receive_timeout() -> Duration {
    Duration::from_millis(40_000)
}
fn default_tcp_user_timeout() -> Duration {
    Duration::from_millis(60_000)
}
fn default_tcp_keepalive_idle() -> Duration {
    Duration::from_millis(30_000)
}
fn default_tcp_keepalive_interval() -> Duration {
    Duration::from_millis(10_000)
}
fn default_tcp_keepalive_count() -> u32 {
    3
}

impl SourceConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.host.trim().is_empty() {
            return Err(err("source.host: must not be empty"));
        }
        if self.port == 0 {
            return Err(err("source.port: must be 1 to 65535"));
        }
        if self.database.is_empty() {
            return Err(err("source.database: must not be empty"));
        }
        if self.user.is_empty() {
            return Err(err("source.user: must not be empty"));
        }
        let sslmode = self
            .sslmode
            .parse::<outbox_pgwire::SslMode>()
            .map_err(|e| err(format!("source.sslmode: {e}")))?;
        self.validate_auth(sslmode)?;
        valid_identifier("source.slot", &self.slot, true)?;
        valid_identifier("source.publication", &self.publication, false)?;
        self.validate_shards()?;
        if !matches!(self.proto_version, 1 | 2) {
            return Err(err(format!(
                "source.proto_version: must be 1 or 2 (got {})",
                self.proto_version
            )));
        }
        if self.status_interval.is_zero() || self.status_interval > Duration::from_secs(60) {
            return Err(err("source.status_interval_ms: must be 1 to 60000"));
        }
        if !self.receive_timeout.is_zero() && self.receive_timeout < 4 * self.status_interval {
            return Err(err(format!(
                "source.receive_timeout_ms: must be 0 (off) or at least 4 × source.status_interval_ms ({} ms): the keepalive request goes out with a status update after half of it",
                (4 * self.status_interval).as_millis()
            )));
        }
        if !self.tcp_keepalive_idle.is_zero()
            && (self.tcp_keepalive_interval.is_zero() || self.tcp_keepalive_count == 0)
        {
            return Err(err(
                "source.tcp_keepalive_interval_ms and source.tcp_keepalive_count: must be at least 1 while keepalive is on (tcp_keepalive_idle_ms > 0)",
            ));
        }
        if self.password.is_some() && self.password_file.is_some() {
            return Err(err(
                "source.password and source.password_file: set only one",
            ));
        }
        Ok(())
    }

    /// Shard names add `_<index>` to the slot and publication names, and must still fit
    /// PostgreSQL's 63 characters.
    fn validate_shards(&self) -> Result<(), ConfigError> {
        use crate::source::shards::{shard_name, MAX_SHARDS};
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return Err(err(format!(
                "source.shards: must be 1 to {MAX_SHARDS} (got {})",
                self.shards
            )));
        }
        if self.shards > 1 {
            let last = self.shards - 1;
            valid_identifier(
                "source.slot (with its shard suffix)",
                &shard_name(&self.slot, last),
                true,
            )?;
            valid_identifier(
                "source.publication (with its shard suffix)",
                &shard_name(&self.publication, last),
                false,
            )?;
        }
        Ok(())
    }

    fn require_auth(&self) -> Result<outbox_pgwire::RequireAuth, ConfigError> {
        self.require_auth
            .parse()
            .map_err(|e| err(format!("source.require_auth: {e}")))
    }

    fn channel_binding(&self) -> Result<outbox_pgwire::ChannelBinding, ConfigError> {
        self.channel_binding
            .parse()
            .map_err(|e| err(format!("source.channel_binding: {e}")))
    }

    /// Combinations that can never connect are refused at start, as libpq does.
    fn validate_auth(&self, sslmode: outbox_pgwire::SslMode) -> Result<(), ConfigError> {
        self.require_auth()?;
        let binding = self.channel_binding()?;
        if binding == outbox_pgwire::ChannelBinding::Require
            && sslmode == outbox_pgwire::SslMode::Disable
        {
            return Err(err(
                "source.channel_binding: require needs TLS, but source.sslmode is disable",
            ));
        }
        Ok(())
    }

    /// The password from `password` or `password_file`.
    pub fn resolve_password(&self) -> Result<Option<Secret>, ConfigError> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                err(format!(
                    "source.password_file: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            return Ok(Some(Secret::new(text.trim_end_matches(['\r', '\n']))));
        }
        Ok(self.password.clone())
    }

    pub fn connect_options(&self) -> Result<outbox_pgwire::ConnectOptions, ConfigError> {
        Ok(outbox_pgwire::ConnectOptions {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password: self.resolve_password()?.map(|s| s.expose().to_owned()),
            dbname: self.database.clone(),
            sslmode: self
                .sslmode
                .parse()
                .map_err(|e| err(format!("source.sslmode: {e}")))?,
            sslrootcert: self.sslrootcert.clone(),
            application_name: "outbox-relay".into(),
            connect_timeout: self.connect_timeout,
            // Authentication policy.
            require_auth: self.require_auth()?,
            channel_binding: self.channel_binding()?,
            allow_password_without_verified_tls: self.allow_password_without_verified_tls,
            liveness: self.liveness(),
            max_message_len: outbox_pgwire::MAX_MESSAGE_LEN,
        })
    }

    /// The dead-connection settings, with 0 meaning off / OS default.
    fn liveness(&self) -> outbox_pgwire::Liveness {
        let set = |d: Duration| (!d.is_zero()).then_some(d);
        outbox_pgwire::Liveness {
            keepalive: set(self.tcp_keepalive_idle).map(|idle| outbox_pgwire::TcpKeepalive {
                idle: Some(idle),
                interval: set(self.tcp_keepalive_interval),
                retries: Some(self.tcp_keepalive_count),
            }),
            tcp_user_timeout: set(self.tcp_user_timeout),
            receive_timeout: set(self.receive_timeout),
        }
    }
}

/// Slot names are limited by PostgreSQL to lower-case letters, digits and underscores;
/// publication names are ordinary identifiers (we still keep them simple so they never
/// need quoting surprises).
fn valid_identifier(key: &str, value: &str, slot_rules: bool) -> Result<(), ConfigError> {
    let ok_char = |c: char| {
        if slot_rules {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
        } else {
            c.is_ascii_alphanumeric() || c == '_'
        }
    };
    if value.is_empty() || value.len() > 63 || !value.chars().all(ok_char) {
        let allowed = if slot_rules {
            "lower-case letters, digits and '_'"
        } else {
            "letters, digits and '_'"
        };
        return Err(err(format!(
            "{key}: {value:?} must be 1 to 63 characters of {allowed}"
        )));
    }
    Ok(())
}
