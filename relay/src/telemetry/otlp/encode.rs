//! The OTLP/JSON encoding of batch spans (ExportTraceServiceRequest): trace and span ids
//! as hex, 64-bit integers as decimal strings, enums as numbers, as the OTLP
//! specification's JSON mapping requires.

use serde_json::{json, Value};

use super::BatchSpan;
use crate::telemetry::build;

/// SpanKind PRODUCER.
const KIND_PRODUCER: u8 = 4;
/// Status codes.
const STATUS_OK: u8 = 1;
const STATUS_ERROR: u8 = 2;

fn string_attr(key: &str, value: &str) -> Value {
    json!({ "key": key, "value": { "stringValue": value } })
}

fn int_attr(key: &str, value: i64) -> Value {
    json!({ "key": key, "value": { "intValue": value.to_string() } })
}

/// One request carrying `spans`, with the resource `service.name = service_name`.
pub fn encode(service_name: &str, spans: &[BatchSpan]) -> Vec<u8> {
    let spans: Vec<Value> = spans.iter().map(span).collect();
    let request = json!({
        "resourceSpans": [{
            "resource": { "attributes": [
                string_attr("service.name", service_name),
                string_attr("service.version", build::VERSION),
            ]},
            "scopeSpans": [{
                "scope": { "name": "outbox-relay", "version": build::VERSION },
                "spans": spans,
            }],
        }],
    });
    serde_json::to_vec(&request).expect("a JSON value serializes")
}

fn span(s: &BatchSpan) -> Value {
    let mut attributes = vec![
        string_attr("messaging.system", s.system),
        string_attr("messaging.operation.name", "send"),
        string_attr("messaging.operation.type", "send"),
        int_attr("messaging.batch.message_count", s.events as i64),
    ];
    if let Some(d) = &s.destination {
        attributes.push(string_attr("messaging.destination.name", d));
    }
    if s.failed > 0 {
        attributes.push(int_attr("outbox_relay.events_failed", s.failed as i64));
    }
    let links: Vec<Value> = s
        .links
        .iter()
        .map(|l| {
            let mut link = json!({
                "traceId": l.context.trace_id,
                "spanId": l.context.span_id,
                "attributes": [string_attr("messaging.message.id", &l.event_id)],
            });
            if let Some(state) = &l.context.trace_state {
                link["traceState"] = json!(state);
            }
            link
        })
        .collect();
    let status = if s.failed == 0 {
        json!({ "code": STATUS_OK })
    } else {
        json!({
            "code": STATUS_ERROR,
            "message": format!("{} of {} events failed", s.failed, s.events),
        })
    };
    json!({
        "traceId": s.trace_id,
        "spanId": s.span_id,
        "name": match &s.destination {
            Some(d) => format!("send {d}"),
            None => "send".to_string(),
        },
        "kind": KIND_PRODUCER,
        "startTimeUnixNano": s.start_unix_nanos.to_string(),
        "endTimeUnixNano": s.end_unix_nanos.to_string(),
        "attributes": attributes,
        "links": links,
        "droppedLinksCount": s.dropped_links,
        "status": status,
    })
}
