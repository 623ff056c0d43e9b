//! Redrive: an aggregate's parked events, sent again in commit order. One implementation
//! for the `parked redrive` command and the relay's own redriver (`on_open: park`).
//!
//! Each pass reads the aggregate's parked rows and hands the longest prefix that passes
//! the sink's pre-flight checks to the publisher as one batch (the connector keeps a
//! batch's order per aggregate), then removes the delivered prefix in one statement. The
//! first event that fails stays parked with its new error, and so does everything after
//! it. The relay keeps parking the aggregate's new events while it has rows, so a pass
//! also picks up what was parked during the previous one; the aggregate is unparked (by
//! `Parking::refresh`) once a pass leaves no row.

use outbox_connectors::Publisher;

use super::{ParkedEvent, ParkedFilter, StateStore};
use crate::error::RelayError;

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
        let mut refused: Option<(&ParkedEvent, String)> = None;
        for e in &events {
            match preflight(publisher, e) {
                Ok(()) => sendable.push(e),
                Err(error) => {
                    refused = Some((e, error));
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
        let failure = failed.or(refused);
        if let Some((e, error)) = failure {
            store.redrive_failed(&e.commit_lsn, e.seq, &error).await?;
            done.failure = Some((e.event_id.clone(), error));
            break;
        }
    }
    Ok(done)
}

/// Whether the sink can take the event as it is.
fn preflight(publisher: &dyn Publisher, e: &ParkedEvent) -> Result<(), String> {
    if e.destination.is_empty() {
        return Err(format!(
            "invalid event ({}): it has no destination; fix the cause, write a corrected outbox row, and discard this one",
            e.reason
        ));
    }
    publisher
        .validate_destination(&e.destination)
        .map_err(|problem| format!("destination: {problem}"))?;
    publisher.check(&e.event).map_err(|err| err.to_string())
}

/// Publishes `events` as one batch and waits for the broker: how many, from the start,
/// were delivered, and the first that was not.
async fn deliver<'a>(
    publisher: &dyn Publisher,
    events: &[&'a ParkedEvent],
) -> (usize, Option<(&'a ParkedEvent, String)>) {
    if events.is_empty() {
        return (0, None);
    }
    let batch = events.iter().map(|e| e.event.clone()).collect();
    let delivery = match publisher.accept(batch).await {
        Ok(d) => d,
        Err(err) => return (0, Some((events[0], err.to_string()))),
    };
    let outcomes = delivery.await;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        if let Err(err) = outcome.result {
            return (i, Some((events[i], err.to_string())));
        }
    }
    (events.len(), None)
}
