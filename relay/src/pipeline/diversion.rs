//! `on_open: park`: what is bound for a destination whose circuit is open goes to the
//! parking table instead of waiting, so the slot keeps advancing and other destinations
//! keep flowing through a long outage.
//!
//! The connector's breakers decide when a destination is unavailable (one policy,
//! `outbox_connectors::policy`); this module only follows them. [`watch_circuits`] copies
//! the set of destinations whose circuit is not closed into a [`Diversion`], which the
//! reader and the acker consult:
//! - the reader parks an event for such a destination (reason [`CIRCUIT_OPEN`]) instead
//!   of handing it to the connector, and by the parking rule every later event of its
//!   aggregate follows it;
//! - the acker, waiting for a batch that the connector holds for such a destination,
//!   stops waiting: it parks copies of the batch's events and moves on, so the watermark
//!   passes them. The connector keeps the originals and may still deliver them when the
//!   destination comes back — before the redriven copies, since both go through the same
//!   per-aggregate lane or partition — so a consumer sees at most a replayed suffix, as
//!   after a crash, never a later event before an earlier one.
//!
//! The redriver (`redriver.rs`) sends the parked aggregates again once the circuit closes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use outbox_connectors::policy::{CircuitReport, CircuitState};
use outbox_connectors::Publisher;
use tokio::sync::watch;

pub use crate::state::CIRCUIT_OPEN;

/// How often the connector's circuits are read.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// The destinations whose events are diverted to parking now.
pub struct Diversion {
    open: RwLock<HashSet<Arc<str>>>,
    /// Whether `open` is non-empty: the reader's check costs one atomic load while every
    /// circuit is closed.
    any: AtomicBool,
    changed: watch::Sender<u64>,
}

impl Default for Diversion {
    fn default() -> Self {
        Diversion {
            open: RwLock::new(HashSet::new()),
            any: AtomicBool::new(false),
            changed: watch::channel(0).0,
        }
    }
}

impl Diversion {
    pub fn diverts(&self, destination: &str) -> bool {
        self.any.load(Ordering::Acquire)
            && self
                .open
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(destination)
    }

    /// Follows the connector's circuits: every destination whose circuit is not closed
    /// (open, or half-open with a probe under way) is diverted.
    pub fn update(&self, circuits: &[CircuitReport]) {
        let now: HashSet<Arc<str>> = circuits
            .iter()
            .filter(|c| c.state != CircuitState::Closed)
            .map(|c| c.destination.clone())
            .collect();
        let mut open = self.open.write().unwrap_or_else(|p| p.into_inner());
        if *open == now {
            return;
        }
        self.any.store(!now.is_empty(), Ordering::Release);
        *open = now;
        drop(open);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Wakes when the diverted set changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// Copies the connector's circuit states into `diversion` until the task is dropped.
pub async fn watch_circuits(publisher: Arc<dyn Publisher>, diversion: Arc<Diversion>) {
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        diversion.update(&publisher.circuits());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(d: &str, state: CircuitState) -> CircuitReport {
        CircuitReport {
            destination: d.into(),
            state,
            transitions: [0; 3],
        }
    }

    #[test]
    fn open_and_half_open_circuits_divert_closed_ones_do_not() {
        let d = Diversion::default();
        let mut changes = d.subscribe();
        assert!(!d.diverts("a"));
        d.update(&[
            report("a", CircuitState::Open),
            report("b", CircuitState::HalfOpen),
            report("c", CircuitState::Closed),
        ]);
        assert!(d.diverts("a") && d.diverts("b") && !d.diverts("c"));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        d.update(&[
            report("a", CircuitState::Open),
            report("b", CircuitState::HalfOpen),
        ]);
        assert!(!changes.has_changed().unwrap(), "same set, no wake-up");
        d.update(&[report("a", CircuitState::Closed)]);
        assert!(!d.diverts("a") && !d.diverts("b"));
        assert!(changes.has_changed().unwrap());
    }
}
