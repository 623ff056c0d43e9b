//! The `destination` label, capped (`telemetry.max_destination_labels`).
//!
//! With the default route template every aggregate type is a topic, and an outbox that
//! uses, say, a tenant in the aggregate type would mint a series per tenant in every
//! per-destination metric, without bound. The first destinations seen keep their own
//! label; later ones are counted together under [`OTHER`], with one warning naming the
//! cap. 0 puts every destination under [`OTHER`] (the label opted out).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use tracing::warn;

/// The label value of destinations past the cap.
pub const OTHER: &str = "_other";

pub struct DestinationLabels {
    cap: usize,
    seen: RwLock<HashSet<String>>,
    warned: AtomicBool,
}

impl DestinationLabels {
    pub fn new(cap: usize) -> Self {
        DestinationLabels {
            cap,
            seen: RwLock::new(HashSet::new()),
            warned: AtomicBool::new(false),
        }
    }

    /// The label value for `destination`: itself while under the cap, else [`OTHER`].
    pub fn label<'a>(&self, destination: &'a str) -> &'a str {
        if self
            .seen
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(destination)
        {
            return destination;
        }
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        if seen.contains(destination) {
            return destination;
        }
        if seen.len() < self.cap {
            seen.insert(destination.to_string());
            return destination;
        }
        if self.cap > 0 && !self.warned.swap(true, Ordering::Relaxed) {
            warn!(
                cap = self.cap,
                destination,
                "more destinations than telemetry.max_destination_labels: this one and later ones are counted under destination=\"{OTHER}\""
            );
        }
        OTHER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_past_the_cap_share_one_label() {
        let labels = DestinationLabels::new(2);
        assert_eq!(labels.label("a"), "a");
        assert_eq!(labels.label("b"), "b");
        assert_eq!(labels.label("c"), OTHER);
        assert_eq!(labels.label("a"), "a");
        assert_eq!(labels.label("d"), OTHER);
        assert_eq!(labels.label("b"), "b");
    }

    #[test]
    fn a_cap_of_zero_opts_out_of_the_label() {
        let labels = DestinationLabels::new(0);
        assert_eq!(labels.label("a"), OTHER);
        assert_eq!(labels.label("b"), OTHER);
    }
}
