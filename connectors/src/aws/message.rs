//! Turning an [`OutboxEvent`] into an SNS / SQS message: body, attributes, FIFO ids, size.

use sha2::{Digest, Sha256};

use super::offload::{self, Offload, RESERVED_ATTRIBUTE};
use super::AwsConfig;
use crate::{ErrorClass, OutboxEvent, PublishError};

/// SQS allows at most 10 message attributes per message (SNS → SQS delivery too).
pub const MAX_ATTRIBUTES: usize = 10;

/// One message ready to be put into a batch entry.
#[derive(Debug)]
pub struct Message {
    /// The body sent: the event's body, or the S3 pointer when offloaded.
    pub body: String,
    /// `(name, value)`, all of data type `String`.
    pub attributes: Vec<(String, String)>,
    /// Offloaded to S3: where the body goes. The message then also carries the
    /// `ExtendedPayloadSize` attribute (see [`Message::number_attributes`]).
    pub offload: Option<Offload>,
    /// FIFO only.
    pub group_id: Option<String>,
    /// FIFO only.
    pub deduplication_id: Option<String>,
    /// Body + attribute names, types and values, as AWS counts against the size limit.
    pub size: usize,
}

impl Message {
    /// The attributes of data type `Number`: `ExtendedPayloadSize` when offloaded.
    pub fn number_attributes(&self) -> Vec<(&'static str, String)> {
        match &self.offload {
            Some(o) => vec![(RESERVED_ATTRIBUTE, o.body.len().to_string())],
            None => Vec::new(),
        }
    }

    /// Every message attribute as (name, SNS/SQS data type, value): the `String` ones,
    /// then the `Number` ones. Both clients build their entries from this.
    pub fn typed_attributes(&self) -> Vec<(String, &'static str, String)> {
        let strings = self
            .attributes
            .iter()
            .map(|(name, value)| (name.clone(), "String", value.clone()));
        let numbers = self
            .number_attributes()
            .into_iter()
            .map(|(name, value)| (name.to_string(), "Number", value));
        strings.chain(numbers).collect()
    }
}

/// Attribute names, data types and values, as AWS counts them against the size limit.
fn attributes_size(attributes: &[(String, String)]) -> usize {
    attributes
        .iter()
        .map(|(n, v)| n.len() + "String".len() + v.len())
        .sum()
}

/// Maps an id onto what `MessageGroupId` / `MessageDeduplicationId` accept: 1 to 128
/// characters out of ASCII letters, digits and ``!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~``.
///
/// A valid id is kept unchanged. Any other id (empty, longer than 128 characters, or with
/// another character such as a space or non-ASCII) becomes `h-` followed by the lowercase
/// hex SHA-256 of its UTF-8 bytes (66 characters), so the mapping is deterministic and two
/// different aggregate ids share a group only on a SHA-256 collision.
pub fn fifo_id(id: &str) -> String {
    let valid = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b.is_ascii_punctuation());
    if valid {
        id.to_string()
    } else {
        format!("h-{}", hex::encode(Sha256::digest(id.as_bytes())))
    }
}

/// Whether `name` is a valid message attribute name: 1 to 256 of `A-Za-z0-9_-.`, not
/// starting with `AWS.` / `Amazon.` (any case), no leading, trailing or doubled `.`.
fn valid_attribute_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.")
}

/// Whether every character is one SQS accepts in a message (`#x9 #xA #xD #x20-#xD7FF
/// #xE000-#xFFFD #x10000-#x10FFFF`); SNS delivers to SQS, so both are held to it.
fn valid_text(text: &str) -> bool {
    text.chars().all(|c| {
        matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
    })
}

/// The header a CloudEvent in binary content mode carries (`outbox.cloudevents`).
const CLOUDEVENTS_MARKER: &str = "ce_specversion";
/// The header carrying a CloudEvent's `datacontenttype` (binary mode) or event format
/// (structured mode).
const CONTENT_TYPE: &str = "content-type";

