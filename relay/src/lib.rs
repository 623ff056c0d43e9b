//! outbox-relay: PostgreSQL transactional outbox → Kafka, SNS or SQS, in commit order per
//! aggregate.
//!
//! - [`config`]: file + environment configuration, validated at start.
//! - [`source`]: database preparation (wal_level, publication, slot) and heartbeats.
//! - [`outbox`]: rows and logical messages → events, routes, dead letters.
//! - [`pipeline`]: sessions, batching, the in-flight budget, acknowledgement.
//! - [`state`]: the relay's durable progress record in the source database.
//! - [`telemetry`]: Prometheus metrics, health endpoints, logs.
//! - [`check`], [`status`], [`parked`]: the on-call commands.

pub mod check;
pub mod cli;
pub mod config;
pub mod error;
pub mod leader;
pub mod outbox;
pub mod parked;
pub mod pipeline;
pub mod source;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod workers;

pub use error::RelayError;
