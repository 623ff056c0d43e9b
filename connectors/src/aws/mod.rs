//! Amazon SNS and SQS connectors: one publisher over a client trait implemented twice.
//!
//! [`SnsPublisher`] publishes to SNS topics (the event's `destination` is a topic ARN,
//! `arn:aws:sns:<region>:<account>:<topic>`), [`SqsPublisher`] sends to SQS queues (the
//! destination is a queue URL, `https://sqs.<region>.amazonaws.com/<account>/<queue>`).
//! Both are an [`AwsPublisher`] over a [`Client`] ([`SnsClient`], [`SqsClient`]), take the
//! same [`AwsConfig`] (`sink.sns` / `sink.sqs`) and share everything but the request they
//! send: `config` (settings), `message` (event → body, attributes, FIFO ids), `client`
//! (the trait, SDK loading, per-entry results), `sns` / `sqs` (PublishBatch /
//! SendMessageBatch), `error` (the one classification table), `sink` (ordering, batching,
//! retries).
//!
//! # Ordering
//!
//! The connector keeps per-aggregate order itself, so the relay may pipeline batches: it
//! accepts them in commit order, and per ordering key (`aggregate_id`) events reach SNS/SQS
//! in accept order, retries included, while different aggregates proceed concurrently up
//! to `max_concurrency` requests in flight.
//!
//! The rule is the same for both kinds of destination: **at most one message in flight
//! per aggregate** (per message group). The next event of an aggregate is sent only after
//! AWS acknowledged the previous one. Different aggregates proceed concurrently, and a
//! batch request (PublishBatch / SendMessageBatch: at most 10 entries, at most
//! `max_message_bytes` in total, one destination) carries the heads of up to ten
//! different aggregates.
//!
//! - **Standard** topics and queues order nothing themselves; the rule is what orders an
//!   aggregate.
//! - **FIFO** topics and queues order per message group: `MessageGroupId` is the aggregate
//!   id and `MessageDeduplicationId` the event id, both mapped by [`fifo_id`] (valid ids
//!   unchanged, anything else `h-` + hex SHA-256).
//!
//! Why not several consecutive events of a FIFO group in one batch (AWS keeps entry order
//! inside a batch)? Because a batch can *partially* fail: entry *i* `Failed` (retryable:
//! `InternalError`, throttling) while entry *i+1* of the same group is `Successful`. Then
//! *i+1* is already stored, ahead of *i*, and nothing the connector does afterwards can
//! undo that: re-sending *i+1* with the same deduplication id is dropped as a duplicate
//! (the stored copy, before *i*, is what consumers get), re-sending it with a new id
//! delivers it twice (before and after *i*), and failing or parking the group comes too
//! late. AWS documents no rule that a failed entry fails the later entries of its group,
//! and a timed-out request may have stored any subset. The only order-preserving choice
//! is never to have a later event of a group stored while an earlier one is
//! unacknowledged: one entry per group per request, one request per group in flight. The
//! cost is throughput per *group*: one event per round trip (on fauxqs, one hot group
//! went from ≈ 2,600 to ≈ 480 events/s; many groups are unaffected, since a request still
//! carries ten of them). Against AWS, with round trips of a few to a few tens of
//! milliseconds, a single group is bounded to very roughly 30–300 events/s.
//!
//! # Results, retries and backpressure
//!
//! Every entry of a batch response is checked (`Successful` / `Failed`), not only the HTTP
//! status. Each entry is settled for its aggregate:
//!
//! - success: delivered;
//! - **Permanent** failure (invalid parameter, message too large — detected before
//!   sending by measuring body + attributes): that event fails with a message naming the
//!   event id and the destination. The aggregate's later events go on, but never sent
//!   by this publisher after the failure: those it already holds are handed back
//!   `Retryable` (`behind_rejected`), and the relay replays them behind the rejection's
//!   outcome (parked with it, or after its dead letter);
//! - Permanent failure that **may be transient** (not authorized, topic/queue/bucket not
//!   found, KMS key unusable, unknown 4xx: the `error` table's last column): retried like
//!   a retryable one until `transient_error_window_ms` (default 5 minutes) has passed
//!   since the aggregate's first such failure, or the destination's first one with
//!   nothing delivered to it since; then it fails the event, and the aggregate's later
//!   events the publisher holds fail with it (they would meet the same condition);
//! - **Retryable** failure (throttling, 5xx, timeouts, connection errors): the aggregate's
//!   later events wait, and the entry is sent again after an exponential backoff with
//!   jitter (`retry_initial_backoff_ms` doubling up to `retry_max_backoff_ms`);
//! - **Fatal** failure (invalid credentials): every undelivered event fails with it and
//!   every later `accept` returns it; the relay restarts from its last confirmed position.
//!
//! By default (`max_retry_elapsed_ms: 0`) retryable failures are retried **forever**: an
//! outage or sustained throttling keeps the affected Deliveries pending, the relay's
//! in-flight budget (`pipeline.inflight_bytes`) fills up and it stops reading the WAL —
//! backpressure, no failed events. With `max_retry_elapsed_ms > 0`, an aggregate whose
//! head has been failing that long has all its queued events reported as `Retryable`
//! (never one that a later event of the aggregate overtook). [`SnsPublisher::retries`]
//! counts entries sent again, for metrics.
//!
//! A Delivery resolves when every event of its batch is delivered or failed permanently
//! or fatally. The connector's queue is bounded by the relay's in-flight budget; `accept`
//! itself does not wait.
//!
//! # Messages
//!
//! The body is the payload byte for byte (`raw_payload: true`, it must be UTF-8 text) or a
//! JSON envelope `{"id","type","aggregatetype","aggregateid","payload"}`. Message
//! attributes (all `String`): `id`, `type`, `aggregatetype`, `aggregateid`, then the
//! `traceparent` and `tracestate` headers, then the other event headers in order, up to
//! the SQS limit of 10 attributes (earlier ones win; invalid names, empty or non-UTF-8
//! values are left out).
//!
//! # Large payloads
//!
//! With `large_payloads.mode: s3` a message over `threshold_bytes` (default
//! `max_message_bytes`, body and attributes counted) has its body stored in S3 under a
//! key derived from the event id, and the message carries a pointer in the extended
//! client libraries' format (`offload`). The object is written and confirmed before the
//! message is sent, within the same request and under the same retries, classification
//! and circuit breaker; the event is delivered when the message is acknowledged, and keeps
//! its place in its aggregate's lane.
//!
//! # Credentials
//!
//! The AWS default chain (environment, profile, web identity / IRSA, ECS, IMDS). Nothing
//! about them is ever logged. TLS is rustls with ring, the same stack as the rest of the
//! relay.

