//! The relay's durable progress record (issue 19): it follows delivery, never reception,
//! so a relay killed while its broker is unreachable loses nothing on the next start;
//! and once everything is delivered it matches what the slot confirmed.
//!
//! Mutation check: a writer that records the *received* position instead of the flush
//! watermark makes `a_record_never_runs_ahead_of_delivery` lose every event.

use std::time::Duration;

use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::relay::{metric_sum, Relay, RelaySetup};
use outbox_relay_tests::{pg, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_never_runs_ahead_of_delivery() {
    let name = unique("record");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;

    // A broker nobody listens on: events are read whole (the budget holds them all) and
    // none is delivered.
    let down =
        RelaySetup::new(&name, &table).with_env(&[("RELAY__SINK__KAFKA__BROKERS", "127.0.0.1:1")]);
    let mut relay = Relay::start(&down);
    relay.wait_replicating(Duration::from_secs(10));
    for tx in 0..20 {
        client
            .batch_execute(&format!(
                "INSERT INTO {table} (aggregatetype, aggregateid, type, payload)
                 SELECT 'Order', 'agg-' || (i % 5), 'T', jsonb_build_object('i', {tx} * 10 + i) FROM generate_series(1, 10) i"
            ))
            .await
            .unwrap();
    }
    let end: u64 = pg::parse_lsn(
        &client
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
    );
    // Every transaction has reached the relay, and the writer had many intervals to act.
    for _ in 0..100 {
        if metric_sum(&relay.metrics(), "outbox_relay_received_lsn", &[]) >= end as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = pg::recorded_progress(&client, &down.slot()).await;
    relay.kill9();
    // Nothing was delivered, so the record cannot have reached the last commit (the
    // behaviour below is the sharp check: a record past a commit skips it).
    if let Some(recorded) = before {
        assert!(
            recorded < end,
            "the record {recorded:X} passed undelivered events (WAL end {end:X})"
        );
    }

    // The broker is reachable now: all 200 events arrive.
    let up = RelaySetup::new(&name, &table);
    let mut relay = Relay::start(&up);
    relay.wait_ready(Duration::from_secs(60));
    let prefix = up.topic_prefix.clone();
    let records = tokio::task::spawn_blocking(move || {
        let mut r = TopicReader::new(&prefix);
        r.read_at_least(200, Duration::from_secs(30));
        r.into_records()
    })
    .await
    .unwrap();
    let mut seen: Vec<i64> = records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(r.payload.as_ref().unwrap()).unwrap();
            v["i"].as_i64().unwrap()
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, (1..=200).collect::<Vec<i64>>(), "every event arrives");

    // Delivered and stopped cleanly: the record is where the slot confirmed.
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    let confirmed = pg::confirmed_flush_when_inactive(&client, &up.slot()).await;
    let recorded = pg::recorded_progress(&client, &up.slot()).await.unwrap();
    assert_eq!(
        recorded, confirmed,
        "record {recorded:X}, slot {confirmed:X}"
    );
    assert!(recorded >= end);

    // A restart finds nothing to skip (the slot is not behind), and publishes nothing.
    let mut relay = Relay::start(&up);
    relay.wait_ready(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        metric_sum(&relay.metrics(), "outbox_relay_events_published_total", &[]),
        0.0
    );
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(&client, &up.slot(), &up.publication(), &[&table]).await;
}

/// `state.mode: off` (a role that may not write) keeps the slot-only behaviour: no record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_mode_off_writes_no_record() {
    let name = unique("stateoff");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let setup = RelaySetup::new(&name, &table).with_env(&[
        ("RELAY__STATE__MODE", "off"),
        // Parking needs the state tables.
        ("RELAY__OUTBOX__ON_INVALID", "dead_letter"),
    ]);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    client
        .batch_execute(&format!(
            "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'a', 'T', '{{}}')"
        ))
        .await
        .unwrap();
    let prefix = setup.topic_prefix.clone();
    tokio::task::spawn_blocking(move || {
        TopicReader::new(&prefix)
            .read_at_least(1, Duration::from_secs(30))
            .len()
    })
    .await
    .unwrap();
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    assert_eq!(pg::recorded_progress(&client, &setup.slot()).await, None);
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}
