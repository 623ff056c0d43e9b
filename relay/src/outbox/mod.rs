//! Outbox mapping: a committed row (or logical message) becomes an [`OutboxEvent`].
//!
//! [`OutboxEvent`]: outbox_connectors::OutboxEvent

pub mod cloudevents;
mod invalid;
mod mapper;
mod message;
mod route;
mod table;
mod text;
mod trace;

pub use invalid::{
    dead_letter_of_rejected, dead_letter_summary, InvalidEvent, InvalidReason, HEADER_ERROR,
    HEADER_REASON,
};
pub use mapper::{Mapped, Mapper, TxContext, HEADER_COMMIT_LSN};
pub use route::{RouteRegex, Router};
pub use table::{OutboxTable, SchemaError};
