//! How many tokio worker threads the relay runs.

/// One worker per replication stream, up to the CPUs there are. A stream's reader and
/// acker on one thread is the cheapest shape measured (docs/benchmarks.md, "Fewer
/// wake-ups"): an event is allocated and freed on the same thread, handing a batch to
/// the acker wakes no other thread, and the drain used less CPU per event (Kafka 5.1
/// against 5.4 CPU-µs) and less memory (Kafka drain peak RSS 48–50 MiB against 54–65:
/// fewer allocator arenas) than with two workers. One thread still takes a stream at
/// well over what one walsender sends (about 3 CPU-µs per event: over 300k events/s).
/// With `source.shards` each shard is a stream of its own, so one worker per shard.
pub fn worker_threads(shards: u32, cpus: usize) -> usize {
    (shards.max(1) as usize).min(cpus).max(1)
}

#[cfg(test)]
mod tests {
    use super::worker_threads;

    #[test]
    fn one_worker_per_shard_up_to_the_cpus() {
        assert_eq!(worker_threads(1, 2), 1);
        assert_eq!(worker_threads(1, 32), 1);
        assert_eq!(worker_threads(0, 8), 1);
        assert_eq!(worker_threads(4, 2), 2);
        assert_eq!(worker_threads(4, 1), 1);
        assert_eq!(worker_threads(4, 8), 4);
        assert_eq!(worker_threads(16, 8), 8);
    }
}
