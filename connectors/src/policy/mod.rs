//! Delivery policies shared by every connector and by the relay's supervisor: one
//! implementation each, not one per connector.

mod backoff;

pub use backoff::Backoff;
