//! Outbox events as CloudEvents 1.0, in the Kafka protocol binding's binary or structured
//! content mode (`outbox.cloudevents`).
//!
//! The mapping is applied when the row is mapped, so the attributes are part of the
//! event's headers (and, in structured mode, its body) from then on: a parked event is
//! stored with them and a redriven one carries exactly what a directly published one
//! does. SNS/SQS carry the same names as message attributes (see `connectors/src/aws`).
//!
//! | attribute | from |
//! |---|---|
//! | `specversion` | `1.0` |
//! | `id` | the event id (`columns.id`) |
//! | `source` | `outbox.cloudevents.source` |
//! | `type` | the event type (`columns.event_type`) |
//! | `subject` | the aggregate id (omitted when empty) |
//! | `time` | the event timestamp (`columns.timestamp`, else the commit time), RFC 3339, UTC, milliseconds |
//! | `datacontenttype` | `outbox.cloudevents.data_content_type` (omitted when empty or without data) |

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat};
use outbox_connectors::{OutboxEvent, Text};
use serde_json::Value;

use crate::config::{CloudEventsConfig, CloudEventsMode};

pub const SPEC_VERSION: &str = "1.0";
/// The header that carries `datacontenttype` in binary mode and the event format in
/// structured mode (Kafka binding 3.2.1 and 3.3.1).
pub const CONTENT_TYPE: &str = "content-type";
/// The JSON event format's media type (Kafka binding 3.3.1's example, verbatim).
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json; charset=UTF-8";
/// Binary-mode attribute headers are named `ce_<attribute>` (Kafka binding 3.2.3.1).
pub const PREFIX: &str = "ce_";

/// Checks `outbox.cloudevents` (errors name the key).
pub fn validate(c: &CloudEventsConfig) -> Result<(), String> {
    if c.source.is_empty() {
        return Err("outbox.cloudevents.source: required (a URI-reference naming the producer, e.g. /orders-service)".into());
    }
    if let Some(bad) = uri_reference_problem(&c.source) {
        return Err(format!(
            "outbox.cloudevents.source: {:?} is not a URI-reference: {bad}",
            c.source
        ));
    }
    if !c.data_content_type.is_empty() && !is_media_type(&c.data_content_type) {
        return Err(format!(
            "outbox.cloudevents.data_content_type: {:?} is not a media type (type/subtype[; parameter=value])",
            c.data_content_type
        ));
    }
    Ok(())
}

/// Why `s` is not an RFC 3986 URI-reference, if it is not: only the characters RFC 3986
/// allows, `%` only before two hex digits, and a scheme (text before the first `:`
/// that comes before any `/?#`) that starts with a letter.
fn uri_reference_problem(s: &str) -> Option<String> {
    const ALLOWED: &str = "-._~!$&'()*+,;=:@/?#[]%";
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ALLOWED.contains(*c)))
    {
        return Some(format!("{c:?} must be percent-encoded"));
    }
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit())
        {
            return Some("'%' is not followed by two hex digits".into());
        }
    }
    let first_delimiter = s.find(['/', '?', '#']).unwrap_or(s.len());
    if let Some(colon) = s[..first_delimiter].find(':') {
        let scheme = &s[..colon];
        let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !valid {
            return Some(format!(
                "scheme {scheme:?} is not a letter followed by letters, digits, '+', '-' or '.'"
            ));
        }
    }
    None
}

/// `type/subtype` of RFC 7231 tokens, optionally followed by `; parameters`.
fn is_media_type(s: &str) -> bool {
    let essence = s.split(';').next().unwrap_or("").trim();
    let token = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
    };
    matches!(essence.split_once('/'), Some((t, sub)) if token(t) && token(sub))
}

/// Whether data of `content_type` is JSON (`application/json`, `text/json`, `…+json`), or
/// no type is declared, which the JSON event format reads as JSON.
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.is_empty()
        || essence == "application/json"
        || essence == "text/json"
        || essence.ends_with("+json")
}

