//! Ordered parking per aggregate (`on_invalid: park`): once an event of an aggregate is
//! parked, every later event of it is parked behind it, in commit order, while other
//! aggregates flow; a parked event is durable, so the watermark passes it.

use outbox_connectors::testing::error;
use outbox_connectors::ErrorClass;

use super::{row, Change, Harness, MemoryParkStore, Setup};
use crate::config::InvalidEventPolicy;

async fn parking_harness(store: &MemoryParkStore) -> Harness {
    Harness::start(Setup {
        policy: InvalidEventPolicy::Park,
        parked: Some(store.clone()),
        ..Setup::default()
    })
    .await
}

fn aggregates(events: &[outbox_connectors::OutboxEvent]) -> Vec<&str> {
    events.iter().map(|e| e.aggregate_id.as_str()).collect()
}

#[tokio::test]
async fn an_invalid_event_parks_its_aggregate_while_others_flow() {
    let store = MemoryParkStore::default();
    let mut h = parking_harness(&store).await;
    let end = h
        .tx(&[
            row("A"),
            Change::InvalidRow { aggregate_id: "A" },
            row("A"),
            row("B"),
        ])
        .await
        .unwrap();
    let batch = h.publisher.next_batch().await;
    assert_eq!(
        aggregates(&batch.events),
        vec!["A", "B"],
        "A's first event went before the invalid one"
    );
    batch.succeed();
    h.settle().await;
    assert_eq!(
        h.flushed(),
        end,
        "parked events are durable: the watermark passes them"
    );
    let rows = store.rows();
    let reasons: Vec<(&str, &str)> = rows
        .iter()
        .map(|(a, _, r)| (a.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![("A", "null_event_type"), ("A", "behind_parked")]
    );

    // Later transactions: A keeps parking, B keeps flowing.
    let end2 = h.tx(&[row("A"), row("B")]).await.unwrap();
    let batch = h.publisher.next_batch().await;
    assert_eq!(aggregates(&batch.events), vec!["B"]);
    batch.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end2);
    assert_eq!(store.rows().len(), 3);
    assert_eq!(
        h.counter("events_published_total", &[("result", "parked")]),
        3.0
    );
}

#[tokio::test]
async fn a_rejected_event_parks_its_aggregate_from_then_on() {
    let store = MemoryParkStore::default();
    let mut h = parking_harness(&store).await;
    let end = h.tx(&[row("A"), row("B")]).await.unwrap();
    let batch = h.publisher.next_batch().await;
    let rejected = batch.events[0].id.to_string();
    batch.fail_one(0, error(ErrorClass::Permanent, "message_too_large"));
    h.settle().await;
    assert_eq!(h.flushed(), end);
    assert_eq!(
        store.rows(),
        vec![("A".to_string(), rejected, "message_too_large".to_string())]
    );
    h.tx(&[row("A"), row("B")]).await.unwrap();
    let batch = h.publisher.next_batch().await;
    assert_eq!(aggregates(&batch.events), vec!["B"]);
    batch.succeed();
    h.settle().await;
    assert_eq!(store.rows().len(), 2);
}

/// An event the sink's pre-flight check refuses (too large for SNS, say) is parked in
/// commit order without ever being offered to the sink, so no later event of its
/// aggregate can overtake it.
#[tokio::test]
async fn a_pre_flight_rejection_parks_before_anything_later_is_published() {
    let store = MemoryParkStore::default();
    let mut h = parking_harness(&store).await;
    // The harness numbers ids from 1: A's first row is event 1.
    let first = "00000000-0000-0000-0000-000000000001";
    h.publisher
        .reject_in_check(first, error(ErrorClass::Permanent, "message_too_large"));
    let end = h.tx(&[row("A"), row("A"), row("B")]).await.unwrap();
    let batch = h.publisher.next_batch().await;
    assert_eq!(aggregates(&batch.events), vec!["B"]);
    assert!(h.publisher.accepted().iter().all(|e| e.aggregate_id != "A"));
    batch.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end);
    let reasons: Vec<String> = store.rows().into_iter().map(|r| r.2).collect();
    assert_eq!(reasons, vec!["message_too_large", "behind_parked"]);
}