/// The message attributes of an event, at most [`MAX_ATTRIBUTES`]:
/// `id`, `type`, `aggregatetype`, `aggregateid` first, then `traceparent` and `tracestate`
/// headers, then the other headers in order until the limit. Headers whose name is not a
/// valid attribute name, whose value is empty or not valid text, or that repeat a name
/// already taken, are left out (the event fields win over headers of the same name).
///
/// A CloudEvent goes first: in binary mode (a `ce_specversion` header) its `ce_*` and
/// `content-type` headers, then `aggregatetype`, and `id`, `type` and `aggregateid` are
/// not sent since `ce_id`, `ce_type` and `ce_subject` carry the same values; otherwise
/// seven CloudEvents attributes and those four would leave no room for `traceparent`
/// within SQS's ten. In structured mode `content-type` leads the usual attributes.
pub(crate) fn attributes(event: &OutboxEvent) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(MAX_ATTRIBUTES);
    let push = |out: &mut Vec<(String, String)>, name: &str, value: &str| {
        if out.len() < MAX_ATTRIBUTES
            && !value.is_empty()
            && valid_text(value)
            && valid_attribute_name(name)
            && !out.iter().any(|(n, _)| n == name)
        {
            out.push((name.to_string(), value.to_string()));
        }
    };
    let cloudevent = event.headers.iter().any(|(n, _)| n == CLOUDEVENTS_MARKER);
    if cloudevent {
        for (name, value) in &event.headers {
            if name.starts_with("ce_") || name == CONTENT_TYPE {
                if let Ok(value) = std::str::from_utf8(value) {
                    push(&mut out, name, value);
                }
            }
        }
        push(&mut out, "aggregatetype", &event.aggregate_type);
    } else {
        for (name, value) in &event.headers {
            if name == CONTENT_TYPE {
                if let Ok(value) = std::str::from_utf8(value) {
                    push(&mut out, name, value);
                }
            }
        }
        push(&mut out, "id", &event.id);
        push(&mut out, "type", &event.event_type);
        push(&mut out, "aggregatetype", &event.aggregate_type);
        push(&mut out, "aggregateid", &event.aggregate_id);
    }
    for wanted in ["traceparent", "tracestate"] {
        for (name, value) in &event.headers {
            if name == wanted {
                if let Ok(value) = std::str::from_utf8(value) {
                    push(&mut out, name, value);
                }
            }
        }
    }
    for (name, value) in &event.headers {
        // The duplicates a CloudEvent's attributes replace.
        if cloudevent && matches!(name.as_str(), "id" | "type" | "aggregateid") {
            continue;
        }
        if let Ok(value) = std::str::from_utf8(value) {
            push(&mut out, name, value);
        }
    }
    out
}

fn envelope(event: &OutboxEvent) -> String {
    use serde_json::{Map, Value};
    let mut object = Map::new();
    object.insert("id".into(), Value::String(event.id.to_string()));
    object.insert("type".into(), Value::String(event.event_type.to_string()));
    object.insert(
        "aggregatetype".into(),
        Value::String(event.aggregate_type.to_string()),
    );
    object.insert(
        "aggregateid".into(),
        Value::String(event.aggregate_id.to_string()),
    );
    let (payload, base64) = match &event.payload {
        None => (Value::Null, None),
        Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
            Ok(value) => (value, None),
            Err(_) => match std::str::from_utf8(bytes) {
                Ok(text) => (Value::String(text.to_string()), None),
                Err(_) => (Value::Null, Some(aws_smithy_types::base64::encode(bytes))),
            },
        },
    };
    object.insert("payload".into(), payload);
    if let Some(encoded) = base64 {
        object.insert("payload_base64".into(), Value::String(encoded));
    }
    Value::Object(object).to_string()
}

