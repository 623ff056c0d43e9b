//! Bad input: each kind of unusable row gets a clear, counted error and the documented
//! outcome (dead letter by default, or a halt that loses nothing), and the events after
//! it still flow.

use std::time::Duration;

use outbox_relay_tests::kafka::{Record, TopicReader};
use outbox_relay_tests::relay::{metric_sum, Relay, RelaySetup};
use outbox_relay_tests::{pg, unique};

fn read(topic: &str, n: usize) -> Vec<Record> {
    let mut reader = TopicReader::exact(topic);
    reader.read_at_least(n, Duration::from_secs(60));
    reader.read_until(Duration::from_secs(2), |_| false);
    reader.into_records()
}

async fn valid(client: &tokio_postgres::Client, table: &str, agg: &str, payload: &str) {
    client
        .execute(
            &format!("INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', $1, 'OrderCreated', $2)"),
            &[&agg, &payload],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rows_are_dead_lettered_counted_and_do_not_stop_the_stream() {
    let name = unique("bad");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    // text payload with validate_json, nullable columns: room for every kind of bad row.
    pg::create_outbox_table(&client, &table, "text", true).await;
    let mut setup = RelaySetup::new(&name, &table);
    setup.validate_json = true;
    setup.outbox_extra =
        "  on_invalid: dead_letter\n  messages:\n    prefix: bad-input-test\n".into();
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    valid(&client, &table, "a-1", r#"{"n": 1}"#).await;
    client
        .batch_execute(&format!(
            "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', NULL, 'OrderCreated', '{{}}');
             INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'a-2', 'OrderCreated', '{{not json');
             INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Bad Type', 'a-3', 'OrderCreated', '{{}}');
             SELECT pg_logical_emit_message(true, 'bad-input-test', '{{oops');
             INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'a-4', 'Huge', '\"' || repeat('z', 1200000) || '\"');"
        ))
        .await
        .unwrap();
    valid(&client, &table, "a-1", r#"{"n": 5}"#).await;

    let good = read(&format!("{}.Order", setup.topic_prefix), 2);
    let payloads: Vec<&[u8]> = good.iter().map(|r| r.payload.as_deref().unwrap()).collect();
    assert_eq!(
        payloads,
        vec![&br#"{"n": 1}"#[..], &br#"{"n": 5}"#[..]],
        "valid events around the bad ones arrive, in order"
    );
    assert!(good.iter().all(|r| r.key_str() == "a-1"));

    let dlq = read(&setup.dead_letter_topic(), 5);
    let mut reasons: Vec<String> = dlq
        .iter()
        .map(|r| r.header_str("outbox-relay-error-reason").unwrap())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "invalid_json",
            "invalid_message",
            "message_too_large",
            "no_route",
            "null_aggregate_id"
        ],
        "dead letters: {dlq:#?}"
    );
    let by_reason = |reason: &str| {
        dlq.iter()
            .find(|r| r.header_str("outbox-relay-error-reason").as_deref() == Some(reason))
            .unwrap()
    };
    // The errors name what is wrong.
    assert!(by_reason("null_aggregate_id")
        .header_str("outbox-relay-error")
        .unwrap()
        .contains("\"aggregateid\" is NULL"));
    assert!(by_reason("invalid_json")
        .header_str("outbox-relay-error")
        .unwrap()
        .contains("not valid JSON"));
    assert!(by_reason("no_route")
        .header_str("outbox-relay-error")
        .unwrap()
        .contains("Bad Type"));
    // The rejected row travels with the dead letter.
    let doc: serde_json::Value =
        serde_json::from_slice(by_reason("invalid_json").payload.as_ref().unwrap()).unwrap();
    assert_eq!(doc["row"]["payload"], "{not json");
    assert_eq!(doc["row"]["aggregateid"], "a-2");
    assert_eq!(doc["source"], format!("public.{table}"));
    // The oversized event keeps its id and says how big it was.
    let huge = by_reason("message_too_large");
    assert_eq!(huge.key_str(), "a-4");
    let note: serde_json::Value = serde_json::from_slice(huge.payload.as_ref().unwrap()).unwrap();
    assert_eq!(note["payload_bytes"], 1_200_002);
    assert!(huge.header("id").is_some());

    let metrics = relay.metrics();
    for reason in [
        "null_aggregate_id",
        "invalid_json",
        "no_route",
        "invalid_message",
    ] {
        let label = format!("reason=\"{reason}\"");
        assert_eq!(
            metric_sum(&metrics, "outbox_relay_invalid_events_total", &[&label]),
            1.0,
            "{reason}"
        );
        assert_eq!(
            metric_sum(&metrics, "outbox_relay_dead_letter_events_total", &[&label]),
            1.0,
            "{reason}"
        );
    }
    assert_eq!(
        metric_sum(
            &metrics,
            "outbox_relay_dead_letter_events_total",
            &["reason=\"message_too_large\""]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "outbox_relay_events_published_total",
            &["result=\"dead_lettered\""]
        ),
        1.0
    );
    assert!(relay.try_wait().is_none(), "the relay keeps running");
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_policy_stops_without_acknowledging_and_a_restart_loses_nothing() {
    let name = unique("halt");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "text", true).await;
    let mut setup = RelaySetup::new(&name, &table);
    setup.outbox_extra = "  on_invalid: halt\n".into();
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    valid(&client, &table, "h-1", "{}").await;
    client
        .batch_execute(&format!(
            "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', NULL, 'OrderCreated', '{{}}')"
        ))
        .await
        .unwrap();
    valid(&client, &table, "h-2", "{}").await;

    let status = relay.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "halts with a failure status");
    let log = relay.log_text();
    assert!(
        log.contains("halted on an invalid event") && log.contains("\"aggregateid\" is NULL"),
        "log names the problem:\n{log}"
    );

    // The operator switches to dead-lettering: the held-back row and the one after it
    // are still there, because nothing past them was acknowledged.
    setup.outbox_extra = "  on_invalid: dead_letter\n".into();
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    let dlq = read(&setup.dead_letter_topic(), 1);
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        dlq[0].header_str("outbox-relay-error-reason").as_deref(),
        Some("null_aggregate_id")
    );
    let mut reader = TopicReader::exact(&format!("{}.Order", setup.topic_prefix));
    reader.read_until(Duration::from_secs(60), |r| {
        r.iter().any(|rec| rec.key_str() == "h-2")
    });
    let keys: Vec<String> = reader.records.iter().map(Record::key_str).collect();
    // h-1 may appear twice (replayed after the halt); h-2 must be there.
    assert!(
        keys.contains(&"h-1".to_string()) && keys.contains(&"h-2".to_string()),
        "{keys:?}"
    );
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}

