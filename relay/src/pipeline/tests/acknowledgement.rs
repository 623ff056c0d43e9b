//! What the flush watermark may pass, and when: only commits whose events, and every
//! earlier event, the sink has made durable.

use outbox_connectors::testing::error;
use outbox_connectors::ErrorClass;
use outbox_pgoutput::{Begin, LogicalReplicationMessage as M, Lsn};

use super::{row, Harness, Setup};

#[tokio::test]
async fn the_watermark_waits_for_every_batch_of_a_transaction() {
    let mut h = Harness::start(Setup {
        max_batch_events: 2,
        ..Setup::default()
    })
    .await;
    let start = h.flushed();
    let end = h
        .tx(&[row("a"), row("a"), row("b"), row("b"), row("c")])
        .await
        .unwrap();
    let b1 = h.publisher.next_batch().await;
    let b2 = h.publisher.next_batch().await;
    let b3 = h.publisher.next_batch().await;
    assert_eq!(
        (b1.events.len(), b2.events.len(), b3.events.len()),
        (2, 2, 1)
    );
    // Later batches first: nothing may be acknowledged while the first is in flight.
    b3.succeed();
    b2.succeed();
    h.settle().await;
    assert_eq!(
        h.flushed(),
        start,
        "a commit passed before all its events were durable"
    );
    b1.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end);
}

#[tokio::test]
async fn a_later_transaction_never_passes_an_earlier_undelivered_one() {
    let mut h = Harness::start(Setup::default()).await;
    let start = h.flushed();
    let end1 = h.tx(&[row("a")]).await.unwrap();
    let end2 = h.tx(&[row("b")]).await.unwrap();
    let t1 = h.publisher.next_batch().await;
    let t2 = h.publisher.next_batch().await;
    t2.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), start);
    t1.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end2);
    assert!(end2 > end1);
}

#[tokio::test]
async fn the_watermark_moves_commit_by_commit_as_deliveries_finish() {
    let mut h = Harness::start(Setup::default()).await;
    let end1 = h.tx(&[row("a")]).await.unwrap();
    let end2 = h.tx(&[row("a")]).await.unwrap();
    let t1 = h.publisher.next_batch().await;
    let t2 = h.publisher.next_batch().await;
    t1.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end1);
    t2.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end2);
}

#[tokio::test]
async fn keepalives_never_run_ahead_of_undelivered_events() {
    let mut h = Harness::start(Setup::default()).await;
    let start = h.flushed();
    let end = h.tx(&[row("a")]).await.unwrap();
    let beyond = Lsn(end.0 + 0x1000);
    h.keepalive(beyond).await.unwrap();
    h.settle().await;
    assert_eq!(
        h.flushed(),
        start,
        "a keepalive overtook an undelivered event"
    );
    h.publisher.next_batch().await.succeed();
    h.settle().await;
    assert_eq!(
        h.flushed(),
        beyond,
        "the keepalive's position follows once all before it is durable"
    );
}

#[tokio::test]
async fn a_keepalive_inside_an_open_transaction_is_not_a_position() {
    let mut h = Harness::start(Setup::default()).await;
    let start = h.flushed();
    h.feed(M::Begin(Begin {
        final_lsn: Lsn(0x9000),
        commit_ts: 0,
        xid: 9,
    }))
    .await
    .unwrap();
    h.keepalive(Lsn(0x8000)).await.unwrap();
    h.settle().await;
    assert_eq!(h.flushed(), start);
    assert!(h.publisher.try_next_batch().is_none());
}

#[tokio::test]
async fn an_idle_keepalive_advances_the_watermark() {
    let mut h = Harness::start(Setup::default()).await;
    h.keepalive(Lsn(0x5000)).await.unwrap();
    h.settle().await;
    assert_eq!(h.flushed(), Lsn(0x5000));
    // Never backwards.
    h.keepalive(Lsn(0x4000)).await.unwrap();
    h.settle().await;
    assert_eq!(h.flushed(), Lsn(0x5000));
}

/// A delivery failure in any position of a transaction's batches stops the watermark
/// before that transaction and ends the session with a retryable error (replay).
#[tokio::test]
async fn a_failed_delivery_in_any_position_is_never_acknowledged() {
    for class in [ErrorClass::Retryable, ErrorClass::Fatal] {
        for failing in 0..3 {
            let mut h = Harness::start(Setup {
                max_batch_events: 1,
                ..Setup::default()
            })
            .await;
            let end0 = h.tx(&[row("z")]).await.unwrap();
            h.publisher.next_batch().await.succeed();
            h.tx(&[row("a"), row("b"), row("c")]).await.unwrap();
            let batches = [
                h.publisher.next_batch().await,
                h.publisher.next_batch().await,
                h.publisher.next_batch().await,
            ];
            for (i, b) in batches.into_iter().enumerate() {
                if i == failing {
                    b.fail_one(0, error(class, "scripted_failure"));
                } else {
                    b.succeed();
                }
            }
            let err = h.flow.acker_stopped().await.expect("the acker stops");
            assert!(err.is_retryable(), "{class:?} at {failing}: {err}");
            h.settle().await;
            assert_eq!(h.flushed(), end0, "{class:?} at {failing}");
        }
    }
}

/// `accept` itself failing (a fatal producer) ends the session before anything of that
/// transaction is acknowledged.
#[tokio::test]
async fn a_refused_accept_ends_the_session_unacknowledged() {
    let mut h = Harness::start(Setup::default()).await;
    let start = h.flushed();
    h.publisher
        .fail_next_accept(error(ErrorClass::Fatal, "producer_fatal"));
    let err = h.tx(&[row("a")]).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    h.settle().await;
    assert_eq!(h.flushed(), start);
}

/// PostgreSQL 18 sends an unsolicited Stream Abort for an aborted subtransaction of a
/// large transaction: ignored, nothing published, the next transaction flows.
#[tokio::test]
async fn an_unsolicited_stream_abort_is_ignored() {
    let mut h = Harness::start(Setup::default()).await;
    assert!(h
        .feed(M::StreamAbort(outbox_pgoutput::StreamAbort {
            xid: 5,
            subxid: 6,
        }))
        .await
        .unwrap());
    let end = h.tx(&[row("a")]).await.unwrap();
    h.publisher.next_batch().await.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end);
}
