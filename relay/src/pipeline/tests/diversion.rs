//! `circuit_breaker.on_open: park`: events for a destination whose circuit is open go to
//! parking — those read while it is open, and those the connector holds when it opens —
//! so the watermark keeps moving; an outcome the connector already has is kept.

use std::sync::Arc;

use outbox_connectors::policy::CircuitState;

use super::{row, Harness, MemoryParkStore, Setup};
use crate::config::InvalidEventPolicy;
use crate::pipeline::diversion::Diversion;

async fn harness(store: &MemoryParkStore, diversion: &Arc<Diversion>) -> Harness {
    Harness::start(Setup {
        policy: InvalidEventPolicy::Park,
        parked: Some(store.clone()),
        diversion: Some(diversion.clone()),
        ..Setup::default()
    })
    .await
}

/// Opens or closes `destination`'s circuit as the session's watcher would see it.
fn set(h: &Harness, diversion: &Diversion, destination: &str, state: CircuitState) {
    h.publisher.set_circuit(destination, state);
    diversion.update(&outbox_connectors::Publisher::circuits(&h.publisher));
}

#[tokio::test]
async fn a_batch_held_when_the_circuit_opens_is_parked_and_the_watermark_passes_it() {
    let store = MemoryParkStore::default();
    let diversion = Arc::new(Diversion::default());
    let mut h = harness(&store, &diversion).await;
    let end = h.tx(&[row("A"), row("A"), row("B")]).await.unwrap();
    let held = h.publisher.next_batch().await;
    let destination = held.events[0].destination.to_string();
    h.settle().await;
    assert!(h.flushed() < end, "nothing durable yet");

    set(&h, &diversion, &destination, CircuitState::Open);
    h.settle().await;
    assert_eq!(h.flushed(), end, "parked copies are durable");
    let rows = store.rows();
    let parked: Vec<(&str, &str)> = rows
        .iter()
        .map(|(a, _, r)| (a.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        parked,
        vec![
            ("A", "circuit_open"),
            ("A", "circuit_open"),
            ("B", "circuit_open")
        ]
    );

    // While it is open, new events are parked without reaching the connector; their
    // aggregates stay parked after it closes, until redriven.
    let end2 = h.tx(&[row("C")]).await.unwrap();
    h.settle().await;
    assert_eq!(h.flushed(), end2);
    assert!(h.publisher.try_next_batch().is_none());
    assert_eq!(store.rows().len(), 4);
    set(&h, &diversion, &destination, CircuitState::Closed);
    let end3 = h.tx(&[row("A"), row("D")]).await.unwrap();
    let batch = h.publisher.next_batch().await;
    assert_eq!(
        batch
            .events
            .iter()
            .map(|e| e.aggregate_id.as_str())
            .collect::<Vec<_>>(),
        vec!["D"],
        "A is parked behind its diverted events"
    );
    batch.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end3);
    assert_eq!(store.rows().len(), 5);
    drop(held);
}

#[tokio::test]
async fn a_delivery_that_finished_before_the_circuit_opened_keeps_its_outcome() {
    let store = MemoryParkStore::default();
    let diversion = Arc::new(Diversion::default());
    let mut h = harness(&store, &diversion).await;
    let end = h.tx(&[row("A")]).await.unwrap();
    let batch = h.publisher.next_batch().await;
    let destination = batch.events[0].destination.to_string();
    batch.succeed();
    set(&h, &diversion, &destination, CircuitState::Open);
    h.settle().await;
    assert_eq!(h.flushed(), end);
    assert!(store.rows().is_empty(), "delivered, so nothing to park");
    assert_eq!(
        h.counter("events_published_total", &[("result", "ok")]),
        1.0
    );
}

