//! Bulkheads: no destination holds more than `pipeline.destination_share` of the in-flight
//! budget.
//!
//! The reader hands events over in commit order, so a destination that is slow without
//! failing (its circuit stays closed) would fill the whole budget, and every event behind
//! it — for any destination — would wait. Waiting at a smaller share would not help: the
//! next event for the slow destination would still stop the reader. So beyond its share,
//! a destination's events are parked (reason [`BULKHEAD_FULL`], in order per aggregate,
//! like a diversion; it needs `circuit_breaker.on_open: park`) and the redriver sends
//! them once the destination is back under half its share. The other destinations keep
//! the rest of the budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use crate::state::BULKHEAD_FULL;

/// Bytes in flight per destination, against a limit.
pub struct Bulkhead {
    limit: usize,
    held: Mutex<HashMap<Arc<str>, usize>>,
}

impl Bulkhead {
    /// `None` when `share` leaves every destination the whole budget.
    pub fn new(budget: usize, share: f64) -> Option<Bulkhead> {
        (share < 1.0).then(|| Bulkhead {
            limit: ((budget as f64) * share).max(1.0) as usize,
            held: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, usize>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `bytes` for `destination` if that keeps it within its share. A destination
    /// holding nothing may always take one event, however large.
    pub fn try_hold(&self, destination: &Arc<str>, bytes: usize) -> bool {
        let mut held = self.lock();
        let h = held.entry(destination.clone()).or_default();
        if *h > 0 && *h + bytes > self.limit {
            return false;
        }
        *h += bytes;
        true
    }

    /// Gives back what a finished batch held.
    pub fn release(&self, holds: &[(Arc<str>, usize)]) {
        let mut held = self.lock();
        for (d, bytes) in holds {
            if let Some(h) = held.get_mut(d) {
                *h = h.saturating_sub(*bytes);
                if *h == 0 {
                    held.remove(d);
                }
            }
        }
    }

    /// Whether `destination` is back under half its share (the redriver's cue).
    pub fn has_room(&self, destination: &str) -> bool {
        self.lock()
            .get(destination)
            .is_none_or(|h| *h <= self.limit / 2)
    }
}

/// Adds `bytes` for `destination` to a batch's holds (a batch meets few destinations).
pub fn add_hold(holds: &mut Vec<(Arc<str>, usize)>, destination: &Arc<str>, bytes: usize) {
    match holds
        .iter_mut()
        .find(|(d, _)| Arc::ptr_eq(d, destination) || d == destination)
    {
        Some((_, b)) => *b += bytes,
        None => holds.push((destination.clone(), bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_takes_at_most_its_share_and_gets_it_back() {
        let b = Bulkhead::new(1000, 0.5).unwrap();
        let (a, c): (Arc<str>, Arc<str>) = ("a".into(), "c".into());
        assert!(b.try_hold(&a, 300));
        assert!(b.try_hold(&a, 200));
        assert!(!b.try_hold(&a, 1), "a is at its share");
        assert!(b.try_hold(&c, 400), "c has its own");
        assert!(!b.has_room("a"));
        b.release(&[(a.clone(), 300)]);
        assert!(b.has_room("a"));
        assert!(b.try_hold(&a, 300));
        b.release(&[(a.clone(), 500)]);
        assert!(
            b.try_hold(&a, 5000),
            "an empty destination takes one event of any size"
        );
        assert!(Bulkhead::new(1000, 1.0).is_none());
    }
}
