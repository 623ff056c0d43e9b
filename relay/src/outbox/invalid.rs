//! Rows that cannot become events, and their dead-letter records.

use std::sync::Arc;

use bytes::Bytes;
use outbox_connectors::{OutboxEvent, PublishError, Text};
use serde_json::{json, Map, Value};

use super::mapper::TxContext;

/// Why a row or message could not become an event. The label is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    NullId,
    NullAggregateType,
    NullAggregateId,
    NullEventType,
    InvalidJson,
    InvalidUtf8,
    InvalidTimestamp,
    InvalidPayload,
    NoRoute,
    InvalidMessage,
    /// A logical message written with `transactional = false`: PostgreSQL decodes it
    /// whether or not its transaction commits, and when it is written rather than in
    /// commit order, so it cannot be an outbox event.
    NonTransactionalMessage,
    /// Larger than `outbox.max_event_bytes`.
    TooLarge,
    /// `partition_column` holds a value that is not a partition number (negative, or
    /// beyond 32 bits).
    InvalidPartition,
}

impl InvalidReason {
    /// Every reason, so that each one's counter exists (at 0) from the start.
    pub const ALL: [InvalidReason; 13] = [
        InvalidReason::NullId,
        InvalidReason::NullAggregateType,
        InvalidReason::NullAggregateId,
        InvalidReason::NullEventType,
        InvalidReason::InvalidJson,
        InvalidReason::InvalidUtf8,
        InvalidReason::InvalidTimestamp,
        InvalidReason::InvalidPayload,
        InvalidReason::NoRoute,
        InvalidReason::InvalidMessage,
        InvalidReason::NonTransactionalMessage,
        InvalidReason::TooLarge,
        InvalidReason::InvalidPartition,
    ];

    pub fn label(self) -> &'static str {
        match self {
            InvalidReason::NullId => "null_id",
            InvalidReason::NullAggregateType => "null_aggregate_type",
            InvalidReason::NullAggregateId => "null_aggregate_id",
            InvalidReason::NullEventType => "null_event_type",
            InvalidReason::InvalidJson => "invalid_json",
            InvalidReason::InvalidUtf8 => "invalid_utf8",
            InvalidReason::InvalidTimestamp => "invalid_timestamp",
            InvalidReason::InvalidPayload => "invalid_payload",
            InvalidReason::NoRoute => "no_route",
            InvalidReason::InvalidMessage => "invalid_message",
            InvalidReason::NonTransactionalMessage => "non_transactional_message",
            InvalidReason::TooLarge => "too_large",
            InvalidReason::InvalidPartition => "invalid_partition",
        }
    }
}

/// A row or logical message that failed mapping, with enough context to dead-letter it.
#[derive(Debug, Clone)]
pub struct InvalidEvent {
    pub reason: InvalidReason,
    /// What is wrong, naming the column or field.
    pub message: String,
    /// `schema.table`, or `message:<prefix>` for logical messages.
    pub source: String,
    pub id: Option<String>,
    pub aggregate_id: Option<String>,
    /// The row as column → text (NULL as null), or the message content as text.
    pub row: Value,
    pub tx: TxContext,
}

/// Header names on dead-letter records.
pub const HEADER_REASON: &str = "outbox-relay-error-reason";
pub const HEADER_ERROR: &str = "outbox-relay-error";
pub const HEADER_SOURCE: &str = "outbox-relay-source";
pub const HEADER_DESTINATION: &str = "outbox-relay-original-destination";

impl InvalidEvent {
    /// The record published to the dead-letter destination: a JSON document describing
    /// the error and carrying the original row, keyed by the aggregate id when known.
    pub fn to_dead_letter(&self, destination: Arc<str>, seq: u64) -> OutboxEvent {
        let doc = json!({
            "reason": self.reason.label(),
            "error": self.message,
            "source": self.source,
            "commit_lsn": self.tx.commit_lsn.to_string(),
            "row": self.row,
        });
        let mut headers = vec![
            (
                Text::from_static(HEADER_REASON),
                Bytes::from_static(self.reason.label().as_bytes()),
            ),
            (
                Text::from_static(HEADER_ERROR),
                Bytes::from(self.message.clone()),
            ),
            (
                Text::from_static(HEADER_SOURCE),
                Bytes::from(self.source.clone()),
            ),
        ];
        if let Some(id) = &self.id {
            headers.insert(0, (Text::from_static("id"), Bytes::from(id.clone())));
        }
        OutboxEvent {
            id: self.id.clone().unwrap_or_default().into(),
            aggregate_type: Text::default(),
            aggregate_id: self.aggregate_id.clone().unwrap_or_default().into(),
            event_type: Text::default(),
            payload: Some(Bytes::from(doc.to_string())),
            headers,
            destination,
            partition: None,
            timestamp_ms: self.tx.commit_time_us / 1000,
            commit_lsn: self.tx.commit_lsn.0,
            commit_time_us: self.tx.commit_time_us,
            seq,
        }
    }
}