/// Builds the message of `event`, or the permanent error that keeps it from being sent:
/// inline, or with `large_payloads.mode: s3` and a size over the threshold (or `always`),
/// a pointer to the body's S3 object (see `offload.rs`).
pub(crate) fn build(event: &OutboxEvent, config: &AwsConfig) -> Result<Message, PublishError> {
    let raw_payload = config.raw_payload;
    let fifo = config.fifo;
    let max_bytes = config.max_message_bytes;
    let permanent = |kind: &'static str, why: String| {
        PublishError::new(
            ErrorClass::Permanent,
            kind,
            format!("event {} to {}: {why}", event.id, event.destination),
        )
    };
    let body = if raw_payload {
        let Some(payload) = &event.payload else {
            return Err(permanent(
                "invalid_payload",
                "the payload is NULL and SNS/SQS cannot carry an empty message (set raw_payload: false to send an envelope)".into(),
            ));
        };
        let Ok(text) = std::str::from_utf8(payload) else {
            return Err(permanent(
                "invalid_payload",
                "the payload is not UTF-8 text and SNS/SQS bodies are strings (set raw_payload: false to send it base64-encoded in an envelope)".into(),
            ));
        };
        if text.is_empty() {
            return Err(permanent(
                "invalid_payload",
                "the payload is empty and SNS/SQS cannot carry an empty message".into(),
            ));
        }
        text.to_string()
    } else {
        envelope(event)
    };
    if !valid_text(&body) {
        return Err(permanent(
            "invalid_payload",
            "the body contains characters SNS/SQS reject (control characters other than tab, LF, CR)".into(),
        ));
    }
    let mut attributes = attributes(event);
    let inline_size = body.len() + attributes_size(&attributes);
    let large = &config.large_payloads;
    let offloaded = large.offloads() && (large.always || inline_size > config.offload_threshold());
    let (body, offload, size) = if offloaded {
        // The reserved attribute takes one of SQS's ten.
        attributes.truncate(MAX_ATTRIBUTES - 1);
        let bucket = large.bucket.clone().unwrap_or_default();
        let key = offload::object_key(&large.prefix, &event.id);
        let pointer = offload::pointer_body(&bucket, &key);
        let stored = body.into_bytes();
        let size = pointer.len()
            + attributes_size(&attributes)
            + RESERVED_ATTRIBUTE.len()
            + "Number".len()
            + stored.len().to_string().len();
        let offload = Offload {
            bucket,
            key,
            body: stored.into(),
            stored: Default::default(),
        };
        (pointer, Some(offload), size)
    } else {
        (body, None, inline_size)
    };
    if size > max_bytes {
        let what = if offloaded {
            "the S3 pointer message"
        } else {
            "the message"
        };
        return Err(permanent(
            "message_too_large",
            format!(
                "{what} is {size} bytes (body and attributes), over the {max_bytes}-byte limit"
            ),
        ));
    }
    let (group_id, deduplication_id) = if fifo {
        (Some(fifo_id(&event.aggregate_id)), Some(fifo_id(&event.id)))
    } else {
        (None, None)
    };
    Ok(Message {
        body,
        attributes,
        offload,
        group_id,
        deduplication_id,
        size,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;

    fn event(payload: Option<&[u8]>, headers: &[(&str, &str)]) -> OutboxEvent {
        OutboxEvent {
            id: "e-1".into(),
            aggregate_type: "Order".into(),
            aggregate_id: "order-1".into(),
            event_type: "OrderPaid".into(),
            payload: payload.map(Bytes::copy_from_slice),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).into(), Bytes::copy_from_slice(v.as_bytes())))
                .collect(),
            destination: Arc::from("arn:aws:sns:us-east-1:123456789012:orders"),
            partition: None,
            timestamp_ms: 0,
            commit_lsn: 0,
            commit_time_us: 0,
            seq: 0,
        }
    }

    #[test]
    fn fifo_ids_keep_valid_ones_and_hash_the_rest() {
        assert_eq!(fifo_id("order-1"), "order-1");
        assert_eq!(
            fifo_id("a!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~z"),
            "a!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~z"
        );
        let long = "x".repeat(129);
        assert_eq!(fifo_id(&"x".repeat(128)), "x".repeat(128));
        for bad in [long.as_str(), "with space", "ünïcode", ""] {
            let mapped = fifo_id(bad);
            assert!(mapped.starts_with("h-") && mapped.len() == 66, "{mapped}");
            assert_eq!(mapped, fifo_id(bad), "deterministic");
        }
        assert_ne!(fifo_id("with space"), fifo_id("with  space"));
    }

    #[test]
    fn attributes_fixed_first_then_trace_then_headers_up_to_ten() {
        let mut headers = vec![
            ("h0", "v"),
            ("bad name", "v"),
            ("id", "spoofed"),
            ("empty", ""),
        ];
        let names: Vec<String> = (1..20).map(|i| format!("h{i}")).collect();
        headers.extend(names.iter().map(|n| (n.as_str(), "v")));
        headers.push((
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ));
        let attrs = attributes(&event(Some(b"{}"), &headers));
        let names: Vec<&str> = attrs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "id",
                "type",
                "aggregatetype",
                "aggregateid",
                "traceparent",
                "h0",
                "h1",
                "h2",
                "h3",
                "h4"
            ]
        );
        assert_eq!(attrs[0].1, "e-1");
    }

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn cloudevents_binary_attributes_fit_sqs_ten_with_trace_context() {
        // The headers the relay's mapper writes in binary mode, with a trace context and
        // the commit-LSN header.
        let headers = [
            ("id", "e-1"),
            ("traceparent", TP),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("outbox-relay-commit-lsn", "0/16B3748"),
            ("ce_specversion", "1.0"),
            ("ce_id", "e-1"),
            ("ce_source", "/orders-service"),
            ("ce_type", "OrderPaid"),
            ("ce_subject", "order-1"),
            ("ce_time", "2026-11-18T11:06:40.123Z"),
            ("content-type", "application/json"),
        ];
        let attrs = attributes(&event(Some(b"{}"), &headers));
        let expected: Vec<(String, String)> = [
            ("ce_specversion", "1.0"),
            ("ce_id", "e-1"),
            ("ce_source", "/orders-service"),
            ("ce_type", "OrderPaid"),
            ("ce_subject", "order-1"),
            ("ce_time", "2026-11-18T11:06:40.123Z"),
            ("content-type", "application/json"),
            ("aggregatetype", "Order"),
            ("traceparent", TP),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        assert_eq!(attrs, expected);

        // Structured mode: the event format's content-type leads the usual attributes.
        let headers = [
            ("id", "e-1"),
            (
                "content-type",
                "application/cloudevents+json; charset=UTF-8",
            ),
        ];
        let attrs = attributes(&event(Some(b"{}"), &headers));
        let names: Vec<&str> = attrs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["content-type", "id", "type", "aggregatetype", "aggregateid"]
        );
        assert_eq!(attrs[0].1, "application/cloudevents+json; charset=UTF-8");
    }

    fn config(raw_payload: bool, fifo: bool) -> AwsConfig {
        AwsConfig {
            raw_payload,
            fifo,
            ..AwsConfig::default()
        }
    }

    #[test]
    fn bodies_and_limits() {
        let m = build(&event(Some(b"{\"a\":1}"), &[]), &config(true, true)).unwrap();
        assert_eq!(m.body, "{\"a\":1}");
        assert_eq!(m.group_id.as_deref(), Some("order-1"));
        assert_eq!(m.deduplication_id.as_deref(), Some("e-1"));
        let m = build(&event(Some(b"{\"a\":1}"), &[]), &config(false, false)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&m.body).unwrap();
        assert_eq!(v["payload"]["a"], 1);
        assert_eq!(v["aggregateid"], "order-1");
        assert!(m.group_id.is_none());
        let m = build(&event(Some(&[0xff, 0]), &[]), &config(false, false)).unwrap();
        assert!(m.body.contains("payload_base64"));
        let err = build(&event(None, &[]), &config(true, false)).unwrap_err();
        assert_eq!(err.class, ErrorClass::Permanent);
        let big = vec![b'x'; 262_144];
        let err = build(&event(Some(&big), &[]), &config(true, false)).unwrap_err();
        assert_eq!(err.kind, "message_too_large");
        assert!(
            err.message.contains("e-1") && err.message.contains("arn:aws:sns"),
            "{err}"
        );
    }

    fn offloading(threshold: Option<usize>, always: bool) -> AwsConfig {
        AwsConfig {
            fifo: true,
            large_payloads: crate::aws::config::LargePayloads {
                mode: crate::aws::config::LargePayloadMode::S3,
                bucket: Some("outbox-bodies".into()),
                prefix: "relay/".into(),
                threshold_bytes: threshold,
                always,
                ..Default::default()
            },
            ..AwsConfig::default()
        }
    }

    #[test]
    fn over_the_threshold_the_body_goes_to_s3_and_a_pointer_is_sent() {
        let headers: Vec<(String, String)> = (0..12)
            .map(|i| (format!("h{i}"), "v".to_string()))
            .collect();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let big = vec![b'x'; 300_000];
        let m = build(&event(Some(&big), &headers), &offloading(None, false)).unwrap();
        assert_eq!(
            m.body,
            r#"["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"outbox-bodies","s3Key":"relay/e-1"}]"#
        );
        let o = m.offload.as_ref().unwrap();
        assert_eq!(
            (o.bucket.as_str(), o.key.as_str()),
            ("outbox-bodies", "relay/e-1")
        );
        assert_eq!(&o.body[..], &big[..]);
        assert_eq!(
            m.number_attributes(),
            vec![("ExtendedPayloadSize", "300000".to_string())]
        );
        // Nine attributes of the event's, and the reserved one: SQS's ten.
        assert_eq!(m.attributes.len(), 9);
        let typed = m.typed_attributes();
        assert_eq!(typed.len(), 10);
        assert!(typed[..9].iter().all(|(_, t, _)| *t == "String"));
        assert_eq!(
            typed[9],
            (
                "ExtendedPayloadSize".to_string(),
                "Number",
                "300000".to_string()
            )
        );
        let attrs: usize = m
            .attributes
            .iter()
            .map(|(n, v)| n.len() + 6 + v.len())
            .sum();
        assert_eq!(
            m.size,
            m.body.len() + attrs + "ExtendedPayloadSize".len() + "Number".len() + 6
        );
        assert_eq!(m.group_id.as_deref(), Some("order-1"));
        assert_eq!(m.deduplication_id.as_deref(), Some("e-1"));

        // At the threshold, counting attributes, the message goes as it is.
        let attrs = attributes_size(&attributes(&event(Some(b"{}"), &[])));
        let exact = vec![b'y'; 1000 - attrs];
        let m = build(&event(Some(&exact), &[]), &offloading(Some(1000), false)).unwrap();
        assert!(m.offload.is_none() && m.size == 1000 && m.number_attributes().is_empty());
        let over = vec![b'y'; 1001 - attrs];
        let m = build(&event(Some(&over), &[]), &offloading(Some(1000), false)).unwrap();
        assert!(m.offload.is_some());
        // `always`: even the smallest body.
        let m = build(&event(Some(b"{}"), &[]), &offloading(None, true)).unwrap();
        assert_eq!(&m.offload.unwrap().body[..], b"{}");
        // Without offload, the same 300 kB event is refused.
        let err = build(&event(Some(&big), &[]), &config(true, true)).unwrap_err();
        assert_eq!(err.kind, "message_too_large");
    }
}
