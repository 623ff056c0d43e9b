//! Big rows and messages against the memory budget: a row or outbox message above
//! `outbox.max_event_bytes` is an invalid event (dead-lettered by default, without its
//! big values), and small events read next to big non-outbox messages do not keep the
//! big read buffers alive beyond what the budget counts.

use std::time::{Duration, Instant};

use outbox_relay_tests::kafka::{Record, TopicReader};
use outbox_relay_tests::relay::{metric_sum, Relay, RelaySetup};
use outbox_relay_tests::{pg, unique};

fn read(topic: &str, n: usize) -> Vec<Record> {
    let mut reader = TopicReader::exact(topic);
    reader.read_at_least(n, Duration::from_secs(60));
    reader.read_until(Duration::from_secs(2), |_| false);
    reader.into_records()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_and_messages_above_max_event_bytes_are_dead_lettered_as_too_large() {
    let name = unique("toolarge");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let mut setup =
        RelaySetup::new(&name, &table).with_env(&[("RELAY__OUTBOX__MAX_EVENT_BYTES", "65536")]);
    setup.outbox_extra = "  on_invalid: dead_letter\n  messages:\n    prefix: big-test\n".into();
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    let insert = |agg: &'static str, payload_sql: String| {
        format!("INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', '{agg}', 'T', {payload_sql});")
    };
    client
        .batch_execute(&format!(
            "{}{}SELECT pg_logical_emit_message(true, 'big-test', json_build_object('id', 'm-1', 'aggregatetype', 'Order', 'aggregateid', 'm', 'type', 'T', 'payload', repeat('y', 100000))::text);{}",
            insert("a-1", "'{\"n\": 1}'".into()),
            insert("a-2", "jsonb_build_object('big', repeat('z', 100000))".into()),
            insert("a-1", "'{\"n\": 2}'".into()),
        ))
        .await
        .unwrap();

    let good = read(&format!("{}.Order", setup.topic_prefix), 2);
    let payloads: Vec<&[u8]> = good.iter().map(|r| r.payload.as_deref().unwrap()).collect();
    assert_eq!(payloads, vec![&br#"{"n": 1}"#[..], &br#"{"n": 2}"#[..]]);

    let dlq = read(&setup.dead_letter_topic(), 2);
    assert_eq!(dlq.len(), 2, "{dlq:#?}");
    for r in &dlq {
        assert_eq!(
            r.header_str("outbox-relay-error-reason").as_deref(),
            Some("too_large")
        );
        assert!(
            r.payload.as_ref().unwrap().len() < 2000,
            "the big value is left out"
        );
    }
    let row = dlq
        .iter()
        .find(|r| r.key_str() == "a-2")
        .expect("the row's dead letter");
    let doc: serde_json::Value = serde_json::from_slice(row.payload.as_ref().unwrap()).unwrap();
    assert_eq!(doc["reason"], "too_large");
    assert_eq!(doc["source"], format!("public.{table}"));
    assert_eq!(doc["row"]["aggregateid"], "a-2");
    // jsonb text of {"big": "zzz…"}: 100000 + 11 bytes.
    assert_eq!(
        doc["row"]["payload"],
        serde_json::json!({"omitted_bytes": 100_011})
    );
    let error = row.header_str("outbox-relay-error").unwrap();
    assert!(
        error.ends_with("bytes exceeds outbox.max_event_bytes (65536)"),
        "{error}"
    );
    assert!(row.header("id").is_some());
    let msg = dlq.iter().find(|r| r.key_str() != "a-2").unwrap();
    let doc: serde_json::Value = serde_json::from_slice(msg.payload.as_ref().unwrap()).unwrap();
    assert_eq!(doc["source"], "message:big-test");
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .starts_with("logical message of 1000"),
        "{doc}"
    );

    let metrics = relay.metrics();
    assert_eq!(
        metric_sum(
            &metrics,
            "outbox_relay_invalid_events_total",
            &["reason=\"too_large\""]
        ),
        2.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "outbox_relay_dead_letter_events_total",
            &["reason=\"too_large\""]
        ),
        2.0
    );
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}

/// Small events: 10 000 of them, 25 per transaction, each transaction followed by a
/// 1 MiB logical message of another prefix (which the relay reads and ignores).
const SMALL_EVENTS: i32 = 10_000;
const PER_TX: i32 = 25;
const BIG_MESSAGE: usize = 1024 * 1024;
const BUDGET: usize = 1024 * 1024;
/// What the relay may grow by, beyond the budget, from its idle peak: the one big
/// message being read (1 MiB), a 256 KiB read chunk, and 2 MiB for allocator slack and
/// librdkafka's buffers.
const ALLOWANCE_KB: u64 = (BIG_MESSAGE as u64 + 256 * 1024) / 1024 + 2048;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_events_between_big_messages_stay_within_the_budget() {
    let name = unique("pinned");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let mut setup = RelaySetup::new(&name, &table);
    setup.inflight_bytes = BUDGET;
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    let idle_kb = relay.peak_rss_kb().unwrap();

    let started = Instant::now();
    for first in (1..=SMALL_EVENTS).step_by(PER_TX as usize) {
        let last = first + PER_TX - 1;
        client
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO {table} (aggregatetype, aggregateid, type, payload)
                   SELECT 'Order', 'agg-' || (g % 10), 'Small', jsonb_build_object('n', g)
                   FROM generate_series({first}, {last}) g;
                 SELECT pg_logical_emit_message(true, 'not-an-outbox', repeat('x', {BIG_MESSAGE}));
                 COMMIT;"
            ))
            .await
            .unwrap();
    }
    let prefix = setup.topic_prefix.clone();
    let records = tokio::task::spawn_blocking(move || {
        let mut reader = TopicReader::new(&prefix);
        reader.read_at_least(SMALL_EVENTS as usize, Duration::from_secs(90));
        reader.into_records()
    })
    .await
    .unwrap();
    assert_eq!(records.len(), SMALL_EVENTS as usize);
    let peak_kb = relay.peak_rss_kb().unwrap();
    let metrics = relay.metrics();
    let read_mib = metric_sum(
        &metrics,
        "outbox_relay_replication_received_bytes_total",
        &[],
    ) / 1048576.0;
    let limit_kb = idle_kb + BUDGET as u64 / 1024 + ALLOWANCE_KB;
    eprintln!(
        "idle peak RSS {idle_kb} kB; after {SMALL_EVENTS} small events and {} MiB of big messages ({read_mib:.0} MiB read) in {:?}: peak RSS {peak_kb} kB (+{} kB); limit {limit_kb} kB",
        SMALL_EVENTS / PER_TX,
        started.elapsed(),
        peak_kb - idle_kb,
    );
    assert!(
        peak_kb <= limit_kb,
        "peak RSS {peak_kb} kB exceeds the idle peak ({idle_kb} kB) + the budget ({} kB) + {ALLOWANCE_KB} kB",
        BUDGET / 1024
    );
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}