/// `outbox.cloudevents`, ready to apply.
#[derive(Debug, Clone)]
pub struct CloudEvents {
    mode: CloudEventsMode,
    source: String,
    data_content_type: String,
}

/// An event that cannot be a CloudEvent: which required attribute is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingAttribute {
    Id,
    Type,
}

impl CloudEvents {
    pub fn new(config: &CloudEventsConfig) -> Self {
        CloudEvents {
            mode: config.mode,
            source: config.source.clone(),
            data_content_type: config.data_content_type.clone(),
        }
    }

    /// The context attributes of `event` (`data` and `datacontenttype` aside), in the
    /// order they are written.
    fn attributes(
        &self,
        event: &OutboxEvent,
    ) -> Result<Vec<(&'static str, String)>, MissingAttribute> {
        if event.id.is_empty() {
            return Err(MissingAttribute::Id);
        }
        if event.event_type.is_empty() {
            return Err(MissingAttribute::Type);
        }
        let mut attrs = vec![
            ("specversion", SPEC_VERSION.to_string()),
            ("id", event.id.to_string()),
            ("source", self.source.clone()),
            ("type", event.event_type.to_string()),
        ];
        // Optional attributes, when present, must be non-empty (spec 3.1).
        if !event.aggregate_id.is_empty() {
            attrs.push(("subject", event.aggregate_id.to_string()));
        }
        if let Some(time) = DateTime::from_timestamp_millis(event.timestamp_ms) {
            attrs.push(("time", time.to_rfc3339_opts(SecondsFormat::Millis, true)));
        }
        Ok(attrs)
    }

    /// Turns `event` into a CloudEvent in place: binary mode appends `ce_*` headers and
    /// `content-type`; structured mode replaces the payload by the JSON event and appends
    /// `content-type: application/cloudevents+json`. A NULL payload stays a tombstone in
    /// both modes, carrying the `ce_*` headers: the binary-mode CloudEvent without data
    /// (Kafka binding 3.2.2), since a structured one would not be a tombstone (3.3.2).
    pub fn apply(&self, event: &mut OutboxEvent) -> Result<(), MissingAttribute> {
        let attrs = self.attributes(event)?;
        let content_type = Some(self.data_content_type.as_str()).filter(|c| !c.is_empty());
        match (&event.payload, self.mode) {
            (Some(payload), CloudEventsMode::Structured) => {
                let body = structured(&attrs, content_type, payload);
                event.payload = Some(Bytes::from(body));
                event.headers.push((
                    Text::from_static(CONTENT_TYPE),
                    Bytes::from_static(STRUCTURED_CONTENT_TYPE.as_bytes()),
                ));
            }
            (payload, _) => {
                let has_data = payload.is_some();
                event.headers.extend(attrs.into_iter().map(|(name, value)| {
                    (Text::from(format!("{PREFIX}{name}")), Bytes::from(value))
                }));
                if let (Some(ct), true) = (content_type, has_data) {
                    event.headers.push((
                        Text::from_static(CONTENT_TYPE),
                        Bytes::copy_from_slice(ct.as_bytes()),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The JSON event format: the attributes, then `data` (the payload's own JSON text,
/// byte for byte, when the content type is JSON and the payload is valid JSON) or
/// `data_base64` (anything else, so no byte is lost or reinterpreted).
fn structured(
    attrs: &[(&'static str, String)],
    content_type: Option<&str>,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 256);
    out.push(b'{');
    let member = |out: &mut Vec<u8>, name: &str, value: &str| {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(Value::String(name.to_string()).to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(Value::String(value.to_string()).to_string().as_bytes());
    };
    for (name, value) in attrs {
        member(&mut out, name, value);
    }
    if let Some(ct) = content_type {
        member(&mut out, "datacontenttype", ct);
    }
    let json = is_json_media_type(content_type.unwrap_or(""))
        && serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok();
    if json {
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(payload);
    } else {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
        member(&mut out, "data_base64", &encoded);
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests;
