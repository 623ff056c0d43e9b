//! Per-slot gauges with `source.shards` > 1.
//!
//! Some gauges describe one slot (its confirmed position, lag, WAL safety, heartbeat lag,
//! parked events, the age of its oldest unacknowledged event). With several shards each session would overwrite the others' value in
//! the one series, so the unlabelled series are replaced by one series per shard under the
//! same name with a constant `slot` label. Each shard's session gets a [`Metrics`] whose
//! fields are its own series, so the code that sets them needs no shard awareness.
//! Counters and process-wide gauges stay shared: they add up across shards.

use prometheus::core::{Collector, Desc};
use prometheus::{Gauge, IntGauge, IntGaugeVec, Opts};

use super::Metrics;

fn opts(desc: &Desc, slot: &str) -> Opts {
    Opts::new(desc.fq_name.clone(), desc.help.clone()).const_label("slot", slot)
}

fn desc(c: &impl Collector) -> Desc {
    c.desc()[0].clone()
}

fn int_gauge(base: &IntGauge, slot: &str) -> IntGauge {
    IntGauge::with_opts(opts(&desc(base), slot)).expect("valid gauge options")
}

fn gauge(base: &Gauge, slot: &str) -> Gauge {
    Gauge::with_opts(opts(&desc(base), slot)).expect("valid gauge options")
}

fn int_gauge_vec(base: &IntGaugeVec, slot: &str) -> IntGaugeVec {
    let d = desc(base);
    let labels: Vec<&str> = d.variable_labels.iter().map(String::as_str).collect();
    IntGaugeVec::new(opts(&d, slot), &labels).expect("valid gauge options")
}

impl Metrics {
    /// One [`Metrics`] per slot, in order. With one slot, this one unchanged (the same
    /// unlabelled series as without shards).
    pub fn for_slots(&self, slots: &[String]) -> Vec<Metrics> {
        if slots.len() <= 1 {
            return vec![self.clone(); slots.len().max(1)];
        }
        let r = &self.registry;
        slots
            .iter()
            .map(|slot| {
                let mut m = self.clone();
                m.replication_lag_bytes = int_gauge(&self.replication_lag_bytes, slot);
                m.confirmed_flush_lsn = int_gauge(&self.confirmed_flush_lsn, slot);
                m.received_lsn = int_gauge(&self.received_lsn, slot);
                m.slot_safe_wal_size = int_gauge(&self.slot_safe_wal_size, slot);
                m.slot_wal_status = int_gauge_vec(&self.slot_wal_status, slot);
                m.last_acked_commit_timestamp = gauge(&self.last_acked_commit_timestamp, slot);
                m.source_lag_seconds = gauge(&self.source_lag_seconds, slot);
                m.parked_events = int_gauge_vec(&self.parked_events, slot);
                m.parked_aggregates = int_gauge(&self.parked_aggregates, slot);
                m.parked_oldest_age = gauge(&self.parked_oldest_age, slot);
                m.oldest_inflight_age = gauge(&self.oldest_inflight_age, slot);
                let register = |c: Box<dyn Collector>| {
                    r.register(c)
                        .expect("per-slot series need Metrics::sharded, and slot names are unique")
                };
                register(Box::new(m.replication_lag_bytes.clone()));
                register(Box::new(m.confirmed_flush_lsn.clone()));
                register(Box::new(m.received_lsn.clone()));
                register(Box::new(m.slot_safe_wal_size.clone()));
                register(Box::new(m.slot_wal_status.clone()));
                register(Box::new(m.last_acked_commit_timestamp.clone()));
                register(Box::new(m.source_lag_seconds.clone()));
                register(Box::new(m.parked_events.clone()));
                register(Box::new(m.parked_aggregates.clone()));
                register(Box::new(m.parked_oldest_age.clone()));
                register(Box::new(m.oldest_inflight_age.clone()));
                m
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    fn scrape(m: &Metrics) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&m.registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn one_slot_keeps_the_unlabelled_series() {
        let m = Metrics::new();
        let shards = m.for_slots(&["s".to_string()]);
        shards[0].confirmed_flush_lsn.set(42);
        assert!(scrape(&m).contains("\noutbox_relay_confirmed_flush_lsn 42\n"));
    }

    #[test]
    fn each_shard_sets_its_own_slots_series() {
        let m = Metrics::sharded(100);
        let shards = m.for_slots(&["s_0".to_string(), "s_1".to_string()]);
        shards[0].confirmed_flush_lsn.set(10);
        shards[1].confirmed_flush_lsn.set(20);
        shards[1]
            .slot_wal_status
            .with_label_values(&["reserved"])
            .set(1);
        shards[0].source_lag_seconds.set(1.5);
        let text = scrape(&m);
        assert!(
            text.contains("outbox_relay_confirmed_flush_lsn{slot=\"s_0\"} 10\n"),
            "{text}"
        );
        assert!(
            text.contains("outbox_relay_confirmed_flush_lsn{slot=\"s_1\"} 20\n"),
            "{text}"
        );
        assert!(
            text.contains("outbox_relay_slot_wal_status{slot=\"s_1\",wal_status=\"reserved\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("outbox_relay_source_lag_seconds{slot=\"s_0\"} 1.5\n"),
            "{text}"
        );
        assert!(
            !text.contains("\noutbox_relay_confirmed_flush_lsn "),
            "{text}"
        );
        // Counters stay shared.
        shards[0].transactions.inc();
        shards[1].transactions.inc();
        assert!(scrape(&m).contains("\noutbox_relay_transactions_total 2\n"));
    }
}
