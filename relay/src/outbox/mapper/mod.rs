//! Rows and logical messages → [`OutboxEvent`]s.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use outbox_connectors::text::{Span, TextBuffer};
use outbox_connectors::{OutboxEvent, Text};
use outbox_pgoutput::{Insert, LogicalMessage, Lsn, Relation, TupleData, TupleValue};

use super::cloudevents::{CloudEvents, MissingAttribute};
use super::invalid::{row_json, InvalidEvent, InvalidReason};
use super::message::{payload_bytes, scalar_text, string_field, MessageEvent};
use super::route::Router;
use super::table::{OutboxTable, PayloadKind, SchemaError};
use super::text::{decode_bytea, parse_timestamp_ms_bytes};
use super::trace::trace_headers;
use crate::config::OutboxConfig;

/// The transaction an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxContext {
    /// LSN of the commit record (Begin's `final_lsn`); identifies the transaction.
    pub commit_lsn: Lsn,
    /// Commit time, Unix microseconds.
    pub commit_time_us: i64,
}

/// Header carrying the commit LSN when `outbox.commit_lsn_header` is on.
pub const HEADER_COMMIT_LSN: &str = "outbox-relay-commit-lsn";
const HEADER_COMMIT_LSN_NAME: Text = Text::from_static(HEADER_COMMIT_LSN);
/// The event id header (Debezium's outbox router adds it too).
const HEADER_ID: Text = Text::from_static("id");

/// What one change became.
// Boxing the event would cost an allocation per event, which is what Text saved; this is
// a return value moved once, not a stored collection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Mapped {
    Event(OutboxEvent),
    /// Could not be mapped; carries the row for the dead-letter outcome.
    Invalid(Box<InvalidEvent>),
    /// Not an outbox change (another table in the publication, another message prefix).
    NotOutbox,
}

pub struct Mapper {
    config: OutboxConfig,
    /// rel_id → the resolved table, or `None` for a published table that is not an outbox.
    relations: HashMap<u32, Option<Arc<OutboxTable>>>,
    router: Router,
    dead_letter: Arc<str>,
    /// `outbox.cloudevents`, when on.
    cloudevents: Option<CloudEvents>,
    seq: u64,
    /// The transaction `seq` counts in.
    seq_tx: Lsn,
    /// The commit-LSN header's value for the last transaction: formatted once, shared by
    /// its events (a `Bytes` clone is a reference count).
    lsn_text: (Lsn, Bytes),
}

impl Mapper {
    pub fn new(config: OutboxConfig, router: Router) -> Self {
        let dead_letter = Arc::from(config.dead_letter_destination.as_str());
        let cloudevents = config.cloudevents.as_ref().map(CloudEvents::new);
        Mapper {
            cloudevents,
            config,
            relations: HashMap::new(),
            router,
            dead_letter,
            seq: 0,
            seq_tx: Lsn::ZERO,
            lsn_text: (Lsn::ZERO, Bytes::from(Lsn::ZERO.to_string())),
        }
    }

    fn commit_lsn_text(&mut self, tx: &TxContext) -> Bytes {
        if self.lsn_text.0 != tx.commit_lsn {
            self.lsn_text = (tx.commit_lsn, Bytes::from(tx.commit_lsn.to_string()));
        }
        self.lsn_text.1.clone()
    }

    /// Records (and checks) a table's shape. Called for every Relation message, which
    /// PostgreSQL sends before the first change of a table in a session and again after
    /// any schema change, so a column dropped or retyped mid-stream is caught here.
    pub fn on_relation(&mut self, rel: &Relation) -> Result<(), SchemaError> {
        let table = self
            .config
            .tables
            .iter()
            .find(|t| t.qualified() == (rel.namespace.as_str(), rel.name.as_str()));
        let resolved = match table {
            Some(t) => Some(Arc::new(OutboxTable::resolve(t, rel)?)),
            None => None,
        };
        self.relations.insert(rel.rel_id, resolved);
        Ok(())
    }

