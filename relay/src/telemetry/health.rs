//! Liveness and readiness state shared with the HTTP server.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct Health {
    /// Sessions whose replication stream is open: one per shard (`source.shards`).
    replicating: AtomicUsize,
    /// Sessions that must be replicating for readiness; 0 is read as 1 (the default).
    shards: AtomicUsize,
    sink_reachable: AtomicBool,
    /// A standby replica (`ha.enabled`) waiting for leadership.
    standby: AtomicBool,
}

impl Health {
    /// How many sessions (shards) run side by side; all must replicate to be ready.
    pub fn set_shards(&self, n: usize) {
        self.shards.store(n, Ordering::Relaxed);
    }

    /// A session's stream opened (`true`) or closed (`false`); each session calls it in
    /// pairs, so the count is the number of open streams.
    pub fn set_replicating(&self, v: bool) {
        if v {
            self.replicating.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self
                .replicating
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Every shard's stream is open.
    pub fn all_replicating(&self) -> bool {
        self.replicating.load(Ordering::Relaxed) >= self.shards.load(Ordering::Relaxed).max(1)
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
            self.all_replicating(),
            self.sink_reachable.load(Ordering::Relaxed),
        ) {
            (true, true) => (true, "ready"),
            (false, _) => (false, "not replicating"),
            (true, false) => (false, "sink unreachable"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_shard_replicates() {
        let h = Health::default();
        h.set_shards(3);
        h.set_sink_reachable(true);
        h.set_replicating(true);
        h.set_replicating(true);
        assert_eq!(h.ready(), (false, "not replicating"));
        h.set_replicating(true);
        assert_eq!(h.ready(), (true, "ready"));
        h.set_replicating(false);
        assert_eq!(h.ready(), (false, "not replicating"));
    }
}
