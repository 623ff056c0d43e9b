//! How many tokio worker threads the relay runs.

/// Two workers per process by default: the reader and the acker of one replication
/// stream run in parallel, and more would buy nothing and cost memory. With
/// `source.shards` each shard is a stream of its own, so one more worker per further
/// shard, up to the CPUs there are: on a 2-core sidecar this stays 2, on a big machine
/// the shards' readers no longer share two threads (docs/scaling.md measured the relay
/// at about 6 CPU-µs per event, so two threads would cap it near 330k events/s).
pub fn worker_threads(shards: u32, cpus: usize) -> usize {
    let wanted = 1 + shards.max(1) as usize;
    wanted.min(cpus).max(2)
}

#[cfg(test)]
mod tests {
    use super::worker_threads;

    #[test]
    fn two_workers_unless_shards_and_cpus_allow_more() {
        assert_eq!(worker_threads(1, 2), 2);
        assert_eq!(worker_threads(1, 32), 2);
        assert_eq!(worker_threads(4, 2), 2);
        assert_eq!(worker_threads(4, 1), 2);
        assert_eq!(worker_threads(4, 8), 5);
        assert_eq!(worker_threads(16, 8), 8);
        assert_eq!(worker_threads(0, 8), 2);
    }
}