#[tokio::test]
async fn another_destinations_open_circuit_does_not_touch_a_batch() {
    let store = MemoryParkStore::default();
    let diversion = Arc::new(Diversion::default());
    let mut h = harness(&store, &diversion).await;
    let end = h.tx(&[row("A")]).await.unwrap();
    let batch = h.publisher.next_batch().await;
    set(&h, &diversion, "some-other-topic", CircuitState::Open);
    h.settle().await;
    assert!(h.flushed() < end, "still waiting for the broker");
    batch.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end);
    assert!(store.rows().is_empty());
}

/// `pipeline.destination_share`: beyond its share a destination's events are parked, so
/// the reader never waits for one slow destination.
#[tokio::test]
async fn beyond_its_share_a_destinations_events_are_parked_and_the_reader_goes_on() {
    use crate::pipeline::bulkhead::Bulkhead;
    let store = MemoryParkStore::default();
    let diversion = Arc::new(Diversion::default());
    let budget = 8000;
    let bulkhead = Arc::new(Bulkhead::new(budget, 0.25).unwrap());
    let mut h = Harness::start(Setup {
        policy: InvalidEventPolicy::Park,
        parked: Some(store.clone()),
        diversion: Some(diversion.clone()),
        bulkhead: Some(bulkhead.clone()),
        inflight_bytes: budget,
        ..Setup::default()
    })
    .await;
    let rows: Vec<_> = ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"]
        .into_iter()
        .map(row)
        .collect();
    let end = h.tx(&rows).await.unwrap();
    let held = h.publisher.next_batch().await;
    let sent = held.events.len();
    let bytes: usize = held.events.iter().map(|e| e.budget_bytes()).sum();
    assert!((1..10).contains(&sent), "{sent} sent");
    assert!(
        bytes <= budget / 4,
        "{bytes} bytes held, share {}",
        budget / 4
    );
    h.settle().await;
    assert!(h.flushed() < end, "the held events are not durable yet");

    // The reader did not wait: the rest of the transaction is parked with the batch.
    held.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end);
    let reasons: Vec<String> = store.rows().into_iter().map(|(_, _, r)| r).collect();
    assert_eq!(reasons, vec!["bulkhead_full".to_string(); 10 - sent]);
    // Once the destination has caught up, a new aggregate's events go to the sink again.
    h.tx(&[row("K")]).await.unwrap();
    let next = h.publisher.next_batch().await;
    assert_eq!(next.events[0].aggregate_id, "K");
    next.succeed();
}

/// With `on_open: park` a batch holds one destination's events: when a circuit opens, the
/// acker parks exactly that destination's in-flight events, never a healthy one's.
#[tokio::test]
async fn an_open_circuit_parks_only_its_own_destinations_events() {
    use super::Change;
    let store = MemoryParkStore::default();
    let diversion = Arc::new(Diversion::default());
    let mut h = harness(&store, &diversion).await;
    let typed = |aggregate_type, aggregate_id| Change::TypedRow {
        aggregate_type,
        aggregate_id,
    };
    let end = h
        .tx(&[
            typed("Order", "A"),
            typed("Customer", "C"),
            typed("Order", "B"),
        ])
        .await
        .unwrap();
    let order = h.publisher.next_batch().await;
    let customer = h.publisher.next_batch().await;
    let last = h.publisher.next_batch().await;
    let ids = |b: &outbox_connectors::testing::AcceptedBatch| {
        b.events
            .iter()
            .map(|e| e.aggregate_id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (ids(&order), ids(&customer), ids(&last)),
        (
            vec!["A".to_string()],
            vec!["C".to_string()],
            vec!["B".to_string()]
        )
    );
    let order_destination = order.events[0].destination.to_string();
    set(&h, &diversion, &order_destination, CircuitState::Open);
    customer.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end);
    let parked: Vec<String> = store.rows().into_iter().map(|(a, _, _)| a).collect();
    assert_eq!(
        parked,
        vec!["A".to_string(), "B".to_string()],
        "C was delivered, not parked"
    );
    assert_eq!(
        h.counter("events_published_total", &[("result", "ok")]),
        1.0
    );
    drop((order, last));
}
