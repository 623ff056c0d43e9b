//! The event handed to connectors.

use std::sync::Arc;

use bytes::Bytes;

use crate::text::Text;

/// One committed outbox row (or logical message), mapped and routed.
///
/// Connectors receive it by value and must publish `payload` byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// The outbox row's `id`, as text (a UUID for Debezium-shaped tables).
    pub id: Text,
    pub aggregate_type: Text,
    /// Ordering key: events of one aggregate reach the broker in commit order.
    pub aggregate_id: Text,
    pub event_type: Text,
    /// `None` publishes a tombstone (Kafka) where the sink supports it.
    pub payload: Option<Bytes>,
    /// Broker headers / message attributes, in order.
    pub headers: Vec<(Text, Bytes)>,
    /// Topic, topic ARN or queue URL, resolved by the relay's route.
    pub destination: Arc<str>,
    /// Kafka only: the partition the record must go to (an outbox column, Debezium's
    /// `column:partition` placement); `None` = the partitioner hashes the key.
    pub partition: Option<i32>,
    /// Record timestamp in Unix milliseconds (the outbox `timestamp` column or the commit time).
    pub timestamp_ms: i64,
    /// End LSN of the commit record of the transaction that wrote the event.
    pub commit_lsn: u64,
    /// Commit time in Unix microseconds, for end-to-end latency.
    pub commit_time_us: i64,
    /// Position of the event in its transaction (1, 2, …), the same when the transaction
    /// is replayed: `(commit_lsn, seq)` is the event's place in commit order.
    pub seq: u64,
}

impl OutboxEvent {
    /// What the event costs against the relay's in-flight memory budget: the bytes it
    /// owns plus a fixed allowance for the struct and the broker client's own copy.
    pub fn budget_bytes(&self) -> usize {
        const OVERHEAD: usize = 256;
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 16)
            .sum();
        OVERHEAD
            + self.id.len()
            + self.aggregate_type.len()
            + self.aggregate_id.len()
            + self.event_type.len()
            // The broker client copies the payload, so it is counted twice.
            + 2 * self.payload.as_ref().map_or(0, Bytes::len)
            + headers
    }
}
