use std::sync::Arc;

use bytes::Bytes;
use outbox_connectors::{OutboxEvent, Text};

use super::*;

fn config(mode: CloudEventsMode) -> CloudEventsConfig {
    CloudEventsConfig {
        mode,
        source: "/orders-service".into(),
        data_content_type: "application/json".into(),
    }
}

fn event(payload: Option<&[u8]>) -> OutboxEvent {
    OutboxEvent {
        id: "5f0b1d7e-3a47-4c1c-9b1e-2a8f6d3c4b5a".into(),
        aggregate_type: "Order".into(),
        aggregate_id: "order-1".into(),
        event_type: "OrderPaid".into(),
        payload: payload.map(Bytes::copy_from_slice),
        headers: vec![(
            "id".into(),
            Bytes::from_static(b"5f0b1d7e-3a47-4c1c-9b1e-2a8f6d3c4b5a"),
        )],
        destination: Arc::from("outbox.event.Order"),
        partition: None,
        // 2026-11-18T11:06:40.123Z
        timestamp_ms: 1_795_000_000_123,
        commit_lsn: 0,
        commit_time_us: 0,
        seq: 0,
    }
}

fn headers(e: &OutboxEvent) -> Vec<(&str, &str)> {
    e.headers
        .iter()
        .map(|(k, v)| (k.as_str(), std::str::from_utf8(v).unwrap()))
        .collect()
}

/// What the CloudEvents spec and the Kafka binding require of binary-mode headers.
fn assert_binary_mode_rules(h: &[(&str, &str)]) {
    let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
    assert_eq!(get("ce_specversion"), Some("1.0"));
    for required in ["ce_id", "ce_source", "ce_type"] {
        assert!(get(required).is_some_and(|v| !v.is_empty()), "{required}");
    }
    if let Some(time) = get("ce_time") {
        chrono::DateTime::parse_from_rfc3339(time).expect("ce_time is RFC 3339");
    }
    for (name, _) in h.iter().filter(|(k, _)| k.starts_with("ce_")) {
        let attribute = &name[3..];
        assert!(
            !attribute.is_empty()
                && attribute
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "attribute names are lowercase a-z0-9: {name}"
        );
    }
}

#[test]
fn binary_mode_appends_ce_headers_and_keeps_the_payload_and_debezium_headers() {
    let ce = CloudEvents::new(&config(CloudEventsMode::Binary));
    let payload = br#"{"orderId": "order-1", "paid": true}"#;
    let mut e = event(Some(payload));
    ce.apply(&mut e).unwrap();
    assert_eq!(e.payload.as_deref(), Some(&payload[..]), "data as-is");
    assert_eq!(
        headers(&e),
        vec![
            ("id", "5f0b1d7e-3a47-4c1c-9b1e-2a8f6d3c4b5a"),
            ("ce_specversion", "1.0"),
            ("ce_id", "5f0b1d7e-3a47-4c1c-9b1e-2a8f6d3c4b5a"),
            ("ce_source", "/orders-service"),
            ("ce_type", "OrderPaid"),
            ("ce_subject", "order-1"),
            ("ce_time", "2026-11-18T11:06:40.123Z"),
            ("content-type", "application/json"),
        ]
    );
    assert_binary_mode_rules(&headers(&e));
}

#[test]
fn binary_mode_tombstone_is_a_cloudevent_without_data() {
    let ce = CloudEvents::new(&config(CloudEventsMode::Binary));
    let mut e = event(None);
    ce.apply(&mut e).unwrap();
    assert_eq!(e.payload, None);
    let h = headers(&e);
    assert!(!h.iter().any(|(k, _)| *k == "content-type"), "{h:?}");
    assert_binary_mode_rules(&h);
}

