//! From the replication stream to acknowledged events.
//!
//! One session = one replication connection and one publisher. The session owns the
//! sockets; its flow (reader + acker) decodes, maps and hands batches to the publisher in
//! commit order, awaits their delivery in the same order and advances the flush
//! watermark; the status task reports the watermark to PostgreSQL. A retryable failure ends the session and the supervisor
//! starts a new one, which resumes at the slot's confirmed flush LSN.

mod ack;
mod budget;
mod bulkhead;
mod cleanup;
mod diversion;
mod flow;
mod pacing;
mod progress;
mod reader;
mod redriver;
mod rejections;
mod session;
mod snapshot;
mod status;
mod supervisor;
#[cfg(test)]
mod tests;

pub use progress::Progress;
pub use supervisor::{build_publisher, run};
