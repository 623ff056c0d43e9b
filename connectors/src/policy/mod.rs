//! Delivery policies shared by every connector and by the relay's supervisor: one
//! implementation each, not one per connector.

mod backoff;
mod breaker;

pub use backoff::Backoff;
pub use breaker::{Breaker, BreakerSettings, CircuitState};
