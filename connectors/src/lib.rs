//! The publisher contract of outbox-relay and its broker connectors.
//!
//! [`OutboxEvent`] is the only type that crosses from the relay into a connector.
//! A connector implements [`Publisher`]; its errors are classified once, in the
//! connector's own `error` module, as [`ErrorClass::Retryable`], [`ErrorClass::Permanent`]
//! or [`ErrorClass::Fatal`], and the relay decides what to do from the class alone.

pub mod aws;
pub mod client_stats;
pub mod duration_ms;
pub mod error;
pub mod event;
pub mod kafka;
pub mod null;
pub mod policy;
pub mod publisher;
#[cfg(feature = "test-utils")]
pub mod testing;
pub mod text;

pub use client_stats::ClientGauge;
pub use error::{ErrorClass, PublishError};
pub use event::OutboxEvent;
pub use publisher::{Delivery, EventOutcome, Publisher};
pub use text::Text;
