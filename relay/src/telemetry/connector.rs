//! The connector's own counters, read when Prometheus scrapes.
//!
//! A connector counts retries, requests and circuit transitions from zero, and each
//! session builds a new connector. [`ConnectorCollector`] reads the current connector at
//! scrape time and adds what earlier sessions' connectors counted, so the exported
//! counters are current at every scrape and never go backwards — no copying loop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use outbox_connectors::policy::CircuitState;
use outbox_connectors::Publisher;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGaugeVec, Opts};

use super::destination_labels::DestinationLabels;

const STATES: [CircuitState; 3] = [
    CircuitState::Closed,
    CircuitState::HalfOpen,
    CircuitState::Open,
];

/// Which connector is current; cloned into the supervisor.
#[derive(Clone, Default)]
pub struct ConnectorStats {
    inner: Arc<Mutex<Counted>>,
}

#[derive(Default)]
struct Counted {
    /// The running sessions' connectors: one, or one per shard (`source.shards`).
    current: Vec<Arc<dyn Publisher>>,
    /// Totals of the connectors of earlier sessions.
    retries: HashMap<Arc<str>, u64>,
    requests: u64,
    transitions: HashMap<(Arc<str>, usize), u64>,
    /// Offloaded events and bytes, per destination.
    offloaded: HashMap<Arc<str>, (u64, u64)>,
}

impl Counted {
    fn fold(&mut self, p: &Arc<dyn Publisher>) {
        for (destination, n) in p.retries_by_destination() {
            *self.retries.entry(destination).or_default() += n;
        }
        self.requests += p.requests();
        for (destination, events, bytes) in p.offloaded_by_destination() {
            let entry = self.offloaded.entry(destination).or_default();
            entry.0 += events;
            entry.1 += bytes;
        }
        for circuit in p.circuits() {
            for state in STATES {
                *self
                    .transitions
                    .entry((circuit.destination.clone(), state as usize))
                    .or_default() += circuit.transitions[state as usize];
            }
        }
    }
}

impl ConnectorStats {
    /// The session's connector from now on.
    pub fn attach(&self, publisher: Arc<dyn Publisher>) {
        self.lock().current.push(publisher);
    }

    /// Every session ended: what their connectors counted becomes part of the totals.
    pub fn detach(&self) {
        let mut c = self.lock();
        for p in std::mem::take(&mut c.current) {
            c.fold(&p);
        }
    }

