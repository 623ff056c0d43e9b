//! outbox-relay: PostgreSQL transactional outbox → Kafka, in commit order per aggregate.
//!
//! - [`config`]: file + environment configuration, validated at start.
//! - [`source`]: database preparation (wal_level, publication, slot) and heartbeats.
//! - [`outbox`]: rows and logical messages → events, routes, dead letters.
//! - [`pipeline`]: sessions, batching, the in-flight budget, acknowledgement.
//! - [`state`]: the relay's durable progress record in the source database.
//! - [`telemetry`]: Prometheus metrics, health endpoints, logs.
//! - [`check`]: the `check` command.

pub mod check;
pub mod cli;
pub mod config;
pub mod error;
pub mod outbox;
pub mod parked;
pub mod pipeline;
pub mod source;
pub mod state;
pub mod telemetry;

pub use error::RelayError;
