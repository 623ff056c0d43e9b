//! Liveness and readiness state shared with the HTTP server.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Health {
    replicating: AtomicBool,
    sink_reachable: AtomicBool,
}

impl Health {
    pub fn set_replicating(&self, v: bool) {
        self.replicating.store(v, Ordering::Relaxed);
    }

    pub fn set_sink_reachable(&self, v: bool) {
        self.sink_reachable.store(v, Ordering::Relaxed);
    }

    /// Ready: the replication stream is open and the last sink probe succeeded.
    pub fn ready(&self) -> (bool, &'static str) {
        match (
            self.replicating.load(Ordering::Relaxed),
            self.sink_reachable.load(Ordering::Relaxed),
        ) {
            (true, true) => (true, "ready"),
            (false, _) => (false, "not replicating"),
            (true, false) => (false, "sink unreachable"),
        }
    }
}