    /// The event's place in its transaction (1, 2, …): with the commit LSN it orders
    /// events in commit order, and it is the same when the server replays the
    /// transaction (parked events are keyed and ordered by it).
    fn next_seq(&mut self, tx: &TxContext) -> u64 {
        if self.seq_tx != tx.commit_lsn {
            self.seq_tx = tx.commit_lsn;
            self.seq = 0;
        }
        self.seq += 1;
        self.seq
    }

    pub fn map_insert(&mut self, insert: &Insert, tx: &TxContext) -> Result<Mapped, SchemaError> {
        let table = match self.relations.get(&insert.rel_id) {
            Some(Some(t)) => t.clone(),
            Some(None) => return Ok(Mapped::NotOutbox),
            None => {
                return Err(SchemaError {
                    table: format!("relation {}", insert.rel_id),
                    problem: "an Insert arrived before its Relation message (protocol violation)"
                        .into(),
                })
            }
        };
        let size = row_bytes(&insert.new);
        if size > self.config.max_event_bytes {
            return Ok(Mapped::Invalid(Box::new(too_large_row(
                &table,
                &insert.new,
                tx,
                format!(
                    "row of {size} bytes exceeds outbox.max_event_bytes ({})",
                    self.config.max_event_bytes
                ),
            ))));
        }
        Ok(match self.row_to_event(&table, &insert.new, tx) {
            Ok(event) => Mapped::Event(event),
            Err((reason, message)) => Mapped::Invalid(Box::new(invalid_row(
                &table,
                &insert.new,
                tx,
                reason,
                message,
            ))),
        })
    }

