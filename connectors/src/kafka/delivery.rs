//! One delivery state per batch (the at-least-once publisher).
//!
//! rdkafka's `FutureProducer` gives every record a oneshot channel and a boxed sender,
//! and wakes the channel's future when the record's delivery report arrives. For a relay
//! that only ever waits for a whole batch, that was a per-record allocation pair and a
//! per-record future, most of the pipeline worker's share of the Kafka drain that was not
//! librdkafka's own (docs/benchmarks.md). Here each record carries a small [`Slot`]
//! naming its batch and its place in it; the delivery callback, on the producer's poll
//! thread, writes the outcome into the batch's table and wakes the batch once, when its
//! last report has arrived.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::message::DeliveryResult;
use rdkafka::producer::ProducerContext;
use tokio::sync::Notify;

use super::classify;
use super::context::RelayKafkaContext;
use crate::{ErrorClass, PublishError};

/// The outcomes of one batch's records, filled in by their delivery reports.
pub struct BatchDelivery {
    outcomes: Mutex<Vec<Option<Result<(), PublishError>>>>,
    /// Records whose report has not arrived yet.
    remaining: AtomicUsize,
    done: Notify,
}

impl BatchDelivery {
    pub fn new(records: usize) -> Arc<Self> {
        Arc::new(BatchDelivery {
            outcomes: Mutex::new(vec![None; records]),
            remaining: AtomicUsize::new(records),
            done: Notify::new(),
        })
    }

    /// The opaque of record `index`, handed to librdkafka with it.
    pub fn slot(self: &Arc<Self>, index: usize) -> Box<Slot> {
        Box::new(Slot {
            batch: Some(self.clone()),
            index,
        })
    }

    /// Settles record `index` without a delivery report: it never reached librdkafka.
    pub fn settle(&self, index: usize, outcome: Result<(), PublishError>) {
        let mut outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        if outcomes[index].is_some() {
            return;
        }
        outcomes[index] = Some(outcome);
        drop(outcomes);
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            // A stored permit if nobody waits yet: `wait` then returns at once.
            self.done.notify_one();
        }
    }

    /// Waits until every record is settled; their outcomes, in batch order.
    pub async fn wait(&self) -> Vec<Result<(), PublishError>> {
        while self.remaining.load(Ordering::Acquire) > 0 {
            self.done.notified().await;
        }
        let mut outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        outcomes
            .iter_mut()
            .map(|o| o.take().unwrap_or_else(|| Err(closed())))
            .collect()
    }
}

/// A record's place in its batch, travelling with it through librdkafka.
pub struct Slot {
    batch: Option<Arc<BatchDelivery>>,
    index: usize,
}

impl Slot {
    fn settle(mut self, outcome: Result<(), PublishError>) {
        if let Some(batch) = self.batch.take() {
            batch.settle(self.index, outcome);
        }
    }
}

impl Drop for Slot {
    /// A record librdkafka dropped without a report (the producer went away): its batch
    /// must still end, with the outcome `FutureProducer` gave a cancelled delivery.
    fn drop(&mut self) {
        if let Some(batch) = self.batch.take() {
            batch.settle(self.index, Err(closed()));
        }
    }
}

fn closed() -> PublishError {
    PublishError::new(
        ErrorClass::Fatal,
        "producer_closed",
        "the Kafka producer was closed before delivery was confirmed",
    )
}

impl ProducerContext for RelayKafkaContext {
    type DeliveryOpaque = Box<Slot>;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: Box<Slot>) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((err, _message)) => Err(classify(err)),
        };
        (*slot).settle(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_ends_when_its_last_record_is_settled_with_outcomes_in_order() {
        let batch = BatchDelivery::new(3);
        let (a, b, c) = (batch.slot(0), batch.slot(1), batch.slot(2));
        c.settle(Ok(()));
        a.settle(Err(PublishError::new(
            ErrorClass::Permanent,
            "t",
            "too big",
        )));
        let waiting = tokio::spawn({
            let batch = batch.clone();
            async move { batch.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one record still out");
        b.settle(Ok(()));
        let outcomes = waiting.await.unwrap();
        assert_eq!(outcomes.len(), 3);
        assert_eq!(outcomes[0].as_ref().unwrap_err().kind, "t");
        assert!(outcomes[1].is_ok() && outcomes[2].is_ok());
    }

    #[tokio::test]
    async fn a_slot_dropped_without_a_report_settles_its_record_as_producer_closed() {
        let batch = BatchDelivery::new(2);
        batch.slot(0).settle(Ok(()));
        drop(batch.slot(1));
        let outcomes = batch.wait().await;
        assert!(outcomes[0].is_ok());
        let err = outcomes[1].as_ref().unwrap_err();
        assert_eq!(
            (err.class, err.kind),
            (ErrorClass::Fatal, "producer_closed")
        );
    }
}