#[tokio::test]
async fn the_watermark_waits_for_the_parking_write() {
    let store = MemoryParkStore::default();
    let mut h = parking_harness(&store).await;
    let start = h.flushed();
    let held = store.hold().await;
    let end = h
        .tx(&[Change::InvalidRow { aggregate_id: "A" }])
        .await
        .unwrap();
    h.settle().await;
    assert_eq!(
        h.flushed(),
        start,
        "passed an event not yet written to the parking table"
    );
    drop(held);
    h.settle().await;
    assert_eq!(h.flushed(), end);
}

/// A redrive (or discard) empties the aggregate's rows; the next refresh unparks it, and
/// its next event is published again. While a parking write of it is still pending, it
/// stays parked, so a new event can never overtake a parked one.
#[tokio::test]
async fn an_aggregate_is_unparked_only_when_it_has_nothing_parked_or_pending() {
    let store = MemoryParkStore::default();
    let mut h = parking_harness(&store).await;
    h.tx(&[Change::InvalidRow { aggregate_id: "A" }])
        .await
        .unwrap();
    h.settle().await;
    let parking = h.parking.clone().unwrap();
    assert!(parking.is_parked("A"));

    // A pending write (routed, not yet written) keeps A parked across a refresh.
    let held = store.hold().await;
    h.tx(&[row("A")]).await.unwrap();
    store.remove_aggregate("A");
    let stats = parking.refresh().await.unwrap();
    assert!(parking.is_parked("A"), "unparked with a write pending");
    assert_eq!(stats.aggregates, 1);
    drop(held);
    h.settle().await;

    // Redriven: no rows, nothing pending → unparked; A flows again.
    store.remove_aggregate("A");
    let stats = parking.refresh().await.unwrap();
    assert!(!parking.is_parked("A"));
    assert_eq!(stats.aggregates, 0);
    let end = h.tx(&[row("A")]).await.unwrap();
    let batch = h.publisher.next_batch().await;
    assert_eq!(aggregates(&batch.events), vec!["A"]);
    batch.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end);
}

/// Parked aggregates survive a restart: a new session loads them from the table.
#[tokio::test]
async fn a_new_session_keeps_parking_what_the_table_holds() {
    let store = MemoryParkStore::default();
    let mut first = parking_harness(&store).await;
    first
        .tx(&[Change::InvalidRow { aggregate_id: "A" }])
        .await
        .unwrap();
    first.settle().await;
    drop(first);
    let mut second = parking_harness(&store).await;
    second.tx(&[row("A"), row("B")]).await.unwrap();
    let batch = second.publisher.next_batch().await;
    assert_eq!(aggregates(&batch.events), vec!["B"]);
}

/// A rejected event's aggregate is parked before its row is written; a refresh in between
/// (no row yet) must not unpark it, or the aggregate's next event would overtake.
#[tokio::test]
async fn a_refresh_before_a_rejection_is_written_keeps_the_aggregate_parked() {
    let store = MemoryParkStore::default();
    let h = parking_harness(&store).await;
    let parking = h.parking.clone().unwrap();
    // The acker has seen the rejection and not yet written it.
    parking.mark("A");
    parking.refresh().await.unwrap();
    assert!(
        parking.is_parked("A"),
        "unparked with the rejected event's write pending"
    );
}

/// A refresh cannot read the table while a parking write is on its way (it would see no
/// row and unpark the aggregate just as its row lands): it waits for the write.
#[tokio::test]
async fn a_refresh_waits_for_a_parking_write_in_progress() {
    let store = MemoryParkStore::default();
    let mut h = parking_harness(&store).await;
    h.tx(&[row("A")]).await.unwrap();
    let batch = h.publisher.next_batch().await;
    let held = store.hold().await;
    batch.fail_one(0, error(ErrorClass::Permanent, "message_too_large"));
    h.settle().await;
    let parking = h.parking.clone().unwrap();
    let refresh = tokio::spawn({
        let parking = parking.clone();
        async move { parking.refresh().await.unwrap() }
    });
    h.settle().await;
    assert!(!refresh.is_finished(), "refreshed during a write");
    drop(held);
    let stats = refresh.await.unwrap();
    assert_eq!(stats.aggregates, 1);
    assert!(parking.is_parked("A"));
    assert_eq!(store.rows().len(), 1);
}
