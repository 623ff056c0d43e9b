//! Metrics, health endpoints and logs.

pub mod build;
mod connector;
mod destination_labels;
mod fd_limit;
mod health;
mod http;
mod logging;
mod metrics;
pub mod otlp;
mod shard_metrics;

pub use destination_labels::{DestinationLabels, OTHER as OTHER_DESTINATIONS};
pub use health::Health;
pub use http::{serve, HttpLimits};
pub use logging::init_logging;
pub use metrics::Metrics;
