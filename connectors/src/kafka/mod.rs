//! Kafka connector: an idempotent librdkafka producer.
//!
//! Order per aggregate comes from three things together: the relay accepts batches in
//! commit order, the record key is the aggregate id (so one aggregate maps to one
//! partition), and the idempotent producer (`enable.idempotence`, `acks=all`,
//! `enable.gapless.guarantee`, one request in flight) keeps per-partition order through
//! its own retries.
//! A full local queue makes `accept` wait and retry the *same* record before the next
//! one, so waiting never reorders.

mod circuits;
mod config;
mod context;
mod delivery;
mod error;
mod sink;
mod stats;
mod transactional;

pub use config::KafkaConfig;
pub use error::classify;
pub use sink::KafkaPublisher;
pub use transactional::KafkaTransactionalPublisher;
