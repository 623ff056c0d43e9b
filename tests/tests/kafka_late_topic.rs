//! A Kafka topic that does not exist yet is waited for, not treated as a permanent
//! rejection (issue 9.3 / 9.7).
//!
//! Infrastructure as code often creates a topic a little after the first event of a new
//! aggregate type is written. Before, librdkafka gave up on the unknown topic after its
//! default 30 s (`topic.metadata.propagation.max.ms`), the relay classified that as
//! permanent and parked (or dead-lettered) the events. Now the relay waits for
//! `topic.metadata.propagation.max.ms` = 5 min by default (the same window as the
//! SNS/SQS connector's `transient_error_window_ms`), so a topic created 60 s late
//! receives every event, in order, and nothing is parked.

use std::time::Duration;

use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::relay::{metric_sum, Relay, RelaySetup};
use outbox_relay_tests::{env, pg, unique};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

const EVENTS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_a_minute_after_the_first_event_receives_every_event_in_order() {
    let name = unique("latetopic");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    // The local broker creates topics on first use unless the client says otherwise:
    // here, as in most production clusters, only an administrator creates them.
    let setup = RelaySetup::new(&name, &table).with_env(&[(
        "RELAY__SINK__KAFKA__PROPERTIES__ALLOW_AUTO_CREATE_TOPICS",
        "false",
    )]);
    let topic = format!("{}.Late", setup.topic_prefix);
    let mut relay = Relay::start(&setup);
    relay.wait_replicating(Duration::from_secs(60));

    for n in 0..EVENTS {
        client
            .execute(
                &format!(
                    "INSERT INTO {table} (aggregatetype, aggregateid, type, payload)
                     VALUES ('Late', $1, 'T', jsonb_build_object('n', $2::int))"
                ),
                &[&format!("a{}", n % 4), &(n as i32)],
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    let parked = metric_sum(&relay.metrics(), "outbox_relay_parked_events", &[]);
    assert_eq!(
        parked,
        0.0,
        "parked while the topic was missing:\n{}",
        relay.log_tail()
    );

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .create()
        .unwrap();
    for r in admin
        .create_topics(
            &[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap()
    {
        r.unwrap();
    }

    let records = tokio::task::spawn_blocking(move || {
        let mut r = TopicReader::exact(&topic);
        r.read_distinct_ids(EVENTS, Duration::from_secs(60));
        r.into_records()
    })
    .await
    .unwrap();
    // Exactly once each (no restart happened), in order per aggregate.
    assert_eq!(records.len(), EVENTS, "{}", relay.log_tail());
    for key in 0..4 {
        let ns: Vec<i64> = records
            .iter()
            .filter(|r| r.key_str() == format!("a{key}"))
            .map(|r| {
                let v: serde_json::Value =
                    serde_json::from_slice(r.payload.as_ref().unwrap()).expect("json payload");
                v["n"].as_i64().unwrap()
            })
            .collect();
        let want: Vec<i64> = (0..EVENTS as i64).filter(|n| n % 4 == key).collect();
        assert_eq!(ns, want, "aggregate a{key}");
    }
    let metrics = relay.metrics();
    assert_eq!(metric_sum(&metrics, "outbox_relay_parked_events", &[]), 0.0);
    assert_eq!(
        metric_sum(&metrics, "outbox_relay_dead_letter_events_total", &[]),
        0.0
    );
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}
