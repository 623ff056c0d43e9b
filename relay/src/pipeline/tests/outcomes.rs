//! The outcome of each kind of failure: dead letter, halt, restart, and a clean stop
//! while waiting for budget.

use std::time::Duration;

use outbox_connectors::testing::error;
use outbox_connectors::ErrorClass;
use outbox_pgoutput::{Begin, LogicalReplicationMessage as M, Lsn};

use super::{row, Change, FlowMemory, Harness, Setup};
use crate::config::InvalidEventPolicy;
use crate::error::RelayError;

const DEAD_LETTER: &str = "outbox-relay.dead-letter";

fn header<'a>(e: &'a outbox_connectors::OutboxEvent, name: &str) -> Option<&'a [u8]> {
    e.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_ref())
}

#[tokio::test]
async fn an_invalid_row_is_dead_lettered_in_place_and_then_acknowledged() {
    let mut h = Harness::start(Setup::default()).await;
    let end = h
        .tx(&[row("a"), Change::Row { aggregate_id: None }, row("b")])
        .await
        .unwrap();
    let batch = h.publisher.next_batch().await;
    let destinations: Vec<&str> = batch.events.iter().map(|e| &*e.destination).collect();
    assert_eq!(
        destinations,
        vec!["outbox.event.Order", DEAD_LETTER, "outbox.event.Order"]
    );
    assert_eq!(
        header(&batch.events[1], "outbox-relay-error-reason"),
        Some(&b"null_aggregate_id"[..])
    );
    batch.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end);
    assert_eq!(
        h.counter("invalid_events_total", &[("reason", "null_aggregate_id")]),
        1.0
    );
    assert_eq!(
        h.counter(
            "dead_letter_events_total",
            &[("reason", "null_aggregate_id")]
        ),
        1.0
    );
}

#[tokio::test]
async fn a_permanent_rejection_is_dead_lettered_before_the_watermark_passes() {
    let mut h = Harness::start(Setup::default()).await;
    let start = h.flushed();
    let end = h.tx(&[row("a"), row("b")]).await.unwrap();
    let batch = h.publisher.next_batch().await;
    let rejected_id = batch.events[1].id.clone();
    batch.fail_one(1, error(ErrorClass::Permanent, "message_too_large"));
    let dl = h.publisher.next_batch().await;
    assert_eq!(dl.events.len(), 1);
    assert_eq!(&*dl.events[0].destination, DEAD_LETTER);
    assert_eq!(dl.events[0].id, rejected_id);
    assert_eq!(
        header(&dl.events[0], "outbox-relay-error-reason"),
        Some(&b"message_too_large"[..])
    );
    h.settle().await;
    assert_eq!(
        h.flushed(),
        start,
        "passed before the dead letter was durable"
    );
    dl.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end);
    assert_eq!(
        h.counter(
            "events_published_total",
            &[
                ("destination", "outbox.event.Order"),
                ("result", "dead_lettered")
            ]
        ),
        1.0
    );
}

#[tokio::test]
async fn halt_on_an_invalid_row_stops_without_acknowledging_it() {
    let mut h = Harness::start(Setup {
        policy: InvalidEventPolicy::Halt,
        ..Setup::default()
    })
    .await;
    let end1 = h.tx(&[row("a")]).await.unwrap();
    h.publisher.next_batch().await.succeed();
    let err = h
        .tx(&[row("b"), Change::Row { aggregate_id: None }])
        .await
        .unwrap_err();
    assert!(matches!(err, RelayError::Halted(_)), "{err}");
    assert!(!err.is_retryable());
    h.settle().await;
    assert_eq!(h.flushed(), end1);
}

