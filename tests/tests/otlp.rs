//! OpenTelemetry (issue 15.7): the relay exports a span per published batch over
//! OTLP/HTTP to a real receiver (Jaeger v2, deploy/local/jaeger.sh), linked to each
//! event's `traceparent`, so the producer's trace leads to the relay hop. Read back from
//! Jaeger's query API: the span's name, kind and messaging attributes, and a link to
//! every producer span.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use outbox_relay_tests::env;
use outbox_relay_tests::relay::{http_get, metric_sum, Relay, RelaySetup};
use outbox_relay_tests::{pg, unique};

/// A random W3C trace context: (trace id, span id).
fn producer_context() -> (String, String) {
    (
        format!("{:032x}", rand::random::<u128>() | 1),
        format!("{:016x}", rand::random::<u64>() | 1),
    )
}

/// Jaeger's traces of `service`, as JSON.
fn jaeger_traces(service: &str) -> serde_json::Value {
    let (code, body) = http_get(
        env::jaeger_query_port(),
        &format!("/api/traces?service={service}&limit=100&lookback=1h"),
    )
    .expect("Jaeger query API (deploy/local/jaeger.sh start)");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn tag<'a>(span: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_batch_is_a_producer_span_linked_to_its_events_traces() {
    let name = unique("otlp");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let service = format!("relay-{name}");
    let endpoint = format!("http://127.0.0.1:{}", env::jaeger_otlp_port());
    let setup = RelaySetup::new(&name, &table).with_env(&[
        ("RELAY__TELEMETRY__OTLP__ENDPOINT", endpoint.as_str()),
        ("RELAY__TELEMETRY__OTLP__SERVICE_NAME", service.as_str()),
    ]);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    // Five events from five producer traces (the column as Debezium's tracing writes it),
    // and one without a trace context.
    let contexts: Vec<(String, String)> = (0..5).map(|_| producer_context()).collect();
    let mut sql = String::from("BEGIN;");
    for (i, (trace, span)) in contexts.iter().enumerate() {
        sql += &format!(
            "INSERT INTO {table} (aggregatetype, aggregateid, type, payload, tracingspancontext)
             VALUES ('Order', 'o-{i}', 'T', '{{}}', 'traceparent=00-{trace}-{span}-01');"
        );
    }
    sql += &format!(
        "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'o-x', 'T', '{{}}'); COMMIT;"
    );
    client.batch_execute(&sql).await.unwrap();

    // Spans are exported within a second of the batch; read them back from Jaeger.
    let topic = format!("{}.Order", setup.topic_prefix);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (spans, linked) = loop {
        let traces = jaeger_traces(&service);
        let spans: Vec<serde_json::Value> = traces["data"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .flat_map(|t| t["spans"].as_array().cloned().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        let linked: BTreeSet<(String, String)> = spans
            .iter()
            .flat_map(|s| s["references"].as_array().cloned().unwrap_or_default())
            .map(|r| {
                (
                    r["traceID"].as_str().unwrap_or("").to_string(),
                    r["spanID"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let events: i64 = spans
            .iter()
            .filter_map(|s| tag(s, "messaging.batch.message_count")?.as_i64())
            .sum();
        if events >= 6 && contexts.iter().all(|c| linked.contains(c)) {
            break (spans, linked);
        }
        assert!(
            Instant::now() < deadline,
            "Jaeger has {} spans of {service}, {events} events, links {linked:?}; relay log:\n{}",
            spans.len(),
            relay.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Every producer span is linked, and nothing else is (the untraced event adds none).
    let expected: BTreeSet<(String, String)> = contexts.iter().cloned().collect();
    assert_eq!(linked, expected);
    for s in &spans {
        assert_eq!(s["operationName"], format!("send {topic}"), "{s}");
        assert_eq!(
            tag(s, "span.kind").and_then(|v| v.as_str()),
            Some("producer"),
            "{s}"
        );
        assert_eq!(
            tag(s, "messaging.system").and_then(|v| v.as_str()),
            Some("kafka")
        );
        assert_eq!(
            tag(s, "messaging.destination.name").and_then(|v| v.as_str()),
            Some(topic.as_str())
        );
        assert!(s["duration"].as_i64().unwrap() >= 0);
        for r in s["references"].as_array().unwrap() {
            assert_eq!(r["refType"], "FOLLOWS_FROM", "{s}");
        }
    }
    let m = relay.metrics();
    assert!(metric_sum(&m, "outbox_relay_otlp_spans_exported_total", &[]) >= spans.len() as f64);
    assert_eq!(
        metric_sum(&m, "outbox_relay_otlp_spans_dropped_total", &[]),
        0.0
    );

    assert!(relay.terminate(Duration::from_secs(30)).success());
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}

/// A receiver that is not there costs spans, never events: they are dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_receiver_drops_spans_and_delivery_goes_on() {
    let name = unique("otlpdown");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let setup = RelaySetup::new(&name, &table)
        .with_env(&[("RELAY__TELEMETRY__OTLP__ENDPOINT", endpoint.as_str())]);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    client
        .batch_execute(&format!(
            "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'o-1', 'T', '{{}}')"
        ))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = relay.metrics();
        let published = metric_sum(
            &m,
            "outbox_relay_events_published_total",
            &["result=\"ok\""],
        );
        let dropped = metric_sum(&m, "outbox_relay_otlp_spans_dropped_total", &[]);
        if published == 1.0 && dropped >= 1.0 {
            assert_eq!(
                metric_sum(&m, "outbox_relay_otlp_spans_exported_total", &[]),
                0.0
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "published {published}, dropped {dropped}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(relay
        .log_text()
        .contains("could not export batch spans; they are dropped"));
    assert!(relay.terminate(Duration::from_secs(30)).success());
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}