#[test]
fn structured_mode_inlines_json_data_byte_for_byte() {
    let ce = CloudEvents::new(&config(CloudEventsMode::Structured));
    // jsonb's own spacing and key order are kept: data is the payload's text.
    let mut e = event(Some(br#"{"paid": true, "orderId": "order-1"}"#));
    ce.apply(&mut e).unwrap();
    assert_eq!(
        std::str::from_utf8(e.payload.as_deref().unwrap()).unwrap(),
        r#"{"specversion":"1.0","id":"5f0b1d7e-3a47-4c1c-9b1e-2a8f6d3c4b5a","source":"/orders-service","type":"OrderPaid","subject":"order-1","time":"2026-11-18T11:06:40.123Z","datacontenttype":"application/json","data":{"paid": true, "orderId": "order-1"}}"#
    );
    assert_eq!(
        headers(&e),
        vec![
            ("id", "5f0b1d7e-3a47-4c1c-9b1e-2a8f6d3c4b5a"),
            (
                "content-type",
                "application/cloudevents+json; charset=UTF-8"
            ),
        ]
    );
    let v: serde_json::Value = serde_json::from_slice(e.payload.as_deref().unwrap()).unwrap();
    assert_eq!(v["data"]["orderId"], "order-1");
}

#[test]
fn structured_mode_base64_encodes_what_is_not_json() {
    let mut c = config(CloudEventsMode::Structured);
    let ce = CloudEvents::new(&c);
    // Declared JSON but not JSON: the bytes are kept exactly, as data_base64.
    let mut e = event(Some(b"not json \xff"));
    ce.apply(&mut e).unwrap();
    let v: serde_json::Value = serde_json::from_slice(e.payload.as_deref().unwrap()).unwrap();
    assert_eq!(v["data_base64"], "bm90IGpzb24g/w==");
    assert!(v.get("data").is_none());
    // A non-JSON content type: even JSON-looking bytes are data_base64.
    c.data_content_type = "application/octet-stream".into();
    let mut e = event(Some(b"{}"));
    CloudEvents::new(&c).apply(&mut e).unwrap();
    assert_eq!(
        std::str::from_utf8(e.payload.as_deref().unwrap()).unwrap(),
        r#"{"specversion":"1.0","id":"5f0b1d7e-3a47-4c1c-9b1e-2a8f6d3c4b5a","source":"/orders-service","type":"OrderPaid","subject":"order-1","time":"2026-11-18T11:06:40.123Z","datacontenttype":"application/octet-stream","data_base64":"e30="}"#
    );
    // No content type declared: JSON by the event format's rule, and none written.
    c.data_content_type = String::new();
    let mut e = event(Some(b"[1,2]"));
    CloudEvents::new(&c).apply(&mut e).unwrap();
    let body = std::str::from_utf8(e.payload.as_deref().unwrap()).unwrap();
    assert!(
        body.ends_with(r#""time":"2026-11-18T11:06:40.123Z","data":[1,2]}"#),
        "{body}"
    );
}

#[test]
fn structured_mode_keeps_tombstones_as_binary_cloudevents() {
    let ce = CloudEvents::new(&config(CloudEventsMode::Structured));
    let mut e = event(None);
    ce.apply(&mut e).unwrap();
    assert_eq!(e.payload, None, "a tombstone stays a tombstone");
    assert_binary_mode_rules(&headers(&e));
}

#[test]
fn empty_required_attributes_and_optional_ones() {
    let ce = CloudEvents::new(&config(CloudEventsMode::Binary));
    let mut e = event(Some(b"{}"));
    e.id = Text::default();
    assert_eq!(ce.apply(&mut e), Err(MissingAttribute::Id));
    let mut e = event(Some(b"{}"));
    e.event_type = Text::default();
    assert_eq!(ce.apply(&mut e), Err(MissingAttribute::Type));
    // An empty aggregate id: no subject (optional attributes are never empty).
    let mut e = event(Some(b"{}"));
    e.aggregate_id = Text::default();
    ce.apply(&mut e).unwrap();
    assert!(!headers(&e).iter().any(|(k, _)| *k == "ce_subject"));
    // Special characters travel as they are in headers and are escaped in JSON.
    let ce = CloudEvents::new(&config(CloudEventsMode::Structured));
    let mut e = event(Some(b"1"));
    e.event_type = "Order \"Paid\"\n".into();
    ce.apply(&mut e).unwrap();
    let v: serde_json::Value = serde_json::from_slice(e.payload.as_deref().unwrap()).unwrap();
    assert_eq!(v["type"], "Order \"Paid\"\n");
    assert_eq!(v["data"], 1);
}

#[test]
fn configuration_is_checked_naming_the_key() {
    let ok = |source: &str| {
        validate(&CloudEventsConfig {
            source: source.into(),
            ..config(CloudEventsMode::Binary)
        })
    };
    for good in [
        "/orders-service",
        "urn:example:orders",
        "https://example.com/orders?x=1#f",
        "orders",
        "/a%20b",
    ] {
        assert_eq!(ok(good), Ok(()), "{good}");
    }
    for (bad, why) in [
        ("", "required"),
        ("/orders service", "percent-encoded"),
        ("/a%2", "two hex digits"),
        ("1http://x", "scheme"),
    ] {
        let e = ok(bad).unwrap_err();
        assert!(
            e.starts_with("outbox.cloudevents.source:") && e.contains(why),
            "{bad}: {e}"
        );
    }
    let e = validate(&CloudEventsConfig {
        data_content_type: "json".into(),
        ..config(CloudEventsMode::Binary)
    })
    .unwrap_err();
    assert!(
        e.starts_with("outbox.cloudevents.data_content_type:"),
        "{e}"
    );
    assert!(validate(&CloudEventsConfig {
        data_content_type: "application/json; charset=utf-8".into(),
        ..config(CloudEventsMode::Binary)
    })
    .is_ok());
}
