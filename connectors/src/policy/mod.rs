//! Delivery policies shared by every connector and by the relay's supervisor: one
//! implementation each, not one per connector.

mod backoff;
mod breaker;
mod rate_limit;

pub use backoff::Backoff;
pub use breaker::{Breaker, BreakerConfig, BreakerSettings, CircuitReport, CircuitState, OnOpen};
pub use rate_limit::{RateLimiter, LOG_WINDOW};
