//! The in-flight memory budget.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of events handed to the sink and not yet acknowledged. The reader takes from
/// it before accepting an event and waits when it is empty, which stops it reading the
/// replication socket: PostgreSQL keeps the WAL and the relay does not grow.
#[derive(Clone)]
pub struct Budget {
    sem: Arc<Semaphore>,
    total: usize,
}

impl Budget {
    pub fn new(total: usize) -> Self {
        Budget {
            sem: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// An event larger than the whole budget takes the whole budget, so it still flows
    /// (alone) rather than waiting forever.
    fn cost(&self, bytes: usize) -> u32 {
        bytes.min(self.total).min(u32::MAX as usize) as u32
    }

    pub fn try_take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        self.sem
            .clone()
            .try_acquire_many_owned(self.cost(bytes))
            .ok()
    }

    pub async fn take(&self, bytes: usize) -> OwnedSemaphorePermit {
        self.sem
            .clone()
            .acquire_many_owned(self.cost(bytes))
            .await
            .expect("the budget semaphore is never closed")
    }

    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_when_full_and_resumes_on_release() {
        let b = Budget::new(100);
        let first = b.try_take(60).unwrap();
        assert!(b.try_take(60).is_none());
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.take(60).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        let second = waiter.await.unwrap();
        assert_eq!(b.available(), 40);
        drop(second);
        // Larger than the budget: takes all of it rather than deadlocking.
        let huge = b.take(1_000).await;
        assert_eq!(b.available(), 0);
        drop(huge);
    }
}
