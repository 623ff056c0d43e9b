//! What exactly-once SQS FIFO already gives (issue 14.1): the relay sets
//! `MessageDeduplicationId` to the event id, so a replay of events within SQS's 5-minute
//! de-duplication window is dropped by the queue. Two relays on two slots of the same
//! table publish the same ten events into one FIFO queue (the second is a full replay);
//! the queue holds each event once. (A replay after more than 5 minutes is delivered
//! again: at-least-once, documented in docs/high-availability.md.)

use std::time::Duration;

use outbox_relay_tests::aws;
use outbox_relay_tests::relay::{metric_sum, Relay, RelaySetup};
use outbox_relay_tests::{pg, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_within_five_minutes_is_dropped_by_the_fifo_queue() {
    let name = unique("fifodedup");
    let replay = unique("fifoagain");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    // Both slots exist before the events are written, so both hold all ten.
    for slot in [&name, &replay] {
        client
            .batch_execute(&format!(
                "CREATE PUBLICATION {slot} FOR TABLE {table} WITH (publish = 'insert')"
            ))
            .await
            .unwrap();
        client
            .batch_execute(&format!(
                "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
            ))
            .await
            .unwrap();
    }
    let mut sql = String::new();
    for n in 0..10 {
        sql += &format!(
            "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'o-{}', 'T', '{{\"n\": {n}}}');",
            n % 3
        );
    }
    client.batch_execute(&sql).await.unwrap();

    let sdk = aws::sdk().await;
    let (queue_url, _) = aws::create_queue(&sdk, &format!("{name}-q.fifo")).await;
    let endpoint = aws::endpoint();
    let sink = format!(
        "  kind: sqs\n  sqs:\n    region: {}\n    endpoint: {endpoint}\n    fifo: true\n",
        aws::REGION
    );
    let publish = |slot: &str| {
        let mut setup = RelaySetup::new(slot, &table).with_env(&aws::relay_env());
        setup.sink_yaml = Some(sink.clone());
        setup.route_template = Some(queue_url.clone());
        setup.dead_letter = Some(queue_url.clone());
        setup
    };
    for slot in [&name, &replay] {
        let mut relay = Relay::start(&publish(slot));
        relay.wait_ready(Duration::from_secs(60));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while metric_sum(
            &relay.metrics(),
            "outbox_relay_events_published_total",
            &["result=\"ok\""],
        ) < 10.0
        {
            assert!(std::time::Instant::now() < deadline, "{}", relay.log_tail());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(relay.terminate(Duration::from_secs(30)).success());
    }
    // Twenty sends, ten messages: each event once.
    let records = aws::receive(&sdk, &queue_url, "q", Duration::from_secs(5), |_| false).await;
    let mut ids: Vec<String> = records
        .iter()
        .map(|r| r.header_str("id").unwrap())
        .collect();
    assert_eq!(ids.len(), 10, "{ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10);

    for slot in [&name, &replay] {
        pg::cleanup(&client, slot, slot, &[]).await;
    }
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}
