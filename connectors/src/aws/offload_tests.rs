//! Offload to S3 inside the SNS/SQS publisher, against a scripted client and a scripted
//! object store on paused time: no pointer is sent before its object is confirmed, a
//! failing store is retried and opens the destination's circuit like a failing send, an
//! offloaded event keeps its place in its aggregate, and a publish retried after its
//! object was stored does not put the object again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use bytes::Bytes;

use super::client::{Client, EntryResult};
use super::config::{LargePayloadMode, LargePayloads};
use super::message::Message;
use super::offload::ObjectStore;
use super::{AwsConfig, AwsPublisher};
use crate::policy::{BreakerConfig, CircuitState};
use crate::{ErrorClass, OutboxEvent, PublishError, Publisher};

const QUEUE: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo";

/// What happened, in order: `put <key>` and `send <body or pointer key>`.
type Log = Arc<Mutex<Vec<String>>>;

#[derive(Clone, Default)]
struct Queue {
    log: Log,
    /// The next send fails retryably (once).
    fail_next: Arc<AtomicBool>,
    /// Every send is refused as too long (Permanent, about the message).
    too_large: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl Client for Queue {
    const NAME: &'static str = "sqs";

    fn new(_sdk: &SdkConfig) -> Self {
        Queue::default()
    }

    fn validate_destination(_destination: &str, _fifo: bool) -> Result<(), String> {
        Ok(())
    }

    async fn send_batch(&self, _destination: &str, messages: &[&Message]) -> Vec<EntryResult> {
        if self.fail_next.swap(false, Ordering::SeqCst) {
            let e = PublishError::new(ErrorClass::Retryable, "throttled", "scripted throttling");
            return vec![Err(e); messages.len()];
        }
        if self.too_large.load(Ordering::SeqCst) {
            let e = PublishError::new(ErrorClass::Permanent, "message_too_large", "MessageTooLong");
            return vec![Err(e); messages.len()];
        }
        let mut log = self.log.lock().unwrap();
        for m in messages {
            match &m.offload {
                Some(o) => {
                    assert_eq!(
                        m.number_attributes(),
                        vec![("ExtendedPayloadSize", o.body.len().to_string())]
                    );
                    log.push(format!("send pointer {}", o.key))
                }
                None => log.push(format!("send {}", m.body)),
            }
        }
        vec![Ok(()); messages.len()]
    }

    async fn probe(&self) -> Result<(), PublishError> {
        Ok(())
    }
}

#[derive(Default)]
struct Store {
    log: Log,
    down: AtomicBool,
    /// Every put fails as a missing bucket does (Permanent, may be transient).
    no_bucket: AtomicBool,
    objects: Mutex<Vec<(String, Bytes)>>,
}

#[async_trait::async_trait]
impl ObjectStore for Store {
    async fn put(&self, bucket: &str, key: &str, body: Bytes) -> Result<(), PublishError> {
        assert_eq!(bucket, "outbox-bodies");
        if self.no_bucket.load(Ordering::SeqCst) {
            return Err(PublishError::new(
                ErrorClass::Permanent,
                "destination_not_found",
                format!("S3 PutObject s3://{bucket}/{key}: NoSuchBucket (HTTP 404)"),
            ));
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(PublishError::new(
                ErrorClass::Retryable,
                "dispatch",
                format!("S3 PutObject s3://{bucket}/{key}: connection refused"),
            ));
        }
        self.log.lock().unwrap().push(format!("put {key}"));
        self.objects.lock().unwrap().push((key.to_string(), body));
        Ok(())
    }
}

fn event(aggregate: &str, n: usize, size: usize) -> OutboxEvent {
    let mut payload = format!("{aggregate}-{n}:").into_bytes();
    payload.resize(size.max(payload.len()), b'x');
    OutboxEvent {
        id: format!("{aggregate}-{n}").into(),
        aggregate_type: "Order".into(),
        aggregate_id: aggregate.into(),
        event_type: "T".into(),
        payload: Some(Bytes::from(payload)),
        headers: Vec::new(),
        destination: Arc::from(QUEUE),
        partition: None,
        timestamp_ms: 0,
        commit_lsn: 1,
        commit_time_us: 0,
        seq: n as u64,
    }
}

fn config() -> AwsConfig {
    AwsConfig {
        region: Some("eu-west-1".into()),
        fifo: true,
        retry_initial_backoff: Duration::from_millis(100),
        retry_max_backoff: Duration::from_millis(200),
        circuit_breaker: BreakerConfig {
            failure_threshold: 3,
            open_initial: Duration::from_millis(1000),
            open_max: Duration::from_millis(2000),
            ..BreakerConfig::default()
        },
        large_payloads: LargePayloads {
            mode: LargePayloadMode::S3,
            bucket: Some("outbox-bodies".into()),
            prefix: "relay/".into(),
            ..LargePayloads::default()
        },
        ..AwsConfig::default()
    }
}

fn start(store: &Arc<Store>, queue: &Queue) -> AwsPublisher<Queue> {
    let store: Arc<dyn ObjectStore> = store.clone();
    AwsPublisher::start(&config(), queue.clone(), Some(store))
}

#[tokio::test(start_paused = true)]
async fn s3_down_publishes_nothing_without_its_object_and_opens_the_circuit() {
    let queue = Queue::default();
    let store = Arc::new(Store {
        log: queue.log.clone(),
        ..Store::default()
    });
    store.down.store(true, Ordering::SeqCst);
    let publisher = start(&store, &queue);
    // a: small, large, small; b: small only.
    let batch = vec![
        event("a", 0, 10),
        event("a", 1, 300_000),
        event("a", 2, 10),
        event("b", 0, 10),
    ];
    let delivery = tokio::spawn(publisher.accept(batch).await.unwrap());
    tokio::time::sleep(Duration::from_secs(20)).await;
    {
        let log = queue.log.lock().unwrap();
        // a-0 and b-0 went; a-1 has no object, so neither it nor a-2 (behind it) went.
        assert_eq!(*log, ["send a-0:xxxxxx", "send b-0:xxxxxx"], "{log:?}");
    }
    let circuit = publisher.circuits().pop().expect("the queue's circuit");
    assert_ne!(circuit.state, CircuitState::Closed, "{circuit:?}");
    assert!(circuit.transitions[CircuitState::Open as usize] >= 1);
    assert!(publisher.retries() >= 3);
    assert_eq!(
        publisher.requests(),
        1,
        "attempts whose object failed send nothing"
    );
    assert!(publisher.offloaded_by_destination().is_empty());

    store.down.store(false, Ordering::SeqCst);
    let outcomes = tokio::time::timeout(Duration::from_secs(10), delivery)
        .await
        .expect("delivered once S3 answers")
        .unwrap();
    assert!(outcomes.iter().all(|o| o.result.is_ok()));
    let log = queue.log.lock().unwrap();
    assert_eq!(
        log[2..],
        ["put relay/a-1", "send pointer relay/a-1", "send a-2:xxxxxx"],
        "the object before its pointer, the pointer before the aggregate's next event"
    );
    assert_eq!(publisher.requests(), 3);
    let objects = store.objects.lock().unwrap();
    assert_eq!(objects.len(), 1);
    let mut want = b"a-1:".to_vec();
    want.resize(300_000, b'x');
    assert_eq!(objects[0].1, Bytes::from(want), "the exact body");
    assert_eq!(
        publisher.offloaded_by_destination(),
        vec![(Arc::from(QUEUE), 1, 300_000)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_retried_publish_does_not_put_the_object_again() {
    let queue = Queue::default();
    let store = Arc::new(Store {
        log: queue.log.clone(),
        ..Store::default()
    });
    let publisher = start(&store, &queue);
    queue.fail_next.store(true, Ordering::SeqCst);
    let outcomes = publisher
        .accept(vec![event("a", 0, 400_000), event("a", 1, 10)])
        .await
        .unwrap()
        .await;
    assert!(outcomes.iter().all(|o| o.result.is_ok()));
    assert_eq!(
        *queue.log.lock().unwrap(),
        ["put relay/a-0", "send pointer relay/a-0", "send a-1:xxxxxx"]
    );
    assert_eq!(publisher.retries(), 1);
}

/// A permanent failure of an aggregate's head is that event's outcome; the later events
/// of the aggregate the publisher holds are never sent after it: after a failure of the
/// destination or bucket (here: the bucket is missing beyond the window) they fail with
/// it, after a failure of the message itself (too large for the service) they fail
/// Retryable, for the relay to replay them behind the rejection's outcome. Other
/// aggregates are not affected.
#[tokio::test(start_paused = true)]
async fn after_a_permanent_failure_the_aggregates_later_events_are_not_sent() {
    let queue = Queue::default();
    let store = Arc::new(Store {
        log: queue.log.clone(),
        ..Store::default()
    });
    store.no_bucket.store(true, Ordering::SeqCst);
    let config = AwsConfig {
        transient_error_window: Duration::ZERO,
        ..config()
    };
    let store_dyn: Arc<dyn ObjectStore> = store.clone();
    let publisher = AwsPublisher::start(&config, queue.clone(), Some(store_dyn));
    let outcomes = publisher
        .accept(vec![
            event("a", 0, 300_000),
            event("a", 1, 10),
            event("b", 0, 10),
        ])
        .await
        .unwrap()
        .await;
    let results: Vec<(&str, Option<&str>)> = outcomes
        .iter()
        .map(|o| (o.event.id.as_str(), o.result.as_ref().err().map(|e| e.kind)))
        .collect();
    assert_eq!(
        results,
        [
            ("a-0", Some("destination_not_found")),
            ("a-1", Some("destination_not_found")),
            ("b-0", None)
        ]
    );
    assert_eq!(
        outcomes[0].result.as_ref().unwrap_err().class,
        ErrorClass::Permanent
    );
    let behind = outcomes[1].result.as_ref().unwrap_err();
    assert_eq!(behind.class, ErrorClass::Permanent);
    assert!(
        behind.message.contains("event a-0 of its aggregate"),
        "{behind}"
    );
    assert_eq!(*queue.log.lock().unwrap(), ["send b-0:xxxxxx"]);
    assert_eq!(publisher.pending(), 0);

    // The service refuses the message itself: the later event is handed back Retryable.
    store.no_bucket.store(false, Ordering::SeqCst);
    queue.too_large.store(true, Ordering::SeqCst);
    let outcomes = publisher
        .accept(vec![event("c", 0, 300_000), event("c", 1, 10)])
        .await
        .unwrap()
        .await;
    let errors: Vec<(ErrorClass, &str)> = outcomes
        .iter()
        .map(|o| {
            let e = o.result.as_ref().unwrap_err();
            (e.class, e.kind)
        })
        .collect();
    assert_eq!(
        errors,
        [
            (ErrorClass::Permanent, "message_too_large"),
            (ErrorClass::Retryable, "behind_rejected")
        ]
    );
    let log = queue.log.lock().unwrap();
    assert_eq!(log[1..], ["put relay/c-0"], "c-1 is not sent");
}