#[cfg(test)]
mod breaker_tests;
mod client;
mod config;
mod destination;
mod error;
mod message;
mod offload;
#[cfg(test)]
mod offload_tests;
mod sink;
mod sns;
mod sqs;

pub use client::Client;
pub use config::{
    service_limit, AwsConfig, LargePayloadMode, LargePayloads, SnsConfig, SqsConfig,
    SNS_MAX_MESSAGE_BYTES, SQS_MAX_MESSAGE_BYTES,
};
pub use error::{classify_code, classify_sdk_error, may_be_transient};
pub use message::{fifo_id, MAX_ATTRIBUTES};
pub use offload::{
    object_key, pointer_body, ObjectStore, S3Store, POINTER_CLASS, RESERVED_ATTRIBUTE,
};
pub use sink::AwsPublisher;
pub use sns::SnsClient;
pub use sqs::SqsClient;

/// Publishes to SNS topics with PublishBatch; `kind()` is `"sns"`. Destinations are topic
/// ARNs. See the [module docs](self).
pub type SnsPublisher = AwsPublisher<SnsClient>;

/// Sends to SQS queues with SendMessageBatch; `kind()` is `"sqs"`. Destinations are queue
/// URLs. See the [module docs](self).
pub type SqsPublisher = AwsPublisher<SqsClient>;