/// The dead-letter record for an event the broker rejected permanently: the original
/// event with the error in headers. A message too large for the broker keeps its
/// headers but its payload is replaced by a JSON note of its size, since the same bytes
/// would be rejected again.
pub fn dead_letter_of_rejected(
    event: &OutboxEvent,
    error: &PublishError,
    destination: Arc<str>,
) -> OutboxEvent {
    let mut dl = event.clone();
    dl.destination = destination;
    // The partition belonged to the original topic; the dead-letter topic has its own.
    dl.partition = None;
    if error.kind == "message_too_large" {
        let size = event.payload.as_ref().map_or(0, Bytes::len);
        dl.payload = Some(Bytes::from(
            json!({"reason": "message_too_large", "payload_bytes": size, "error": error.message})
                .to_string(),
        ));
    }
    dl.headers.push((
        Text::from_static(HEADER_REASON),
        Bytes::from_static(error.kind.as_bytes()),
    ));
    dl.headers.push((
        Text::from_static(HEADER_ERROR),
        Bytes::from(error.to_string()),
    ));
    dl.headers.push((
        Text::from_static(HEADER_DESTINATION),
        Bytes::from(event.destination.to_string()),
    ));
    dl
}

/// The last-resort dead-letter record of a rejected event, for when the dead-letter
/// destination refused the event's own copy too (a NULL payload where the sink needs a
/// body, a payload the destination cannot take either): a small JSON document naming the
/// event and the error, which every sink can carry. The payload travels as text when it
/// is UTF-8 and small, otherwise only its size does.
pub fn dead_letter_summary(
    event: &OutboxEvent,
    error: &PublishError,
    destination: Arc<str>,
) -> OutboxEvent {
    const MAX_INLINE_PAYLOAD: usize = 64 * 1024;
    let payload = event.payload.as_ref();
    let inline = payload
        .filter(|p| p.len() <= MAX_INLINE_PAYLOAD)
        .and_then(|p| std::str::from_utf8(p).ok());
    let doc = json!({
        "reason": error.kind,
        "error": error.to_string(),
        "original_destination": &*event.destination,
        "id": event.id,
        "aggregatetype": event.aggregate_type,
        "aggregateid": event.aggregate_id,
        "type": event.event_type,
        "commit_lsn": outbox_pgoutput::Lsn(event.commit_lsn).to_string(),
        "payload_bytes": payload.map(Bytes::len),
        "payload": inline,
    });
    let mut headers = vec![
        (Text::from_static("id"), event.id.bytes()),
        (
            Text::from_static(HEADER_REASON),
            Bytes::from_static(error.kind.as_bytes()),
        ),
        (
            Text::from_static(HEADER_ERROR),
            Bytes::from(error.to_string()),
        ),
        (
            Text::from_static(HEADER_DESTINATION),
            Bytes::from(event.destination.to_string()),
        ),
    ];
    headers.retain(|(_, v)| !v.is_empty());
    OutboxEvent {
        payload: Some(Bytes::from(doc.to_string())),
        headers,
        destination,
        partition: None,
        ..event.clone()
    }
}

/// Renders a row for a dead-letter record.
pub fn row_json<'a>(columns: impl Iterator<Item = (&'a str, Option<String>)>) -> Value {
    let mut map = Map::new();
    for (name, value) in columns {
        map.insert(name.to_string(), value.map_or(Value::Null, Value::String));
    }
    Value::Object(map)
}

#[cfg(test)]
mod reason_tests {
    use super::InvalidReason::{self, *};

    #[test]
    fn all_lists_every_reason_once_in_declaration_order() {
        // An exhaustive match: a new reason does not compile until it is placed here,
        // and this test then fails until it is in `ALL` too.
        fn index(r: InvalidReason) -> usize {
            match r {
                NullId => 0,
                NullAggregateType => 1,
                NullAggregateId => 2,
                NullEventType => 3,
                InvalidJson => 4,
                InvalidUtf8 => 5,
                InvalidTimestamp => 6,
                InvalidPayload => 7,
                NoRoute => 8,
                InvalidMessage => 9,
                NonTransactionalMessage => 10,
                TooLarge => 11,
                InvalidPartition => 12,
            }
        }
        for (i, r) in InvalidReason::ALL.iter().enumerate() {
            assert_eq!(index(*r), i, "{r:?}");
        }
    }
}