/// The halt must win over the reader's own failure to queue behind a stopped acker,
/// however many transactions are queued behind the rejected one (issue: a halt turned
/// into a retryable "stream ended" and a restart loop).
#[tokio::test]
async fn halt_on_a_rejection_under_a_backlog_really_halts() {
    let mut h = Harness::start(Setup {
        policy: InvalidEventPolicy::Halt,
        ..Setup::default()
    })
    .await;
    let start = h.flushed();
    h.tx(&[row("a")]).await.unwrap();
    for _ in 0..50 {
        h.tx(&[row("b")]).await.unwrap();
    }
    h.publisher
        .next_batch()
        .await
        .fail_one(0, error(ErrorClass::Permanent, "message_too_large"));
    h.settle().await;
    // The reader meets the stopped acker on its next transaction.
    let err = h.tx(&[row("c")]).await.unwrap_err();
    assert!(matches!(err, RelayError::Halted(_)), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(h.flushed(), start);
}

#[tokio::test]
async fn shutdown_while_waiting_for_budget_stops_reading_and_drains_what_was_sent() {
    // Each event costs a few hundred bytes against the budget: two fit, the third waits.
    let mut h = Harness::start(Setup {
        inflight_bytes: 1200,
        max_batch_events: 1,
        ..Setup::default()
    })
    .await;
    let end1 = h.tx(&[row("a")]).await.unwrap();
    h.feed(M::Begin(Begin {
        final_lsn: Lsn(0xF000),
        commit_ts: 0,
        xid: 2,
    }))
    .await
    .unwrap();
    let msg = h.message(true, "b");
    assert!(h.feed(msg).await.unwrap());
    let msg = h.message(true, "b");
    let shutdown = h.shutdown.clone();
    let stop = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        shutdown.send_replace(true);
    };
    let (more, ()) = tokio::join!(h.feed(msg), stop);
    assert!(
        !more.unwrap(),
        "the reader stops when shutdown comes while it waits"
    );

    // What was handed over drains; the interrupted transaction is not acknowledged.
    let b1 = h.publisher.next_batch().await;
    let b2 = h.publisher.next_batch().await;
    b1.succeed();
    b2.succeed();
    h.flow
        .finish(&Ok(()), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(h.progress.flushed(), end1);
}

#[tokio::test]
async fn a_transactional_message_is_an_event_in_commit_order() {
    let mut h = Harness::start(Setup::default()).await;
    let end = h
        .tx(&[
            row("a"),
            Change::Message {
                transactional: true,
            },
            row("a"),
        ])
        .await
        .unwrap();
    let batch = h.publisher.next_batch().await;
    assert_eq!(batch.events.len(), 3);
    assert_eq!(batch.events[1].aggregate_id, "agg-m");
    assert_eq!(batch.events[1].payload.as_deref(), Some(&br#"{"n":1}"#[..]));
    batch.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end);
}

/// Issue 11.1: a non-transactional message is decoded whether or not its transaction
/// commits, so it must never become an event.
#[tokio::test]
async fn a_non_transactional_message_is_invalid_not_an_event() {
    let mut h = Harness::start(Setup::default()).await;
    let at = h.standalone_message("rolled-back").await.unwrap();
    let batch = h.publisher.next_batch().await;
    assert_eq!(batch.events.len(), 1);
    assert_eq!(
        &*batch.events[0].destination, DEAD_LETTER,
        "{:?}",
        batch.events[0]
    );
    assert_eq!(
        header(&batch.events[0], "outbox-relay-error-reason"),
        Some(&b"non_transactional_message"[..])
    );
    batch.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), at);
    assert_eq!(
        h.counter(
            "invalid_events_total",
            &[("reason", "non_transactional_message")]
        ),
        1.0
    );
}

