//! The relay's own durable state, kept in the source database next to the outbox.
//!
//! PostgreSQL persists a logical slot's confirmed position lazily (at checkpoints; on 15
//! not even at a clean shutdown), so after a restart the server resends transactions the
//! relay had long confirmed. The relay therefore records the newest position such that
//! every event before it is delivered, in `<state.schema>.progress`, and skips what it
//! already delivered when the server replays it. The record follows the flush watermark
//! (never the received position), so a lagging or failed write means duplicates, never a
//! skipped event.
//!
//! The same schema holds the parked events (`<state.schema>.parked`, see [`Parking`]) and
//! the mark of an incomplete snapshot (`<state.schema>.snapshot`).

mod parking;
mod progress;
mod redrive;
mod snapshot_mark;
mod store;

pub use parking::{
    ParkRequest, ParkStore, ParkedEvent, ParkedFilter, ParkedStats, Parking, BEHIND_PARKED,
    BULKHEAD_FULL, CIRCUIT_OPEN,
};
pub use progress::{report_parked, run_writer};
pub use redrive::{redrive_aggregate, Redriven};
pub use store::{create_sql, inspect, open, peek_record, ProgressRecord, StateStore};
