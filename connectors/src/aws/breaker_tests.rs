//! The circuit breaker inside the SNS/SQS publisher, against a scripted client on paused
//! time: a destination that keeps failing gets a probe per cool-down instead of a request
//! per retry, a healthy destination next to it is not held up, and when the failing one
//! answers again its circuit closes and every event arrives, in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use bytes::Bytes;

use super::client::{Client, EntryResult};
use super::message::Message;
use super::{AwsConfig, AwsPublisher};
use crate::policy::{BreakerConfig, CircuitState};
use crate::{ErrorClass, OutboxEvent, PublishError, Publisher};

const BAD: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/bad";
const GOOD: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/good";

/// Fails every request to `BAD` while `down`; records every entry it accepts.
#[derive(Clone, Default)]
struct Scripted {
    down: Arc<AtomicBool>,
    requests: Arc<Mutex<HashMap<String, usize>>>,
    stored: Arc<Mutex<Vec<(String, String)>>>,
}

#[async_trait::async_trait]
impl Client for Scripted {
    const NAME: &'static str = "sqs";

    fn new(_sdk: &SdkConfig) -> Self {
        Scripted::default()
    }

    fn validate_destination(_destination: &str, _fifo: bool) -> Result<(), String> {
        Ok(())
    }

    async fn send_batch(&self, destination: &str, messages: &[&Message]) -> Vec<EntryResult> {
        *self
            .requests
            .lock()
            .unwrap()
            .entry(destination.to_owned())
            .or_default() += 1;
        if destination == BAD && self.down.load(Ordering::SeqCst) {
            let e = PublishError::new(ErrorClass::Retryable, "server_error", "scripted 500");
            return vec![Err(e); messages.len()];
        }
        let mut stored = self.stored.lock().unwrap();
        for m in messages {
            stored.push((destination.to_owned(), m.body.clone()));
        }
        vec![Ok(()); messages.len()]
    }

    async fn probe(&self) -> Result<(), PublishError> {
        Ok(())
    }
}

fn event(destination: &str, aggregate: &str, n: usize) -> OutboxEvent {
    OutboxEvent {
        id: format!("{aggregate}-{n}").into(),
        aggregate_type: "Order".into(),
        aggregate_id: aggregate.into(),
        event_type: "T".into(),
        payload: Some(Bytes::from(format!("{aggregate}-{n}"))),
        headers: Vec::new(),
        destination: Arc::from(destination),
        partition: None,
        timestamp_ms: 0,
        commit_lsn: 1,
        commit_time_us: 0,
        seq: n as u64,
    }
}

fn batch(destination: &str, prefix: &str) -> Vec<OutboxEvent> {
    let mut events = Vec::new();
    for n in 0..3 {
        for a in 0..4 {
            events.push(event(destination, &format!("{prefix}{a}"), n));
        }
    }
    events
}

#[tokio::test(start_paused = true)]
async fn a_failing_destination_is_probed_per_cool_down_and_others_flow() {
    let client = Scripted::default();
    client.down.store(true, Ordering::SeqCst);
    let config = AwsConfig {
        region: Some("eu-west-1".into()),
        retry_initial_backoff: Duration::from_millis(100),
        retry_max_backoff: Duration::from_millis(200),
        circuit_breaker: BreakerConfig {
            failure_threshold: 3,
            open_initial: Duration::from_millis(1000),
            open_max: Duration::from_millis(4000),
            ..BreakerConfig::default()
        },
        ..AwsConfig::default()
    };
    let publisher = AwsPublisher::start(&config, client.clone(), None);
    let bad = publisher.accept(batch(BAD, "b")).await.unwrap();
    let good = publisher.accept(batch(GOOD, "g")).await.unwrap();
    let bad = tokio::spawn(bad);
    // The healthy destination is not held up by the failing one.
    let good = tokio::time::timeout(Duration::from_secs(1), good)
        .await
        .expect("the healthy destination's events are delivered at once");
    assert!(good.iter().all(|o| o.result.is_ok()));

    // 20 s of outage: without the breaker each of the 4 failing lanes retries every
    // 100–200 ms (> 100 requests); with it, 3 failures then one probe per cool-down
    // (1–2 s, 2–4 s, then 2–4 s capped at 4 s).
    tokio::time::sleep(Duration::from_secs(20)).await;
    let sent = client.requests.lock().unwrap()[BAD];
    assert!(
        (5..=15).contains(&sent),
        "{sent} requests to the failing destination in 20 s"
    );
    let circuit = publisher
        .circuits()
        .into_iter()
        .find(|c| &*c.destination == BAD)
        .unwrap();
    assert_ne!(circuit.state, CircuitState::Closed);
    assert!(
        circuit.transitions[CircuitState::Open as usize] >= 3,
        "{circuit:?}"
    );
    assert!(
        circuit.transitions[CircuitState::HalfOpen as usize] >= 2,
        "{circuit:?}"
    );

    // It answers again: the next probe closes the circuit and everything goes, in order.
    client.down.store(false, Ordering::SeqCst);
    let outcomes = tokio::time::timeout(Duration::from_secs(10), bad)
        .await
        .expect("delivered after recovery")
        .unwrap();
    assert!(outcomes.iter().all(|o| o.result.is_ok()));
    let circuit = publisher
        .circuits()
        .into_iter()
        .find(|c| &*c.destination == BAD)
        .unwrap();
    assert_eq!(circuit.state, CircuitState::Closed);
    assert_eq!(circuit.transitions[CircuitState::Closed as usize], 1);
    let stored = client.stored.lock().unwrap();
    for a in 0..4 {
        let agg = format!("b{a}");
        let bodies: Vec<&str> = stored
            .iter()
            .filter(|(d, b)| d == BAD && b.starts_with(&format!("{agg}-")))
            .map(|(_, b)| b.as_str())
            .collect();
        let expected: Vec<String> = (0..3).map(|n| format!("{agg}-{n}")).collect();
        assert_eq!(bodies, expected, "aggregate {agg} exactly once, in order");
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_breaker_every_retry_is_a_request() {
    let client = Scripted::default();
    client.down.store(true, Ordering::SeqCst);
    let config = AwsConfig {
        region: Some("eu-west-1".into()),
        retry_initial_backoff: Duration::from_millis(100),
        retry_max_backoff: Duration::from_millis(200),
        circuit_breaker: BreakerConfig {
            failure_threshold: 0,
            ..BreakerConfig::default()
        },
        ..AwsConfig::default()
    };
    let publisher = AwsPublisher::start(&config, client.clone(), None);
    let _bad = publisher.accept(batch(BAD, "b")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let sent = client.requests.lock().unwrap()[BAD];
    assert!(sent > 100, "{sent}");
    assert!(publisher.circuits().is_empty());
}
