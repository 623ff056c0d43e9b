//! Decoder for PostgreSQL's `pgoutput` logical replication protocol.
//!
//! Pure: bytes in, typed messages out. No I/O, no panics on any input.

pub mod lsn;

pub use lsn::Lsn;
