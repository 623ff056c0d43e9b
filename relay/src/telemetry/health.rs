//! Liveness and readiness state shared with the HTTP server.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Health {
    replicating: AtomicBool,
    sink_reachable: AtomicBool,
    /// A standby replica (`ha.enabled`) waiting for leadership.
    standby: AtomicBool,
}

impl Health {
    pub fn set_replicating(&self, v: bool) {
        self.replicating.store(v, Ordering::Relaxed);
    }

    pub fn set_sink_reachable(&self, v: bool) {
        self.sink_reachable.store(v, Ordering::Relaxed);
    }

    pub fn set_standby(&self, v: bool) {
        self.standby.store(v, Ordering::Relaxed);
    }

    /// Ready: the replication stream is open and the last sink probe succeeded. A standby
    /// is ready too: waiting is its job, and an unready standby would stall rollouts and
    /// count against a PodDisruptionBudget.
    pub fn ready(&self) -> (bool, &'static str) {
        if self.standby.load(Ordering::Relaxed) {
            return (true, "standby");
        }
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
