//! Poison events end in their policy's outcome within seconds, never in a restart loop
//! (issue 9.2).
//!
//! Kafka: a broker-side permanent rejection (a topic whose `max.message.bytes` is below
//! the event, the producer's own limit above it) makes the idempotent, gap-less producer
//! fatal. Before, the dead-letter send then failed on the dead producer and the session
//! restarted into the same failure every ~15 s, forever. Now the rejection is remembered,
//! the next session parks the event (and its aggregate's later events) without offering
//! it to the broker again, and everything else flows.

use std::time::Duration;

use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::relay::{metric_sum, Relay, RelaySetup};
use outbox_relay_tests::{env, pg, unique};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

async fn create_small_topic(name: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .create()
        .unwrap();
    let topic =
        NewTopic::new(name, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "10000");
    let results = admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_rejection_that_kills_the_producer_parks_the_event_instead_of_looping() {
    let name = unique("poison");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let setup = RelaySetup::new(&name, &table);
    create_small_topic(&format!("{}.Small", setup.topic_prefix)).await;
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    client
        .batch_execute(&format!(
            "INSERT INTO {table} (aggregatetype, aggregateid, type, payload)
               VALUES ('Small', 'x', 'Big', jsonb_build_object('pad', repeat('p', 50000)));
             INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'y', 'T', '{{\"n\": 1}}');
             INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Small', 'x', 'T', '{{\"n\": 2}}');
             INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'y', 'T', '{{\"n\": 3}}');"
        ))
        .await
        .unwrap();

    // Aggregate y arrives; x's two events are parked, in order.
    let topic = format!("{}.Order", setup.topic_prefix);
    let records = tokio::task::spawn_blocking(move || {
        let mut r = TopicReader::exact(&topic);
        r.read_distinct_ids(2, Duration::from_secs(60));
        r.into_records()
    })
    .await
    .unwrap();
    assert!(records.iter().all(|r| r.key_str() == "y"));
    let mut parked = 0.0;
    for _ in 0..100 {
        parked = metric_sum(&relay.metrics(), "outbox_relay_parked_events", &[]);
        if parked >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(parked, 2.0, "{}", relay.log_tail());
    let rows = client
        .query(
            "SELECT reason FROM outbox_relay.parked WHERE slot = $1 ORDER BY commit_lsn, seq",
            &[&setup.slot()],
        )
        .await
        .unwrap();
    let reasons: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(reasons, vec!["message_too_large", "behind_parked"]);

    // No loop: at most the one restart that replaced the broken producer, and it stays so.
    let restarts = metric_sum(&relay.metrics(), "outbox_relay_restarts_total", &[]);
    assert!(
        restarts <= 1.0,
        "{restarts} restarts:\n{}",
        relay.log_tail()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        metric_sum(&relay.metrics(), "outbox_relay_restarts_total", &[]),
        restarts
    );
    assert!(relay.try_wait().is_none(), "the relay keeps running");
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}
