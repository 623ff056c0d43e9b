use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use outbox_connectors::{ErrorClass, EventOutcome, OutboxEvent, PublishError};
use prometheus::IntCounter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::OtlpConfig;

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn event(id: &str, destination: &str, traceparent: Option<&str>) -> OutboxEvent {
    let mut headers = vec![("id".into(), Bytes::from(id.to_string()))];
    if let Some(tp) = traceparent {
        headers.push(("traceparent".into(), Bytes::from(tp.to_string())));
        headers.push((
            "tracestate".into(),
            Bytes::from_static(b"congo=t61rcWkgMzE"),
        ));
    }
    OutboxEvent {
        id: id.into(),
        aggregate_type: "Order".into(),
        aggregate_id: "o-1".into(),
        event_type: "T".into(),
        payload: Some(Bytes::from_static(b"{}")),
        headers,
        destination: Arc::from(destination),
        timestamp_ms: 0,
        commit_lsn: 1,
        commit_time_us: 0,
        seq: 1,
        partition: None,
    }
}

fn ok(e: OutboxEvent) -> EventOutcome {
    EventOutcome {
        event: e,
        result: Ok(()),
    }
}

#[test]
fn a_traceparent_is_read_only_when_well_formed() {
    let c = SpanContext::from_traceparent(TP, Some("a=b")).unwrap();
    assert_eq!(c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(c.span_id, "00f067aa0ba902b7");
    assert_eq!(c.trace_state.as_deref(), Some("a=b"));
    for bad in [
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
        "garbage",
    ] {
        assert_eq!(SpanContext::from_traceparent(bad, None), None, "{bad}");
    }
}

fn sink() -> (SpanSink, mpsc::Receiver<BatchSpan>, IntCounter) {
    let (tx, rx) = mpsc::channel(1);
    let dropped = IntCounter::new("d", "d").unwrap();
    (
        SpanSink {
            tx,
            dropped: dropped.clone(),
        },
        rx,
        dropped,
    )
}

#[test]
fn a_batch_span_links_every_traced_event_and_counts_failures() {
    let (sink, mut rx, dropped) = sink();
    let started = Instant::now() - Duration::from_millis(20);
    let failed = EventOutcome {
        event: event("e3", "orders", Some(TP)),
        result: Err(PublishError::new(ErrorClass::Permanent, "x", "rejected")),
    };
    sink.batch(
        "kafka",
        started,
        &[
            ok(event("e1", "orders", Some(TP))),
            ok(event("e2", "orders", None)),
            failed,
        ],
    );
    // The queue (capacity 1 here) is full: the next span is dropped and counted.
    sink.batch("sqs", Instant::now(), &[ok(event("e4", "q", None))]);
    assert_eq!(dropped.get(), 1);
    let span = rx.try_recv().unwrap();
    assert_eq!(span.system, "kafka");
    assert_eq!(span.destination.as_deref(), Some("orders"));
    assert_eq!((span.events, span.failed), (3, 1));
    let linked: Vec<&str> = span.links.iter().map(|l| l.event_id.as_str()).collect();
    assert_eq!(linked, ["e1", "e3"]);
    assert!(span.end_unix_nanos - span.start_unix_nanos >= 20_000_000);
    assert_eq!(span.trace_id.len(), 32);
    assert_eq!(span.span_id.len(), 16);
    assert!(rx.try_recv().is_err());
}

#[test]
fn links_past_the_limit_are_counted_not_sent() {
    let (sink, mut rx, _) = sink();
    let outcomes: Vec<_> = (0..MAX_LINKS + 5)
        .map(|i| {
            ok(event(
                &format!("e{i}"),
                if i == 0 { "a" } else { "b" },
                Some(TP),
            ))
        })
        .collect();
    sink.batch("sns", Instant::now(), &outcomes);
    let span = rx.try_recv().unwrap();
    assert_eq!(span.links.len(), MAX_LINKS);
    assert_eq!(span.dropped_links, 5);
    assert_eq!(span.destination, None);
    assert_eq!(span.system, "aws_sns");
}

#[test]
fn the_request_is_otlp_json() {
    let span = BatchSpan {
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        span_id: "b7ad6b7169203331".into(),
        system: "kafka",
        destination: Some("outbox.event.Order".into()),
        events: 2,
        failed: 0,
        start_unix_nanos: 1_700_000_000_000_000_000,
        end_unix_nanos: 1_700_000_000_005_000_000,
        links: vec![Link {
            context: SpanContext::from_traceparent(TP, Some("congo=t61rcWkgMzE")).unwrap(),
            event_id: "e1".into(),
        }],
        dropped_links: 0,
    };
    let body: serde_json::Value = serde_json::from_slice(&encode("orders-relay", &[span])).unwrap();
    let rs = &body["resourceSpans"][0];
    assert_eq!(
        rs["resource"]["attributes"][0],
        serde_json::json!({"key": "service.name", "value": {"stringValue": "orders-relay"}})
    );
    let s = &rs["scopeSpans"][0]["spans"][0];
    assert_eq!(s["traceId"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(s["spanId"], "b7ad6b7169203331");
    assert_eq!(s["name"], "send outbox.event.Order");
    assert_eq!(s["kind"], 4);
    assert_eq!(s["startTimeUnixNano"], "1700000000000000000");
    assert_eq!(s["endTimeUnixNano"], "1700000000005000000");
    assert_eq!(s["status"], serde_json::json!({"code": 1}));
    assert!(s["attributes"].as_array().unwrap().contains(
        &serde_json::json!({"key": "messaging.batch.message_count", "value": {"intValue": "2"}})
    ));
    assert_eq!(
        s["links"][0],
        serde_json::json!({
            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
            "spanId": "00f067aa0ba902b7",
            "traceState": "congo=t61rcWkgMzE",
            "attributes": [{"key": "messaging.message.id", "value": {"stringValue": "e1"}}],
        })
    );
}

#[test]
fn endpoints_are_plain_http_base_urls() {
    let target = |e: &str| {
        OtlpConfig {
            endpoint: e.into(),
            ..OtlpConfig::default()
        }
        .target()
        .map(|t| (t.authority, t.path))
        .map_err(|e| e.to_string())
    };
    assert_eq!(
        target("http://127.0.0.1:4318"),
        Ok(("127.0.0.1:4318".into(), "/v1/traces".into()))
    );
    assert_eq!(
        target("http://collector/otlp/"),
        Ok(("collector:80".into(), "/otlp/v1/traces".into()))
    );
    assert!(target("https://api.honeycomb.io")
        .unwrap_err()
        .contains("https is not supported"));
    assert!(target("127.0.0.1:4318")
        .unwrap_err()
        .contains("not an http:// URL"));
}

/// The exporter posts the spans to `/v1/traces` with the configured headers, and at
/// `finish` sends what is still queued.
#[tokio::test]
async fn the_exporter_posts_queued_spans_and_flushes_at_finish() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if body.len() >= len {
                    break;
                }
            }
        }
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            .await
            .unwrap();
        String::from_utf8(request).unwrap()
    });
    let mut config = OtlpConfig {
        endpoint: format!("http://{addr}"),
        ..OtlpConfig::default()
    };
    config
        .headers
        .insert("x-token".into(), crate::config::Secret::new("t0k"));
    let exported = IntCounter::new("e", "e").unwrap();
    let dropped = IntCounter::new("d", "d").unwrap();
    let (sink, exporter) = start(config, exported.clone(), dropped.clone());
    sink.batch(
        "kafka",
        Instant::now(),
        &[ok(event("e1", "orders", Some(TP)))],
    );
    exporter.finish(Duration::from_secs(5)).await;
    let request = server.await.unwrap();
    assert!(
        request.starts_with("POST /v1/traces HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains("content-type: application/json"),
        "{request}"
    );
    assert!(request.contains("x-token: t0k"), "{request}");
    assert!(
        request.contains("\"4bf92f3577b34da6a3ce929d0e0e4736\""),
        "{request}"
    );
    assert_eq!((exported.get(), dropped.get()), (1, 0));
}