/// Issue 9.2 (SNS/SQS, raw payloads): the dead-letter copy of an event can be refused
/// for the same reason as the event (a NULL payload where the sink needs a body). The
/// relay then dead-letters a summary that every sink can carry, instead of failing the
/// session and replaying into the same failure forever.
#[tokio::test]
async fn a_refused_dead_letter_copy_falls_back_to_a_summary() {
    let mut h = Harness::start(Setup::default()).await;
    let start = h.flushed();
    let end = h.tx(&[row("a"), row("b")]).await.unwrap();
    let batch = h.publisher.next_batch().await;
    let rejected = batch.events[0].clone();
    batch.fail_one(0, error(ErrorClass::Permanent, "invalid_parameter"));
    let copy = h.publisher.next_batch().await;
    assert_eq!(
        copy.events[0].payload, rejected.payload,
        "the event's own copy first"
    );
    copy.fail_one(0, error(ErrorClass::Permanent, "invalid_parameter"));
    let summary = h.publisher.next_batch().await;
    assert_eq!(&*summary.events[0].destination, DEAD_LETTER);
    let doc: serde_json::Value =
        serde_json::from_slice(summary.events[0].payload.as_ref().unwrap()).unwrap();
    assert_eq!(doc["id"], rejected.id.as_str());
    assert_eq!(doc["reason"], "invalid_parameter");
    assert_eq!(doc["original_destination"], "outbox.event.Order");
    assert_eq!(doc["aggregateid"], "a");
    assert_eq!(doc["payload"], format!(r#"{{"id":"{}"}}"#, rejected.id));
    h.settle().await;
    assert_eq!(h.flushed(), start);
    summary.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end);
    assert_eq!(
        h.counter(
            "dead_letter_events_total",
            &[("reason", "invalid_parameter")]
        ),
        1.0
    );
}

/// When the dead-letter destination refuses even the summary, the session ends with an
/// error naming the event (the supervisor stops after it repeats), and nothing is
/// acknowledged.
#[tokio::test]
async fn a_dead_letter_destination_that_refuses_everything_names_the_event() {
    let mut h = Harness::start(Setup::default()).await;
    let start = h.flushed();
    h.tx(&[row("a")]).await.unwrap();
    let batch = h.publisher.next_batch().await;
    let id = batch.events[0].id.clone();
    batch.fail_one(0, error(ErrorClass::Permanent, "message_too_large"));
    for _ in 0..2 {
        h.publisher
            .next_batch()
            .await
            .fail_one(0, error(ErrorClass::Permanent, "destination_not_found"));
    }
    let err = h.flow.acker_stopped().await.unwrap();
    assert_eq!(
        err.failed_event().map(|e| e.id.as_str()),
        Some(id.as_str()),
        "{err}"
    );
    assert!(err.to_string().contains("dead-letter destination"), "{err}");
    assert_eq!(h.flushed(), start);
}

/// Issue 9.2 (Kafka): a broker-side rejection makes the gap-less producer fatal, so the
/// dead-letter copy cannot be sent in that session. The next session remembers the
/// rejection and dead-letters the event without offering it to the broker again.
#[tokio::test]
async fn a_rejection_that_broke_the_connector_is_dead_lettered_directly_next_session() {
    let memory = FlowMemory::default();
    let mut first = Harness::start(Setup {
        memory: memory.clone(),
        ..Setup::default()
    })
    .await;
    let start = first.flushed();
    first.tx(&[row("a"), row("b")]).await.unwrap();
    let batch = first.publisher.next_batch().await;
    let rejected = batch.events[0].id.clone();
    first
        .publisher
        .fail_next_accept(error(ErrorClass::Fatal, "producer_fatal"));
    batch.resolve(vec![
        Err(error(ErrorClass::Permanent, "message_too_large")),
        Err(error(ErrorClass::Fatal, "producer_fatal")),
    ]);
    let err = first.flow.acker_stopped().await.unwrap();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(first.flushed(), start);

    // The replay, in a new session with a new connector.
    let mut second = Harness::start(Setup {
        memory,
        ..Setup::default()
    })
    .await;
    let end = second.tx(&[row("a"), row("b")]).await.unwrap();
    let batch = second.publisher.next_batch().await;
    let destinations: Vec<&str> = batch.events.iter().map(|e| &*e.destination).collect();
    assert_eq!(destinations, vec![DEAD_LETTER, "outbox.event.Order"]);
    assert_eq!(batch.events[0].id, rejected);
    assert_eq!(
        header(&batch.events[0], "outbox-relay-error-reason"),
        Some(&b"message_too_large"[..])
    );
    batch.succeed();
    second.settle().await;
    assert_eq!(second.flushed(), end);
}
