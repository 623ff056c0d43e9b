//! Metrics, health endpoints and logs.

mod connector;
mod fd_limit;
mod health;
mod http;
mod logging;
mod metrics;

pub use health::Health;
pub use http::{serve, HttpLimits};
pub use logging::init_logging;
pub use metrics::Metrics;
