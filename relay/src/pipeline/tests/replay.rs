//! Transactions the server resends although the relay already delivered them (its
//! recorded progress is ahead of the slot) are skipped, by PostgreSQL's own rule: a
//! transaction whose commit record starts before the recorded position.

use outbox_pgoutput::Lsn;

use super::{row, Harness, Setup};

#[tokio::test]
async fn replayed_transactions_below_the_record_are_skipped_and_counted() {
    // The slot resumes at 0x1000 but the relay recorded delivery up to 0x1400: the two
    // transactions the harness writes first (commit records at 0x1180 and 0x1308) were
    // delivered; the third (0x1490) was not.
    let mut h = Harness::start(Setup {
        skip_before: Lsn(0x1400),
        ..Setup::default()
    })
    .await;
    h.tx(&[row("a")]).await.unwrap();
    h.tx(&[row("a"), row("b")]).await.unwrap();
    h.settle().await;
    assert!(
        h.publisher.try_next_batch().is_none(),
        "a delivered transaction was published again"
    );
    let end = h.tx(&[row("a")]).await.unwrap();
    let batch = h.publisher.next_batch().await;
    assert_eq!(batch.events.len(), 1);
    batch.succeed();
    h.settle().await;
    assert_eq!(h.flushed(), end);
    assert_eq!(h.counter("replayed_transactions_skipped_total", &[]), 2.0);
    assert_eq!(h.counter("transactions_total", &[]), 3.0);
}

#[tokio::test]
async fn a_standalone_message_below_the_record_is_skipped() {
    let mut h = Harness::start(Setup {
        skip_before: Lsn(0x1500),
        ..Setup::default()
    })
    .await;
    h.standalone_message("x").await.unwrap();
    h.settle().await;
    assert!(h.publisher.try_next_batch().is_none());
}
