//! Redrive: an aggregate's parked events, sent again in commit order. One implementation
//! for the `parked redrive` command and the relay's own redriver (`on_open: park`).
//!
//! Each pass reads the aggregate's parked rows and hands the longest prefix that passes
//! the sink's pre-flight checks to the publisher as one batch (the connector keeps a
//! batch's order per aggregate), then removes the delivered prefix in one statement. The
//! first event that fails stays parked with its new error, and so does everything after
//! it. A permanent failure (the sink refuses the event, or the broker rejects it for
//! good) also becomes the row's reason: the event now needs an operator, and the
//! redriver, which takes only aggregates that need none, leaves it alone instead of
//! offering it again at every look. The relay keeps parking the aggregate's new events while it has rows, so a pass
//! also picks up what was parked during the previous one; the aggregate is unparked (by
//! `Parking::refresh`) once a pass leaves no row.

use outbox_connectors::{ErrorClass, PublishError, Publisher};

use super::{ParkedEvent, ParkedFilter, StateStore};
use crate::error::RelayError;
use crate::outbox::InvalidReason;

/// Most passes over one aggregate.
const MAX_PASSES: usize = 20;

/// What one aggregate's redrive did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Redriven {
    pub delivered: usize,
    /// The event that failed again, and why; it and the events after it stay parked.
    pub failure: Option<(String, String)>,
}

/// Redrives `aggregate`'s parked events.
pub async fn redrive_aggregate(
    store: &StateStore,
    publisher: &dyn Publisher,
    aggregate: &str,
) -> Result<Redriven, RelayError> {
    let mut done = Redriven::default();
    for _ in 0..MAX_PASSES {
        let events = store
            .parked_events(&ParkedFilter {
                aggregate: Some(aggregate.to_owned()),
                ..ParkedFilter::default()
            })
            .await?;
        if events.is_empty() {
            break;
        }
        // The prefix the sink can take as it is; the first event it cannot ends the pass.
        let mut sendable: Vec<&ParkedEvent> = Vec::with_capacity(events.len());
        let mut refused: Option<Failure> = None;
        for e in &events {
            match preflight(publisher, e) {
                Ok(()) => sendable.push(e),
                Err(failure) => {
                    refused = Some(failure.of(e));
                    break;
                }
            }
        }
        let (delivered, failed) = deliver(publisher, &sendable).await;
        let keys: Vec<(String, i64)> = sendable[..delivered]
            .iter()
            .map(|e| (e.commit_lsn.clone(), e.seq))
            .collect();
        store.remove_parked_many(&keys).await?;
        done.delivered += delivered;
        if let Some(f) = failed.or(refused) {
            store
                .redrive_failed(&f.event.commit_lsn, f.event.seq, &f.error, f.reason)
                .await?;
            done.failure = Some((f.event.event_id.clone(), f.error));
            break;
        }
    }
    Ok(done)
}

/// Why a parked event was not delivered this time.
struct Failure<'a> {
    event: &'a ParkedEvent,
    error: String,
    /// The row's new reason when the failure is permanent; `None` keeps its reason (a
    /// retryable failure: the destination may take it at the next look).
    reason: Option<&'static str>,
}

/// A [`Failure`] before it is tied to its event.
struct Refusal {
    error: String,
    reason: Option<&'static str>,
}

impl Refusal {
    fn of(self, event: &ParkedEvent) -> Failure<'_> {
        Failure {
            event,
            error: self.error,
            reason: self.reason,
        }
    }

    fn from_publish(err: &PublishError) -> Self {
        Refusal {
            error: err.to_string(),
            reason: (err.class == ErrorClass::Permanent).then_some(err.kind),
        }
    }
}

/// Whether the sink can take the event as it is.
fn preflight(publisher: &dyn Publisher, e: &ParkedEvent) -> Result<(), Refusal> {
    if e.destination.is_empty() {
        return Err(Refusal {
            error: format!(
                "invalid event ({}): it has no destination; fix the cause, write a corrected outbox row, and discard this one",
                e.reason
            ),
            // Already parked as invalid: its reason says so.
            reason: None,
        });
    }
    publisher
        .validate_destination(&e.destination)
        .map_err(|problem| Refusal {
            error: format!("destination: {problem}"),
            reason: Some(InvalidReason::NoRoute.label()),
        })?;
    publisher.check(&e.event).map_err(|err| Refusal {
        error: err.to_string(),
        // The sink will never take it as it is, whatever the error's class.
        reason: Some(err.kind),
    })
}

/// Publishes `events` as one batch and waits for the broker: how many, from the start,
/// were delivered, and the first that was not.
async fn deliver<'a>(
    publisher: &dyn Publisher,
    events: &[&'a ParkedEvent],
) -> (usize, Option<Failure<'a>>) {
    if events.is_empty() {
        return (0, None);
    }
    let batch = events.iter().map(|e| e.event.clone()).collect();
    let delivery = match publisher.accept(batch).await {
        Ok(d) => d,
        Err(err) => return (0, Some(Refusal::from_publish(&err).of(events[0]))),
    };
    let outcomes = delivery.await;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        if let Err(err) = outcome.result {
            return (i, Some(Refusal::from_publish(&err).of(events[i])));
        }
    }
    (events.len(), None)
}
