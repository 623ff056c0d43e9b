//! `Flow::settle`, which a snapshot waits on before streaming starts: it returns only
//! when everything handed over is finished, and with the acker's error when a delivery
//! fails.

use std::time::Duration;

use outbox_connectors::testing::error;
use outbox_connectors::ErrorClass;

use super::{row, Harness, Setup};
use crate::error::RelayError;

#[tokio::test]
async fn settle_returns_only_once_every_event_handed_over_is_delivered() {
    let mut h = Harness::start(Setup::default()).await;
    h.tx(&[row("a"), row("b")]).await.unwrap();
    let batch = h.publisher.next_batch().await;
    let mut settle = Box::pin(h.flow.settle());
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut settle)
            .await
            .is_err(),
        "settled while a batch was in flight"
    );
    batch.succeed();
    tokio::time::timeout(Duration::from_secs(5), settle)
        .await
        .expect("settled")
        .expect("no error");
}

#[tokio::test]
async fn settle_fails_with_the_delivery_error() {
    let mut h = Harness::start(Setup::default()).await;
    h.tx(&[row("a")]).await.unwrap();
    let batch = h.publisher.next_batch().await;
    batch.fail_one(0, error(ErrorClass::Retryable, "broker_down"));
    let result = tokio::time::timeout(Duration::from_secs(5), h.flow.settle())
        .await
        .expect("settle returns");
    assert!(
        matches!(result, Err(RelayError::EventFailed { .. })),
        "{result:?}"
    );
}