    fn row_to_event(
        &mut self,
        t: &OutboxTable,
        row: &TupleData,
        tx: &TxContext,
    ) -> Result<OutboxEvent, (InvalidReason, String)> {
        let cols = &t.column_names;
        let required =
            |i: usize, reason: InvalidReason| -> Result<&Bytes, (InvalidReason, String)> {
                match row.0.get(i) {
                    Some(TupleValue::Text(b)) => Ok(b),
                    Some(TupleValue::Binary(_)) => Err((
                        InvalidReason::InvalidPayload,
                        format!(
                        "column {:?} arrived in binary format, which the relay does not request",
                        cols[i]
                    ),
                    )),
                    _ => Err((reason, format!("column {:?} is NULL", cols[i]))),
                }
            };
        let id_value = required(t.id, InvalidReason::NullId)?;
        let type_value = required(t.aggregate_type, InvalidReason::NullAggregateType)?;
        let aggregate_value = required(t.aggregate_id, InvalidReason::NullAggregateId)?;
        let event_type_value = required(t.event_type, InvalidReason::NullEventType)?;
        // The event's strings and its payload go into one buffer (see Text): one
        // allocation where there were six.
        let payload_value = match row.0.get(t.payload) {
            Some(TupleValue::Text(b)) => Some(b),
            _ => None,
        };
        let mut buffer = TextBuffer::with_capacity(
            id_value.len()
                + type_value.len()
                + aggregate_value.len()
                + event_type_value.len()
                + payload_value.map_or(0, |b| match t.payload_kind {
                    PayloadKind::Bytea => b.len() / 2,
                    _ => b.len(),
                }),
        );
        let spans = [
            buffer.push(id_value),
            buffer.push(type_value),
            buffer.push(aggregate_value),
            buffer.push(event_type_value),
        ];
        let payload_span = match payload_value {
            Some(b) => Some(match t.payload_kind {
                PayloadKind::Json => buffer.push(b),
                PayloadKind::Text { validate_json } => {
                    if validate_json {
                        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(b) {
                            return Err((
                                InvalidReason::InvalidJson,
                                format!("column {:?} is not valid JSON: {e}", cols[t.payload]),
                            ));
                        }
                    }
                    buffer.push(b)
                }
                PayloadKind::Bytea => decode_bytea(b)
                    .map(|decoded| buffer.push(&decoded))
                    .map_err(|e| {
                        (
                            InvalidReason::InvalidPayload,
                            format!("column {:?}: {e}", cols[t.payload]),
                        )
                    })?,
            }),
            None => None,
        };
        let frozen = buffer.finish();
        let text = |span: Span, i: usize| {
            frozen.text(span).map_err(|_| {
                (
                    InvalidReason::InvalidUtf8,
                    format!("column {:?} is not valid UTF-8", cols[i]),
                )
            })
        };
        let id = text(spans[0], t.id)?;
        let aggregate_type = text(spans[1], t.aggregate_type)?;
        let aggregate_id = text(spans[2], t.aggregate_id)?;
        let event_type = text(spans[3], t.event_type)?;
        let payload = payload_span.map(|span| frozen.bytes(span));
        let timestamp_ms = match t.timestamp {
            Some((i, oid)) => match row.0.get(i) {
                Some(TupleValue::Text(b)) => parse_timestamp_ms_bytes(oid, b).map_err(|e| {
                    (
                        InvalidReason::InvalidTimestamp,
                        format!("column {:?}: {e}", cols[i]),
                    )
                })?,
                _ => tx.commit_time_us / 1000,
            },
            None => tx.commit_time_us / 1000,
        };
        let partition = match t.partition {
            Some((i, _)) => match row.0.get(i) {
                Some(TupleValue::Text(b)) => {
                    let s = std::str::from_utf8(b).unwrap_or("");
                    match s.parse::<i32>() {
                        Ok(p) if p >= 0 => Some(p),
                        _ => {
                            return Err((
                                InvalidReason::InvalidPartition,
                                format!(
                                "column {:?}: {s:?} is not a partition number (0 to 2147483647)",
                                cols[i]
                            ),
                            ))
                        }
                    }
                }
                // NULL: the partitioner chooses by key, as Debezium leaves it.
                _ => None,
            },
            None => None,
        };
        let destination = self
            .router
            .route(&aggregate_type)
            .map_err(|e| (InvalidReason::NoRoute, e))?;

        let mut headers = Vec::with_capacity(2 + t.headers.len());
        headers.push((HEADER_ID, id.bytes()));
        if let Some(i) = t.tracing_span_context {
            if let Some(TupleValue::Text(b)) = row.0.get(i) {
                headers.extend(trace_headers(&String::from_utf8_lossy(b)));
            }
        }
        for (i, name) in &t.headers {
            if let Some(TupleValue::Text(b)) = row.0.get(*i) {
                headers.push((name.clone(), detach(b)));
            }
        }
        if self.config.commit_lsn_header {
            headers.push((HEADER_COMMIT_LSN_NAME, self.commit_lsn_text(tx)));
        }
        let event = OutboxEvent {
            id,
            aggregate_type,
            aggregate_id,
            event_type,
            payload,
            headers,
            destination,
            partition,
            timestamp_ms,
            commit_lsn: tx.commit_lsn.0,
            commit_time_us: tx.commit_time_us,
            seq: 0,
        };
        let id_column = &cols[t.id];
        let type_column = &cols[t.event_type];
        self.finish(event, tx).map_err(|missing| match missing {
            MissingAttribute::Id => (
                InvalidReason::NullId,
                format!("column {id_column:?} is empty; a CloudEvent (outbox.cloudevents) needs a non-empty id"),
            ),
            MissingAttribute::Type => (
                InvalidReason::NullEventType,
                format!("column {type_column:?} is empty; a CloudEvent (outbox.cloudevents) needs a non-empty type"),
            ),
        })
    }

