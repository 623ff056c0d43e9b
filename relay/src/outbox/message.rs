//! Table-less events written with `pg_logical_emit_message`.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// The JSON content of an outbox logical message. Field names match the outbox columns.
#[derive(Debug, Deserialize)]
pub struct MessageEvent<'a> {
    #[serde(borrow)]
    pub id: Option<&'a RawValue>,
    pub aggregatetype: Option<Value>,
    #[serde(borrow)]
    pub aggregateid: Option<&'a RawValue>,
    #[serde(rename = "type")]
    pub event_type: Option<Value>,
    #[serde(borrow)]
    pub payload: Option<&'a RawValue>,
    pub timestamp: Option<i64>,
    pub tracingspancontext: Option<String>,
}

/// A JSON scalar as text: strings without quotes, numbers as written; null and
/// composites are `None`.
pub fn scalar_text(raw: Option<&RawValue>) -> Option<String> {
    let raw = raw?;
    match serde_json::from_str::<Value>(raw.get()).ok()? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub fn string_field(v: &Option<Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The payload exactly as written in the message (a JSON null is a tombstone).
pub fn payload_bytes(raw: Option<&RawValue>, content: &Bytes) -> Option<Bytes> {
    let raw = raw?;
    if raw.get() == "null" {
        return None;
    }
    // The raw value borrows from `content` when it was parsed from it: slice instead of
    // copying. Anything else (never expected) is copied.
    let (base, ptr, len) = (
        content.as_ptr() as usize,
        raw.get().as_ptr() as usize,
        raw.get().len(),
    );
    if ptr >= base && ptr + len <= base + content.len() {
        Some(content.slice(ptr - base..ptr - base + len))
    } else {
        Some(Bytes::copy_from_slice(raw.get().as_bytes()))
    }
}