/// Issue 11.1: a non-transactional logical message is decoded even when its transaction
/// rolls back, so it must never reach the event topic; it takes the invalid-event outcome
/// with a reason that says why. The transactional message of a committed transaction
/// next to it is an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_non_transactional_message_is_never_published() {
    let name = unique("nontx");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "text", true).await;
    let mut setup = RelaySetup::new(&name, &table);
    setup.outbox_extra = "  on_invalid: dead_letter\n  messages:\n    prefix: nontx-test\n".into();
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    let event = |id: &str, agg: &str| {
        format!(
            r#"{{"id": "{id}", "aggregatetype": "Order", "aggregateid": "{agg}", "type": "OrderPaid", "payload": {{"agg": "{agg}"}}}}"#
        )
    };
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_logical_emit_message(false, 'nontx-test', '{}'); ROLLBACK;
             BEGIN; SELECT pg_logical_emit_message(true, 'nontx-test', '{}'); COMMIT;",
            event("11111111-1111-1111-1111-111111111111", "rolled-back"),
            event("22222222-2222-2222-2222-222222222222", "committed"),
        ))
        .await
        .unwrap();
    valid(&client, &table, "after", "{}").await;

    let good = read(&format!("{}.Order", setup.topic_prefix), 2);
    let keys: Vec<String> = good.iter().map(Record::key_str).collect();
    assert_eq!(
        keys,
        vec!["committed", "after"],
        "only committed events are published"
    );
    let dlq = read(&setup.dead_letter_topic(), 1);
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        dlq[0].header_str("outbox-relay-error-reason").as_deref(),
        Some("non_transactional_message")
    );
    assert!(dlq[0]
        .header_str("outbox-relay-error")
        .unwrap()
        .contains("transactional = false"));
    assert_eq!(
        metric_sum(
            &relay.metrics(),
            "outbox_relay_invalid_events_total",
            &["reason=\"non_transactional_message\""]
        ),
        1.0
    );
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}
