//! The contract between the relay and a broker connector.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::{OutboxEvent, PublishError};

/// The outcome of one event of a batch.
#[derive(Debug)]
pub struct EventOutcome {
    pub event: OutboxEvent,
    pub result: Result<(), PublishError>,
}

/// Resolves once the broker has made every event of a batch durable, or failed some.
///
/// This is the second step of a two-step write: [`Publisher::accept`] returning means the
/// connector has taken the batch in order; the `Delivery` resolving means it is durable.
/// Outcomes come back in the order the events were accepted.
pub type Delivery = BoxFuture<'static, Vec<EventOutcome>>;

/// A broker connector.
///
/// Contract:
/// - **At-least-once**: an event counts as published only when its [`EventOutcome`] is
///   `Ok`. The relay acknowledges a WAL position to PostgreSQL only after every event
///   before it was published (or dead-lettered), so an event may be published twice
///   after a crash but never lost.
/// - **Order**: batches are accepted in commit order, one `accept` at a time, and the
///   relay pipelines them freely. The connector guarantees that, per ordering key
///   (`aggregate_id`), the broker stores events in accept order, retries included (Kafka:
///   an idempotent producer and a keyed partition; SNS/SQS: per-aggregate lanes).
/// - **Errors** are classified by the connector ([`crate::ErrorClass`]). A `Retryable`
///   outcome is never reported for an event that a later event of the same key has
///   overtaken.
/// - **Backpressure**: `accept` may wait when the client's queue is full; it never drops
///   or reorders while waiting.
#[async_trait::async_trait]
pub trait Publisher: Send + Sync + 'static {
    /// Short name used in metric labels (`kafka`, `sns`, `sqs`, `null`).
    fn kind(&self) -> &'static str;

    /// Checks that `destination` is a name the broker can accept, before any event is routed
    /// to it. The error names what is wrong.
    fn validate_destination(&self, destination: &str) -> Result<(), String>;

    /// Pre-flight: whether `event`, as it is, would certainly be rejected (too large for
    /// the sink, a body the sink cannot carry). The relay asks before handing the event
    /// over, so such an event takes its policy's outcome (park, dead letter, halt) in
    /// commit order, before any later event of its aggregate is published. `Ok` promises
    /// nothing; the broker may still reject.
    fn check(&self, _event: &OutboxEvent) -> Result<(), PublishError> {
        Ok(())
    }

    /// Takes a batch in order; see the trait docs.
    async fn accept(&self, batch: Vec<OutboxEvent>) -> Result<Delivery, PublishError>;

    /// Waits until everything accepted so far is delivered or failed.
    async fn flush(&self, timeout: Duration) -> Result<(), PublishError>;

    /// Checks the broker is reachable (for `check` and readiness).
    async fn probe(&self, timeout: Duration) -> Result<(), PublishError>;

    /// Events the connector sent again after a retryable failure, per destination, since
    /// it started (for metrics). Connectors whose client retries internally (Kafka)
    /// report nothing.
    fn retries_by_destination(&self) -> Vec<(std::sync::Arc<str>, u64)> {
        Vec::new()
    }

    /// The circuit of every destination that has one, with its transitions since the
    /// connector started (for metrics).
    fn circuits(&self) -> Vec<crate::policy::CircuitReport> {
        Vec::new()
    }

    /// Whether the connector probes its open circuits by itself (Kafka: a metadata
    /// request). Otherwise an open circuit is probed by the next request sent to it.
    fn probes_open_circuits(&self) -> bool {
        false
    }

    /// Requests sent to the broker, since the connector started (for metrics: events
    /// divided by requests is the mean request batch size). 0 where the client batches
    /// on its own (Kafka).
    fn requests(&self) -> u64 {
        0
    }

    /// Events whose body the connector stored elsewhere and sent a pointer to (SNS/SQS
    /// `large_payloads` in S3), delivered since it started, per destination: `(destination,
    /// events, body bytes)` (for metrics). Connectors that never offload report nothing.
    fn offloaded_by_destination(&self) -> Vec<(std::sync::Arc<str>, u64, u64)> {
        Vec::new()
    }

    /// With exactly-once delivery (Kafka transactions): the position `(commit LSN, seq)`
    /// of the newest event the broker already holds, read at start. The relay skips
    /// replayed events at or below it. `None`: the connector cannot tell (at-least-once).
    fn committed_position(&self) -> Option<(u64, u64)> {
        None
    }

    /// The client library's own view (librdkafka statistics: broker round trips, queue
    /// depth, batch sizes), as of its last report (for metrics).
    fn client_gauges(&self) -> Vec<crate::ClientGauge> {
        Vec::new()
    }
}
