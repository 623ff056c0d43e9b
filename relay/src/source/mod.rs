//! The PostgreSQL side: preparing the database (wal_level, outbox tables, publication,
//! slot) and keeping an idle slot moving.

pub mod heartbeat;
pub mod setup;
pub mod shards;
pub mod slot;
pub mod slot_metrics;
pub mod wal_position;
