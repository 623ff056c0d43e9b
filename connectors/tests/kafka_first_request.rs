//! The Kafka publisher against librdkafka's mock cluster: a produce request that fails
//! with a retriable error is never overtaken by the next one.
//!
//! A CI run of the shards test (2026-12-06) found an aggregate's version 4 at offset 1 of
//! a fresh partition, and its versions 1–3 only later, from the next relay process. The
//! log segment showed the producer's first batch on that partition starting at sequence
//! 3: its first request (sequences 0–2) reached the broker before the broker had created
//! the auto-created partition and failed with a retriable error, and the next request,
//! already on its way, was appended, because a broker with no state for a producer on a
//! partition accepts any first sequence (KAFKA-15591; Kafka 4.5 refuses it, but only on a
//! partition that never held a record). The retry of the first request then comes after
//! its successor. Only a second request that does not leave before the first is
//! answered keeps the order.
//!
//! The mock cluster appends what an idempotent producer sends without checking
//! sequences, as a real broker does for a producer it has no state for: the test makes
//! the first produce request fail, with a round trip long enough for the next request to
//! be sent meanwhile, and reads the partition back.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use outbox_connectors::kafka::{KafkaConfig, KafkaPublisher};
use outbox_connectors::{OutboxEvent, Publisher, Text};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TOPIC: &str = "orders";

fn event(version: u64) -> OutboxEvent {
    OutboxEvent {
        id: Text::from(format!("order-1-{version}")),
        aggregate_type: Text::from("Order"),
        aggregate_id: Text::from("order-1"),
        event_type: Text::from("Changed"),
        payload: Some(Bytes::from(version.to_string())),
        headers: Vec::new(),
        destination: TOPIC.into(),
        partition: None,
        timestamp_ms: 0,
        commit_lsn: version,
        commit_time_us: 0,
        seq: 1,
    }
}

/// The versions in the topic's one partition, in offset order.
fn read_back(bootstrap: &str, want: usize) -> Vec<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "first-request")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).expect("assign");
    let mut versions = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while versions.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let v = std::str::from_utf8(m.payload().unwrap()).unwrap();
            versions.push(v.parse().unwrap());
        }
    }
    versions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_request_is_not_overtaken_by_the_next() {
    const BATCHES: u64 = 4;
    const PER_BATCH: u64 = 5;
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let config: KafkaConfig = serde_json::from_value(serde_json::json!({
        "brokers": bootstrap,
        // A request per batch, sent at once.
        "properties": { "linger.ms": "0" },
    }))
    .unwrap();
    let publisher = KafkaPublisher::new(&config).expect("publisher");
    // Its producer id acquired and the partition's leader known before the fault is
    // armed: the first event alone, delivered.
    let first = publisher.accept(vec![event(1)]).await.expect("accept");
    assert!(first.await.iter().all(|o| o.result.is_ok()));
    cluster
        .broker_round_trip_time(-1, Duration::from_millis(200))
        .unwrap();
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION],
    );

    let mut deliveries = Vec::new();
    for b in 0..BATCHES {
        let batch = (1..=PER_BATCH)
            .map(|i| event(1 + b * PER_BATCH + i))
            .collect();
        deliveries.push(publisher.accept(batch).await.expect("accept"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut failed = Vec::new();
    for outcomes in join_all(deliveries).await {
        for o in outcomes {
            if let Err(e) = o.result {
                failed.push(format!("{}: {e}", o.event.id));
            }
        }
    }
    assert!(failed.is_empty(), "deliveries failed: {failed:?}");
    let want = 1 + (BATCHES * PER_BATCH) as usize;
    let versions = tokio::task::spawn_blocking(move || read_back(&bootstrap, want))
        .await
        .unwrap();
    let expected: Vec<u64> = (1..=want as u64).collect();
    assert_eq!(
        versions, expected,
        "the partition holds the events out of order"
    );
}