    /// The last step of every mapped event: the CloudEvents attributes (they become part
    /// of the event, so parking and redrive keep them), then its place in the transaction
    /// (taken only by events that are not invalid).
    fn finish(
        &mut self,
        mut event: OutboxEvent,
        tx: &TxContext,
    ) -> Result<OutboxEvent, MissingAttribute> {
        if let Some(ce) = &self.cloudevents {
            ce.apply(&mut event)?;
        }
        event.seq = self.next_seq(tx);
        Ok(event)
    }

    /// Maps a logical message with the configured prefix; other prefixes are not events.
    pub fn map_message(&mut self, msg: &LogicalMessage, tx: &TxContext) -> Mapped {
        match &self.config.messages {
            Some(m) if m.prefix == msg.prefix => {}
            _ => return Mapped::NotOutbox,
        }
        if msg.content.len() > self.config.max_event_bytes {
            return Mapped::Invalid(Box::new(InvalidEvent {
                reason: InvalidReason::TooLarge,
                message: format!(
                    "logical message of {} bytes exceeds outbox.max_event_bytes ({})",
                    msg.content.len(),
                    self.config.max_event_bytes
                ),
                source: format!("message:{}", msg.prefix),
                id: None,
                aggregate_id: None,
                row: omitted(msg.content.len()),
                tx: *tx,
            }));
        }
        match self.message_to_event(msg, tx) {
            Ok(event) => Mapped::Event(event),
            Err((reason, message, id, aggregate_id)) => Mapped::Invalid(Box::new(InvalidEvent {
                reason,
                message,
                source: format!("message:{}", msg.prefix),
                id,
                aggregate_id,
                row: serde_json::Value::String(String::from_utf8_lossy(&msg.content).into_owned()),
                tx: *tx,
            })),
        }
    }

    #[allow(clippy::type_complexity)]
    fn message_to_event(
        &mut self,
        msg: &LogicalMessage,
        tx: &TxContext,
    ) -> Result<OutboxEvent, (InvalidReason, String, Option<String>, Option<String>)> {
        if !msg.transactional {
            return Err((
                InvalidReason::NonTransactionalMessage,
                "logical message written with transactional = false: it is decoded even if its transaction rolls back, so it is not an event; write it with pg_logical_emit_message(true, ...)".into(),
                None,
                None,
            ));
        }
        let parsed: MessageEvent = serde_json::from_slice(&msg.content).map_err(|e| {
            (
                InvalidReason::InvalidMessage,
                format!("logical message content is not a JSON object of outbox fields: {e}"),
                None,
                None,
            )
        })?;
        let id = scalar_text(parsed.id);
        let aggregate_id = scalar_text(parsed.aggregateid);
        let fail = |reason, what: &str| {
            Err((
                reason,
                format!("logical message field {what:?} is missing or null"),
                id.clone(),
                aggregate_id.clone(),
            ))
        };
        let Some(id_text) = id.clone() else {
            return fail(InvalidReason::NullId, "id");
        };
        let Some(aggregate_type) = string_field(&parsed.aggregatetype) else {
            return fail(InvalidReason::NullAggregateType, "aggregatetype");
        };
        let Some(aggregate_id_text) = aggregate_id.clone() else {
            return fail(InvalidReason::NullAggregateId, "aggregateid");
        };
        let Some(event_type) = string_field(&parsed.event_type) else {
            return fail(InvalidReason::NullEventType, "type");
        };
        let destination = self
            .router
            .route(&aggregate_type)
            .map_err(|e| (InvalidReason::NoRoute, e, id.clone(), aggregate_id.clone()))?;
        let id_text = Text::from(id_text);
        let mut headers = vec![(HEADER_ID, id_text.bytes())];
        if let Some(ctx) = &parsed.tracingspancontext {
            headers.extend(trace_headers(ctx));
        }
        if self.config.commit_lsn_header {
            headers.push((HEADER_COMMIT_LSN_NAME, self.commit_lsn_text(tx)));
        }
        let event = OutboxEvent {
            id: id_text,
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id_text.into(),
            event_type: event_type.into(),
            payload: payload_bytes(parsed.payload, &msg.content).map(|b| detach(&b)),
            headers,
            destination,
            partition: None,
            timestamp_ms: parsed.timestamp.unwrap_or(tx.commit_time_us / 1000),
            commit_lsn: tx.commit_lsn.0,
            commit_time_us: tx.commit_time_us,
            seq: 0,
        };
        self.finish(event, tx).map_err(|missing| {
            let (reason, field) = match missing {
                MissingAttribute::Id => (InvalidReason::NullId, "id"),
                MissingAttribute::Type => (InvalidReason::NullEventType, "type"),
            };
            (
                reason,
                format!("logical message field {field:?} is empty; a CloudEvent (outbox.cloudevents) needs it non-empty"),
                id.clone(),
                aggregate_id.clone(),
            )
        })
    }