    /// One session ended (the others, other shards', go on): what its connector counted
    /// becomes part of the totals, under the same lock so no scrape sees it in neither.
    pub fn detach_one(&self, publisher: &Arc<dyn Publisher>) {
        let mut c = self.lock();
        let before = c.current.len();
        c.current.retain(|p| !Arc::ptr_eq(p, publisher));
        if c.current.len() < before {
            c.fold(publisher);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counted> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Exports `sink_retries_total`, `sink_requests_total`, `circuit_state`,
/// `circuit_transitions_total`, `offloaded_events_total`, `offloaded_bytes_total` and the
/// client's gauges (`kafka_*`) from [`ConnectorStats`].
pub struct ConnectorCollector {
    pub stats: ConnectorStats,
    pub destinations: Arc<DestinationLabels>,
    pub retries: IntCounterVec,
    pub requests: IntCounter,
    pub circuit_state: IntGaugeVec,
    pub circuit_transitions: IntCounterVec,
    pub offloaded_events: IntCounterVec,
    pub offloaded_bytes: IntCounterVec,
}

/// Raises `counter` to `total` (counters only go up; `total` never goes down either).
fn raise(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

impl ConnectorCollector {
    fn refresh(&self) {
        let c = self.stats.lock();
        let mut retries = c.retries.clone();
        let mut requests = c.requests;
        let mut transitions = c.transitions.clone();
        let mut offloaded = c.offloaded.clone();
        // Destinations past the label cap share one series: states are merged (the worst
        // wins), counts added.
        let mut states: HashMap<&str, i64> = HashMap::new();
        let circuits: Vec<_> = c.current.iter().flat_map(|p| p.circuits()).collect();
        for p in &c.current {
            for (destination, events, bytes) in p.offloaded_by_destination() {
                let entry = offloaded.entry(destination).or_default();
                entry.0 += events;
                entry.1 += bytes;
            }
            for (destination, n) in p.retries_by_destination() {
                *retries.entry(destination).or_default() += n;
            }
            requests += p.requests();
        }
        for circuit in &circuits {
            let state = states
                .entry(self.destinations.label(&circuit.destination))
                .or_default();
            *state = (*state).max(circuit.state as i64);
            for s in STATES {
                *transitions
                    .entry((circuit.destination.clone(), s as usize))
                    .or_default() += circuit.transitions[s as usize];
            }
        }
        for (label, state) in states {
            self.circuit_state.with_label_values(&[label]).set(state);
        }
        let mut by_label: HashMap<&str, u64> = HashMap::new();
        for (destination, total) in &retries {
            *by_label
                .entry(self.destinations.label(destination))
                .or_default() += total;
        }
        for (label, total) in by_label {
            raise(&self.retries.with_label_values(&[label]), total);
        }
        raise(&self.requests, requests);
        let mut by_label: HashMap<&str, (u64, u64)> = HashMap::new();
        for (destination, (events, bytes)) in &offloaded {
            let entry = by_label
                .entry(self.destinations.label(destination))
                .or_default();
            entry.0 += events;
            entry.1 += bytes;
        }
        for (label, (events, bytes)) in by_label {
            raise(&self.offloaded_events.with_label_values(&[label]), events);
            raise(&self.offloaded_bytes.with_label_values(&[label]), bytes);
        }
        let mut by_label: HashMap<(&str, usize), u64> = HashMap::new();
        for ((destination, state), total) in &transitions {
            *by_label
                .entry((self.destinations.label(destination), *state))
                .or_default() += total;
        }
        for ((label, state), total) in by_label {
            raise(
                &self
                    .circuit_transitions
                    .with_label_values(&[label, STATES[state].as_str()]),
                total,
            );
        }
    }

    /// The current connector's client gauges (librdkafka statistics), as families built
    /// at each scrape: their label sets come and go with brokers and topics.
    fn client_families(&self) -> Vec<MetricFamily> {
        // With shards, the first shard's client stands for all: the families' label sets
        // have no shard, and the shards' clients talk to the same brokers.
        let gauges = match self.stats.lock().current.first() {
            Some(p) => p.client_gauges(),
            None => return Vec::new(),
        };
        let mut families: Vec<(&'static str, GaugeVec)> = Vec::new();
        for g in gauges {
            let names: Vec<&str> = g.labels.iter().map(|(k, _)| *k).collect();
            let values: Vec<&str> = g
                .labels
                .iter()
                .map(|(k, v)| {
                    if *k == "topic" {
                        self.destinations.label(v)
                    } else {
                        v.as_str()
                    }
                })
                .collect();
            let vec = match families.iter().find(|(n, _)| *n == g.name) {
                Some((_, vec)) => vec.clone(),
                None => {
                    let Ok(vec) = GaugeVec::new(Opts::new(g.name, g.help), &names) else {
                        continue;
                    };
                    families.push((g.name, vec.clone()));
                    vec
                }
            };
            if let Ok(gauge) = vec.get_metric_with_label_values(&values) {
                // Topics past the label cap share a series; the largest value stands.
                gauge.set(gauge.get().max(g.value));
            }
        }
        families
            .into_iter()
            .flat_map(|(_, v)| v.collect())
            .collect()
    }
}

impl Collector for ConnectorCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.retries.desc();
        d.extend(self.requests.desc());
        d.extend(self.circuit_state.desc());
        d.extend(self.circuit_transitions.desc());
        d.extend(self.offloaded_events.desc());
        d.extend(self.offloaded_bytes.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        let mut families = self.retries.collect();
        families.extend(self.requests.collect());
        families.extend(self.circuit_state.collect());
        families.extend(self.circuit_transitions.collect());
        families.extend(self.offloaded_events.collect());
        families.extend(self.offloaded_bytes.collect());
        families.extend(self.client_families());
        families
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use outbox_connectors::policy::CircuitReport;
    use outbox_connectors::{Delivery, OutboxEvent, PublishError};

    use super::*;
    use crate::telemetry::Metrics;

    /// A connector whose counters the test sets.
    #[derive(Default)]
    struct Counting {
        retries: u64,
        requests: u64,
        open: u64,
        offloaded: (u64, u64),
    }

    #[async_trait::async_trait]
    impl Publisher for Counting {
        fn kind(&self) -> &'static str {
            "counting"
        }
        fn validate_destination(&self, _d: &str) -> Result<(), String> {
            Ok(())
        }
        async fn accept(&self, _b: Vec<OutboxEvent>) -> Result<Delivery, PublishError> {
            unreachable!()
        }
        async fn flush(&self, _t: Duration) -> Result<(), PublishError> {
            Ok(())
        }
        async fn probe(&self, _t: Duration) -> Result<(), PublishError> {
            Ok(())
        }
        fn retries_by_destination(&self) -> Vec<(Arc<str>, u64)> {
            vec![(Arc::from("q"), self.retries)]
        }
        fn requests(&self) -> u64 {
            self.requests
        }
        fn offloaded_by_destination(&self) -> Vec<(Arc<str>, u64, u64)> {
            vec![(Arc::from("q"), self.offloaded.0, self.offloaded.1)]
        }
        fn circuits(&self) -> Vec<CircuitReport> {
            vec![CircuitReport {
                destination: Arc::from("q"),
                state: CircuitState::Open,
                transitions: [0, 0, self.open],
            }]
        }
    }

    /// The value of `series` (name and labels as printed) in a scrape.
    fn scrape(m: &Metrics, series: &str) -> f64 {
        use prometheus::Encoder;
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&m.registry.gather(), &mut text)
            .unwrap();
        let text = String::from_utf8(text).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} not in\n{text}"))
    }

    #[test]
    fn counts_at_scrape_time_and_across_sessions() {
        let m = Metrics::new();
        m.connector.attach(Arc::new(Counting {
            retries: 3,
            requests: 10,
            open: 1,
            offloaded: (2, 600_000),
        }));
        assert_eq!(
            scrape(&m, "outbox_relay_offloaded_events_total{destination=\"q\"}"),
            2.0
        );
        assert_eq!(
            scrape(&m, "outbox_relay_sink_retries_total{destination=\"q\"}"),
            3.0
        );
        assert_eq!(scrape(&m, "outbox_relay_sink_requests_total"), 10.0);
        assert_eq!(
            scrape(&m, "outbox_relay_circuit_state{destination=\"q\"}"),
            2.0
        );
        // The session ends; the next connector counts from zero again.
        m.connector.detach();
        m.connector.attach(Arc::new(Counting {
            retries: 2,
            requests: 1,
            open: 1,
            offloaded: (1, 300_000),
        }));
        assert_eq!(
            scrape(&m, "outbox_relay_offloaded_events_total{destination=\"q\"}"),
            3.0
        );
        assert_eq!(
            scrape(&m, "outbox_relay_offloaded_bytes_total{destination=\"q\"}"),
            900_000.0
        );
        assert_eq!(
            scrape(&m, "outbox_relay_sink_retries_total{destination=\"q\"}"),
            5.0
        );
        assert_eq!(scrape(&m, "outbox_relay_sink_requests_total"), 11.0);
        assert_eq!(
            scrape(
                &m,
                "outbox_relay_circuit_transitions_total{destination=\"q\",state=\"open\"}"
            ),
            2.0
        );
    }
}
