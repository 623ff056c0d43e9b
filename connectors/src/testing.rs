//! A scripted publisher for in-process tests of the relay's pipeline (feature `test-utils`).
//!
//! Every accepted batch waits until the test resolves it by hand, so a test decides which
//! deliveries finish, in which order, and with which outcome, and then checks what the
//! pipeline did about it (the flush watermark, dead letters, halts, restarts) without a
//! broker. Modelled on supabase/etl's `TestDestinationWrapper`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{oneshot, Notify};

use crate::{Delivery, ErrorClass, EventOutcome, OutboxEvent, PublishError, Publisher};

/// The publisher handed to the pipeline. Clone it to keep a handle in the test.
#[derive(Clone, Default)]
pub struct ScriptedPublisher {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    accepted: Notify,
}

#[derive(Default)]
struct State {
    /// Batches accepted and not yet taken by the test.
    waiting: VecDeque<AcceptedBatch>,
    /// Errors the next `accept` calls return instead of taking the batch.
    accept_errors: VecDeque<PublishError>,
    /// Destinations `validate_destination` rejects.
    invalid_destinations: Vec<String>,
    /// Event ids the pre-flight `check` rejects, with the error.
    precheck_rejects: Vec<(String, PublishError)>,
    /// Every event accepted, in accept order (a consumer's view of what was handed over).
    log: Vec<OutboxEvent>,
    /// What `circuits` reports.
    circuits: Vec<crate::policy::CircuitReport>,
}

/// One accepted batch; resolve it with [`AcceptedBatch::succeed`] or
/// [`AcceptedBatch::resolve`]. Dropping it unresolved resolves every event as Fatal
/// `publisher_closed`, as a real connector does when it stops.
pub struct AcceptedBatch {
    pub events: Vec<OutboxEvent>,
    resolve: oneshot::Sender<Vec<Result<(), PublishError>>>,
}

impl AcceptedBatch {
    /// Every event of the batch is durable.
    pub fn succeed(self) {
        let n = self.events.len();
        let _ = self.resolve.send(vec![Ok(()); n]);
    }

    /// One result per event, in order.
    pub fn resolve(self, results: Vec<Result<(), PublishError>>) {
        assert_eq!(
            results.len(),
            self.events.len(),
            "one result per event of the batch"
        );
        let _ = self.resolve.send(results);
    }

    /// Event `i` fails with `error`, the others succeed.
    pub fn fail_one(self, i: usize, error: PublishError) {
        let results = (0..self.events.len())
            .map(|j| if j == i { Err(error.clone()) } else { Ok(()) })
            .collect();
        self.resolve(results);
    }

    /// The event ids, in order (for assertions).
    pub fn ids(&self) -> Vec<&str> {
        self.events.iter().map(|e| e.id.as_str()).collect()
    }
}

/// A classified error for scripts.
pub fn error(class: ErrorClass, kind: &'static str) -> PublishError {
    PublishError::new(class, kind, format!("scripted {kind}"))
}

impl ScriptedPublisher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits (up to 5 s, so a broken pipeline fails the test instead of hanging it) for
    /// the next accepted batch.
    pub async fn next_batch(&self) -> AcceptedBatch {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let notified = self.shared.accepted.notified();
                if let Some(b) = self.lock().waiting.pop_front() {
                    return b;
                }
                notified.await;
            }
        })
        .await
        .expect("no batch was accepted within 5 s")
    }

    /// The next accepted batch if there is one now.
    pub fn try_next_batch(&self) -> Option<AcceptedBatch> {
        self.lock().waiting.pop_front()
    }

    /// Makes the next `accept` fail with `error` (queued: several calls, several failures).
    pub fn fail_next_accept(&self, error: PublishError) {
        self.lock().accept_errors.push_back(error);
    }

    /// `validate_destination` rejects `destination` from now on.
    pub fn reject_destination(&self, destination: &str) {
        self.lock()
            .invalid_destinations
            .push(destination.to_owned());
    }

    /// The pre-flight `check` rejects the event with this id.
    pub fn reject_in_check(&self, event_id: &str, error: PublishError) {
        self.lock()
            .precheck_rejects
            .push((event_id.to_owned(), error));
    }

    /// `circuits` reports `destination` in `state` from now on.
    pub fn set_circuit(&self, destination: &str, state: crate::policy::CircuitState) {
        let mut s = self.lock();
        s.circuits.retain(|c| &*c.destination != destination);
        s.circuits.push(crate::policy::CircuitReport {
            destination: destination.into(),
            state,
            transitions: [0; 3],
        });
    }

    /// Every event accepted so far, in accept order.
    pub fn accepted(&self) -> Vec<OutboxEvent> {
        self.lock().log.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl Publisher for ScriptedPublisher {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn validate_destination(&self, destination: &str) -> Result<(), String> {
        if self
            .lock()
            .invalid_destinations
            .iter()
            .any(|d| d == destination)
        {
            return Err(format!("{destination:?} is rejected by the script"));
        }
        Ok(())
    }

    fn check(&self, event: &OutboxEvent) -> Result<(), PublishError> {
        match self
            .lock()
            .precheck_rejects
            .iter()
            .find(|(id, _)| *id == event.id)
        {
            Some((_, e)) => Err(e.clone()),
            None => Ok(()),
        }
    }

    async fn accept(&self, batch: Vec<OutboxEvent>) -> Result<Delivery, PublishError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.lock();
            if let Some(e) = state.accept_errors.pop_front() {
                return Err(e);
            }
            state.log.extend(batch.iter().cloned());
            state.waiting.push_back(AcceptedBatch {
                events: batch.clone(),
                resolve: tx,
            });
        }
        self.shared.accepted.notify_waiters();
        Ok(async move {
            let results = rx.await.unwrap_or_else(|_| {
                vec![
                    Err(PublishError::new(
                        ErrorClass::Fatal,
                        "publisher_closed",
                        "the scripted batch was dropped unresolved",
                    ));
                    batch.len()
                ]
            });
            batch
                .into_iter()
                .zip(results)
                .map(|(event, result)| EventOutcome { event, result })
                .collect()
        }
        .boxed())
    }

    async fn flush(&self, _timeout: Duration) -> Result<(), PublishError> {
        Ok(())
    }

    fn circuits(&self) -> Vec<crate::policy::CircuitReport> {
        self.lock().circuits.clone()
    }

    async fn probe(&self, _timeout: Duration) -> Result<(), PublishError> {
        Ok(())
    }
}