    /// The dead-letter record for an invalid row or message.
    pub fn dead_letter(&mut self, invalid: &InvalidEvent) -> OutboxEvent {
        let seq = self.next_seq(&invalid.tx);
        invalid.to_dead_letter(self.dead_letter.clone(), seq)
    }

    pub fn dead_letter_destination(&self) -> Arc<str> {
        self.dead_letter.clone()
    }
}

/// A copy of `value` that owns exactly its bytes. Values decoded from the
/// replication stream are slices of the read buffer, and an event holding one keeps
/// the whole buffer chunk (up to the size of the largest message read into it) alive
/// until the broker acknowledges it, which the budget would not see.
fn detach(value: &Bytes) -> Bytes {
    Bytes::copy_from_slice(value)
}

/// The bytes of a row's column values, which is what the size limit measures.
fn row_bytes(row: &TupleData) -> usize {
    row.0
        .iter()
        .map(|v| v.as_bytes().map_or(0, Bytes::len))
        .sum()
}

/// Values longer than this are left out of a too-large row's dead-letter record.
const KEPT_VALUE_BYTES: usize = 1024;

/// What stands in a dead-letter record for a value left out.
fn omitted(len: usize) -> serde_json::Value {
    serde_json::json!({ "omitted_bytes": len })
}

/// The invalid event for a row over the size limit: its short values (the id, the
/// aggregate) as text, the long ones replaced by their size.
fn too_large_row(
    t: &OutboxTable,
    row: &TupleData,
    tx: &TxContext,
    message: String,
) -> InvalidEvent {
    let text_at = |i: usize| match row.0.get(i) {
        Some(TupleValue::Text(b)) if b.len() <= KEPT_VALUE_BYTES => {
            Some(String::from_utf8_lossy(b).into_owned())
        }
        _ => None,
    };
    let columns = t.column_names.iter().enumerate().map(|(i, name)| {
        let value = match row.0.get(i).and_then(TupleValue::as_bytes) {
            Some(b) if b.len() > KEPT_VALUE_BYTES => omitted(b.len()),
            _ => text_at(i).map_or(serde_json::Value::Null, serde_json::Value::String),
        };
        (name.clone(), value)
    });
    InvalidEvent {
        reason: InvalidReason::TooLarge,
        message,
        source: t.name.clone(),
        id: text_at(t.id),
        aggregate_id: text_at(t.aggregate_id),
        row: serde_json::Value::Object(columns.collect()),
        tx: *tx,
    }
}

fn invalid_row(
    t: &OutboxTable,
    row: &TupleData,
    tx: &TxContext,
    reason: InvalidReason,
    message: String,
) -> InvalidEvent {
    let text_at = |i: usize| match row.0.get(i) {
        Some(TupleValue::Text(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    InvalidEvent {
        reason,
        message,
        source: t.name.clone(),
        id: text_at(t.id),
        aggregate_id: text_at(t.aggregate_id),
        row: row_json(
            t.column_names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), text_at(i))),
        ),
        tx: *tx,
    }
}

#[cfg(test)]
mod tests;
