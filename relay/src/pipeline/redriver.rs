//! The redriver: with `circuit_breaker.on_open: park` and `redrive_on_close: true`, the
//! aggregates parked because their destination's circuit was open (or its bulkhead full)
//! are sent again, in order, once it has closed (and caught up) — no operator needed for
//! an outage that ends.
//!
//! Only aggregates none of whose parked events needs an operator are redriven: diverted
//! ones (`circuit_open`, `bulkhead_full`) and those parked behind them (`behind_parked`,
//! which is also what a redrive leaves when later events reach the table after its last
//! pass). An aggregate parked behind an invalid or rejected event waits for an operator,
//! since sending its later events would overtake the one that needs attention.
//!
//! A circuit closes after a successful probe. The Kafka connector probes open circuits on
//! its own (a metadata request); the SNS/SQS connector probes with the next request, and
//! while a destination is diverted the reader sends it none — so for those sinks the
//! redriver offers one diverted aggregate as the probe every [`PROBE_EVERY`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use outbox_connectors::Publisher;
use tokio::time::Instant;
use tracing::{info, warn};

use super::bulkhead::Bulkhead;
use super::diversion::Diversion;
use super::session::AbortOnDrop;
use crate::state::{redrive_aggregate, Parking, StateStore};

/// How often the parked table is looked at while a redrive is under way.
const TICK: Duration = Duration::from_secs(1);
/// … and while every destination with diverted events is still closed to them.
const LOOK_EVERY: Duration = Duration::from_secs(5);
/// Aggregates redriven at once.
const CONCURRENCY: usize = 256;
/// With a connector that does not probe on its own: how often a diverted aggregate is
/// offered to an open circuit, and how long the redriver waits for it.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
const PROBE_WAIT: Duration = Duration::from_secs(30);

pub async fn run(
    store: Arc<StateStore>,
    parking: Arc<Parking>,
    publisher: Arc<dyn Publisher>,
    diversion: Arc<Diversion>,
    bulkhead: Option<Arc<Bulkhead>>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probed: HashMap<String, Instant> = HashMap::new();
    // The probe under way, if any (one at a time).
    let mut probes: Option<AbortOnDrop<()>> = None;
    let mut last_error: Option<Instant> = None;
    let mut changes = diversion.subscribe();
    // Whether the last look found aggregates a destination could take (then it looks
    // again at the next tick), and when it looked.
    let mut last_look: Option<(Instant, bool)> = None;
    loop {
        tick.tick().await;
        // Reading the parked table costs a scan of it, which matters in a long outage with
        // hundreds of thousands of parked events. While nothing can be redriven, look again
        // only when a circuit changes state, when a probe is due, or every LOOK_EVERY.
        let changed = changes.has_changed().unwrap_or(false);
        changes.mark_unchanged();
        let quiet = last_look.is_some_and(|(at, ready)| !ready && at.elapsed() < LOOK_EVERY);
        if quiet && !changed {
            continue;
        }
        let diverted = match store.diverted_aggregates().await {
            Ok(d) => d,
            Err(e) => {
                // Once a minute at most: the state connection is down, and the session
                // will notice that on its own.
                if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    warn!(error = %e, "redriver: cannot read the parked events");
                    last_error = Some(Instant::now());
                }
                continue;
            }
        };
        if diverted.is_empty() {
            last_look = Some((Instant::now(), false));
            continue;
        }
        let mut by_destination: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (aggregate, destination) in diverted {
            by_destination
                .entry(destination)
                .or_default()
                .push(aggregate);
        }
        // Every destination that can take its events again, at once; a probe of a
        // diverted one runs on its own so that it never holds the others up.
        let mut ready: Vec<(Arc<str>, String)> = Vec::new();
        for (destination, aggregates) in by_destination {
            let destination: Arc<str> = destination.into();
            if diversion.diverts(&destination) {
                let due = probed
                    .get(&*destination)
                    .is_none_or(|t| t.elapsed() >= PROBE_EVERY);
                let probing = probes.as_ref().is_some_and(|p| !p.0.is_finished());
                if !publisher.probes_open_circuits() && due && !probing {
                    probed.insert(destination.to_string(), Instant::now());
                    let (s, p, first) = (store.clone(), publisher.clone(), aggregates[0].clone());
                    probes = Some(AbortOnDrop(tokio::spawn(async move {
                        let _ =
                            tokio::time::timeout(PROBE_WAIT, redrive_aggregate(&s, &*p, &first))
                                .await;
                    })));
                }
                continue;
            }
            if bulkhead.as_ref().is_some_and(|b| !b.has_room(&destination)) {
                continue; // still catching up
            }
            ready.extend(aggregates.into_iter().map(|a| (destination.clone(), a)));
        }
        last_look = Some((Instant::now(), !ready.is_empty()));
        if ready.is_empty() {
            continue;
        }
        let started = Instant::now();
        let results: Vec<_> = futures::stream::iter(ready)
            .map(|(destination, a)| {
                let (store, publisher) = (store.clone(), publisher.clone());
                async move {
                    (
                        destination,
                        redrive_aggregate(&store, &*publisher, &a).await,
                    )
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut per_destination: BTreeMap<Arc<str>, (usize, usize, usize)> = BTreeMap::new();
        for (destination, r) in results {
            let entry = per_destination.entry(destination.clone()).or_default();
            entry.0 += 1;
            match r {
                Ok(r) => {
                    entry.1 += r.delivered;
                    entry.2 += usize::from(r.failure.is_some());
                }
                Err(e) => {
                    entry.2 += 1;
                    warn!(%destination, error = %e, "redriver: a redrive failed");
                }
            }
        }
        let mut redrove = false;
        for (destination, (aggregates, events, failed)) in per_destination {
            redrove |= events > 0;
            info!(%destination, aggregates, events, failed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "redrove the events diverted while the destination could not take them");
        }
        if redrove {
            // Unpark what is now empty at once, rather than at the next metrics refresh.
            if let Err(e) = parking.refresh().await {
                warn!(error = %e, "redriver: refreshing the parked aggregates");
            }
        }
    }
}
