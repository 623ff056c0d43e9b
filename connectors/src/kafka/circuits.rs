//! The Kafka connector's circuit breakers: the shared [`Breaker`] policy, one per topic.
//!
//! librdkafka retries on its own (`message.timeout.ms` = 0: until delivered), so a broker
//! outage never surfaces as a failed delivery; it surfaces as the client's
//! `AllBrokersDown` error, reported through the client context at each failed reconnect.
//! Those count as a failure of every topic's circuit, a delivery counts as a success of its
//! topic's circuit, and an open circuit whose cool-down has passed is probed with a
//! metadata request for its topic (cheap, and it does not put a record in the queue).
//!
//! With `on_open: stall` the state is for operators (metrics, alert, log lines): records
//! wait in librdkafka's queue and go out when the broker returns. With `on_open: park` the
//! relay reads the state and parks what is bound for an open topic (relay/pipeline).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::policy::{Breaker, BreakerSettings, CircuitReport, CircuitState};

/// Every topic's breaker, shared by the publisher, its client context and its prober.
pub struct KafkaCircuits {
    settings: Option<BreakerSettings>,
    topics: Mutex<HashMap<Arc<str>, Circuit>>,
}

struct Circuit {
    breaker: Breaker,
    report: CircuitReport,
}

impl KafkaCircuits {
    /// `None` settings: the breaker is off and nothing is tracked.
    pub fn new(settings: Option<BreakerSettings>) -> Self {
        KafkaCircuits {
            settings,
            topics: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Circuit>> {
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A topic the producer writes to; its circuit starts closed.
    pub fn track(&self, topic: &Arc<str>) {
        let Some(settings) = self.settings else {
            return;
        };
        let mut topics = self.lock();
        if !topics.contains_key(topic) {
            topics.insert(
                topic.clone(),
                Circuit {
                    breaker: Breaker::new(settings),
                    report: CircuitReport {
                        destination: topic.clone(),
                        state: CircuitState::Closed,
                        transitions: [0; 3],
                    },
                },
            );
        }
    }

    /// The client lost every broker: a failure for every topic.
    pub fn on_brokers_down(&self) {
        let now = Instant::now();
        for (topic, c) in self.lock().iter_mut() {
            if let Some(state) = c.breaker.on_failure(now, now) {
                transition(topic, c, state);
            }
        }
    }

    /// A record of `topic`, handed to librdkafka at `accepted_at`, was delivered.
    pub fn on_delivered(&self, topic: &Arc<str>, accepted_at: Instant) {
        if let Some(c) = self.lock().get_mut(topic) {
            if let Some(state) = c.breaker.on_success(accepted_at) {
                transition(topic, c, state);
            }
        }
    }

    /// Topics whose open circuit may be probed now; each turns half-open.
    pub fn due_probes(&self) -> Vec<Arc<str>> {
        let now = Instant::now();
        let mut due = Vec::new();
        for (topic, c) in self.lock().iter_mut() {
            if c.breaker.reopens_at().is_some_and(|t| t <= now) {
                let (allowed, state) = c.breaker.try_acquire(now);
                if let Some(state) = state {
                    transition(topic, c, state);
                }
                if allowed {
                    due.push(topic.clone());
                }
            }
        }
        due
    }

    /// The outcome of a probe of `topic` sent at `sent_at`.
    pub fn probed(&self, topic: &Arc<str>, ok: bool, sent_at: Instant) {
        if let Some(c) = self.lock().get_mut(topic) {
            let state = if ok {
                c.breaker.on_success(sent_at)
            } else {
                c.breaker.on_failure(sent_at, Instant::now())
            };
            if let Some(state) = state {
                transition(topic, c, state);
            }
        }
    }

    pub fn reports(&self) -> Vec<CircuitReport> {
        self.lock().values().map(|c| c.report.clone()).collect()
    }
}

fn transition(topic: &Arc<str>, c: &mut Circuit, state: CircuitState) {
    match state {
        CircuitState::Open => {
            tracing::warn!(destination = %topic, "circuit open: the Kafka brokers are unreachable; probing the topic after each cool-down")
        }
        CircuitState::HalfOpen => {
            tracing::info!(destination = %topic, "circuit half-open: probing the topic")
        }
        CircuitState::Closed => {
            tracing::info!(destination = %topic, "circuit closed: the topic answers again")
        }
    }
    c.report.state = state;
    c.report.transitions[state as usize] += 1;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn brokers_down_opens_every_topic_a_probe_half_opens_and_a_success_closes() {
        let circuits = KafkaCircuits::new(Some(BreakerSettings {
            failure_threshold: 3,
            open_initial: Duration::from_secs(1),
            open_max: Duration::from_secs(4),
        }));
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        circuits.track(&a);
        circuits.track(&b);
        for _ in 0..2 {
            circuits.on_brokers_down();
        }
        circuits.on_delivered(&a, Instant::now());
        circuits.on_brokers_down();
        let state = |t: &str| {
            circuits
                .reports()
                .into_iter()
                .find(|r| &*r.destination == t)
                .unwrap()
                .state
        };
        assert_eq!(
            state("a"),
            CircuitState::Closed,
            "a delivery reset a's count"
        );
        assert_eq!(state("b"), CircuitState::Open);
        assert!(circuits.due_probes().is_empty(), "cool-down not over");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(circuits.due_probes(), vec![b.clone()]);
        assert_eq!(state("b"), CircuitState::HalfOpen);
        assert!(circuits.due_probes().is_empty(), "one probe at a time");
        circuits.probed(&b, true, Instant::now());
        assert_eq!(state("b"), CircuitState::Closed);
        let report = circuits
            .reports()
            .into_iter()
            .find(|r| &*r.destination == "b")
            .unwrap();
        assert_eq!(report.transitions, [1, 1, 1]);
    }

    #[test]
    fn nothing_is_tracked_with_the_breaker_off() {
        let circuits = KafkaCircuits::new(None);
        circuits.track(&Arc::from("a"));
        circuits.on_brokers_down();
        assert!(circuits.reports().is_empty());
    }
}
