//! SNS / SQS connectors against the moto emulator (`deploy/local/aws.sh start`), with a
//! fault-injecting HTTP proxy in front of it for the retry tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use outbox_connectors::aws::{fifo_id, AwsConfig, SnsPublisher, SqsPublisher};
use outbox_connectors::{ErrorClass, OutboxEvent, Publisher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn endpoint() -> String {
    std::env::var("OUTBOX_RELAY_AWS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:19324".into())
}

fn upstream_addr() -> String {
    endpoint()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// Test credentials for the emulator, and a check that it is running.
async fn setup() -> aws_config::SdkConfig {
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
    if TcpStream::connect(upstream_addr()).await.is_err() {
        panic!(
            "the SNS/SQS emulator is not running at {}: start it with deploy/local/aws.sh start",
            endpoint()
        );
    }
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

fn config(endpoint: String, fifo: bool) -> AwsConfig {
    AwsConfig {
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint),
        fifo,
        max_concurrency: 4,
        retry_initial_backoff: Duration::from_millis(5),
        retry_max_backoff: Duration::from_millis(50),
        request_timeout: Duration::from_millis(10_000),
        ..AwsConfig::default()
    }
}

async fn create_queue(sdk: &aws_config::SdkConfig, name: &str) -> (String, String) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut req = sqs.create_queue().queue_name(name);
    if name.ends_with(".fifo") {
        req = req.attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
    }
    let url = req.send().await.unwrap().queue_url.unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    (url, arn)
}

/// A topic subscribed by a queue with raw message delivery; returns (topic ARN, queue URL).
async fn topic_to_queue(sdk: &aws_config::SdkConfig, fifo: bool) -> (String, String) {
    let suffix = if fifo { ".fifo" } else { "" };
    let (queue_url, queue_arn) = create_queue(sdk, &format!("{}{suffix}", unique("q"))).await;
    let sns = aws_sdk_sns::Client::new(sdk);
    let mut req = sns.create_topic().name(format!("{}{suffix}", unique("t")));
    if fifo {
        req = req.attributes("FifoTopic", "true");
    }
    let topic_arn = req.send().await.unwrap().topic_arn.unwrap();
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();
    (topic_arn, queue_url)
}

fn event(run: &str, destination: &str, aggregate: &str, n: usize) -> OutboxEvent {
    OutboxEvent {
        id: format!("{run}-{aggregate}-{n}").into(),
        aggregate_type: "Order".into(),
        aggregate_id: aggregate.into(),
        event_type: "OrderPaid".into(),
        payload: Some(Bytes::from(format!(
            "{{\"aggregate\":\"{aggregate}\",\"n\":{n}}}"
        ))),
        headers: vec![
            (
                "traceparent".into(),
                Bytes::from_static(TRACEPARENT.as_bytes()),
            ),
            ("tenant".into(), Bytes::from_static(b"acme")),
        ],
        destination: Arc::from(destination),
        partition: None,
        timestamp_ms: 0,
        commit_lsn: n as u64,
        commit_time_us: 0,
        seq: n as u64,
    }
}

/// `per_aggregate` events for each of `aggregates`, interleaved as a commit stream would be.
fn workload(
    run: &str,
    destination: &str,
    aggregates: usize,
    per_aggregate: usize,
) -> Vec<OutboxEvent> {
    let mut events = Vec::new();
    for n in 0..per_aggregate {
        for a in 0..aggregates {
            events.push(event(run, destination, &format!("agg-{a}"), n));
        }
    }
    events
}

/// Accepts `events` in batches of `batch` (all accepted before any Delivery is awaited)
/// and asserts every outcome is Ok and in order.
async fn publish_all(publisher: &dyn Publisher, events: Vec<OutboxEvent>, batch: usize) {
    let mut deliveries = Vec::new();
    let mut expected = Vec::new();
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let chunk: Vec<OutboxEvent> = events.by_ref().take(batch).collect();
        expected.push(chunk.iter().map(|e| e.id.clone()).collect::<Vec<_>>());
        deliveries.push(publisher.accept(chunk).await.expect("accept"));
    }
    for (delivery, ids) in deliveries.into_iter().zip(expected) {
        let outcomes = tokio::time::timeout(Duration::from_secs(60), delivery)
            .await
            .expect("delivery within 60 s");
        let got: Vec<String> = outcomes.iter().map(|o| o.event.id.to_string()).collect();
        assert_eq!(got, ids, "outcomes in accept order");
        for o in outcomes {
            assert!(o.result.is_ok(), "{}: {:?}", o.event.id, o.result);
        }
    }
}

#[derive(Debug)]
struct Received {
    body: serde_json::Value,
    attributes: BTreeMap<String, String>,
    group_id: Option<String>,
}

/// Receives (and deletes) until `count` messages arrived, then checks no more come.
async fn receive(sdk: &aws_config::SdkConfig, queue_url: &str, count: usize) -> Vec<Received> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut extra_checks = 0;
    loop {
        let resp = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .visibility_timeout(300)
            .wait_time_seconds(if out.len() >= count { 1 } else { 0 })
            .send()
            .await
            .unwrap();
        let messages = resp.messages.unwrap_or_default();
        if messages.is_empty() {
            if out.len() >= count {
                extra_checks += 1;
                if extra_checks == 2 {
                    return out;
                }
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} messages arrived",
                out.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        for m in messages {
            let attributes = m
                .message_attributes
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.string_value.unwrap_or_default()))
                .collect();
            let group_id = m.attributes.as_ref().and_then(|a| {
                a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                    .cloned()
            });
            out.push(Received {
                body: serde_json::from_str(m.body.as_deref().unwrap()).unwrap(),
                attributes,
                group_id,
            });
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// Exactly the expected ids, each aggregate's events in order 0, 1, 2...
fn assert_exact_and_ordered(
    received: &[Received],
    run: &str,
    aggregates: usize,
    per_aggregate: usize,
) {
    let ids: Vec<String> = received
        .iter()
        .map(|r| r.attributes.get("id").cloned().expect("id attribute"))
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicates: {ids:?}");
    assert_eq!(ids.len(), aggregates * per_aggregate, "{ids:?}");
    let mut next: HashMap<String, u64> = HashMap::new();
    for r in received {
        let aggregate = r.body["aggregate"].as_str().unwrap().to_string();
        let n = r.body["n"].as_u64().unwrap();
        let want = next.entry(aggregate.clone()).or_insert(0);
        assert_eq!(n, *want, "order of {aggregate}");
        *want += 1;
        assert_eq!(r.attributes["id"], format!("{run}-{aggregate}-{n}"));
        assert_eq!(r.attributes["aggregateid"], aggregate);
    }
}

#[tokio::test]
async fn sns_fifo_topic_to_sqs_fifo_queue_exact_set_order_attributes_and_dedup() {
    let sdk = setup().await;
    let (topic, queue) = topic_to_queue(&sdk, true).await;
    let publisher = SnsPublisher::new(&config(endpoint(), true)).await.unwrap();
    assert_eq!(publisher.kind(), "sns");
    publisher.validate_destination(&topic).unwrap();
    assert!(publisher.validate_destination(&queue).is_err());
    publisher.probe(Duration::from_secs(5)).await.unwrap();
    let run = unique("r");
    let events = workload(&run, &topic, 5, 12);
    let first = events[0].clone();
    publish_all(&publisher, events, 10).await;
    publisher.flush(Duration::from_secs(5)).await.unwrap();
    // The same event id again is deduplicated (re-published before receiving: moto
    // deduplicates only against messages still in the queue, AWS for 5 minutes).
    publish_all(&publisher, vec![first], 1).await;
    let received = receive(&sdk, &queue, 60).await;
    assert_exact_and_ordered(&received, &run, 5, 12);
    for r in &received {
        assert_eq!(r.attributes["type"], "OrderPaid");
        assert_eq!(r.attributes["aggregatetype"], "Order");
        assert_eq!(r.attributes["traceparent"], TRACEPARENT);
        assert_eq!(r.attributes["tenant"], "acme");
        assert_eq!(
            r.group_id.as_deref(),
            Some(r.attributes["aggregateid"].as_str())
        );
    }
    assert_eq!(publisher.retries(), 0);
}

#[tokio::test]
async fn sns_standard_topic_to_sqs_standard_queue_per_aggregate_order() {
    let sdk = setup().await;
    let (topic, queue) = topic_to_queue(&sdk, false).await;
    let publisher = SnsPublisher::new(&config(endpoint(), false)).await.unwrap();
    publisher.validate_destination(&topic).unwrap();
    let run = unique("r");
    publish_all(&publisher, workload(&run, &topic, 4, 10), 7).await;
    let received = receive(&sdk, &queue, 40).await;
    assert_exact_and_ordered(&received, &run, 4, 10);
    assert!(received.iter().all(|r| r.group_id.is_none()));
}

#[tokio::test]
async fn sqs_fifo_queue_direct_order_and_dedup() {
    let sdk = setup().await;
    let (queue, _) = create_queue(&sdk, &format!("{}.fifo", unique("q"))).await;
    let publisher = SqsPublisher::new(&config(endpoint(), true)).await.unwrap();
    assert_eq!(publisher.kind(), "sqs");
    publisher.validate_destination(&queue).unwrap();
    let run = unique("r");
    let events = workload(&run, &queue, 6, 10);
    let first = events[0].clone();
    publish_all(&publisher, events, 9).await;
    // Deduplicated (see the SNS FIFO test for why before receiving).
    publish_all(&publisher, vec![first], 1).await;
    let received = receive(&sdk, &queue, 60).await;
    assert_exact_and_ordered(&received, &run, 6, 10);
}

#[tokio::test]
async fn fifo_group_and_deduplication_ids_are_mapped_for_invalid_ids() {
    let sdk = setup().await;
    let (queue, _) = create_queue(&sdk, &format!("{}.fifo", unique("q"))).await;
    let publisher = SqsPublisher::new(&config(endpoint(), true)).await.unwrap();
    let run = unique("r");
    let aggregate = "order 1/\u{fc}";
    let events: Vec<OutboxEvent> = (0..5).map(|n| event(&run, &queue, aggregate, n)).collect();
    publish_all(&publisher, events, 2).await;
    let received = receive(&sdk, &queue, 5).await;
    let ns: Vec<u64> = received
        .iter()
        .map(|r| r.body["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, [0, 1, 2, 3, 4]);
    let group = fifo_id(aggregate);
    assert!(group.starts_with("h-"), "{group}");
    for r in &received {
        assert_eq!(r.group_id.as_deref(), Some(group.as_str()));
        assert_eq!(r.attributes["aggregateid"], aggregate);
    }
}

#[tokio::test]
async fn sqs_standard_queue_direct_order() {
    let sdk = setup().await;
    let (queue, _) = create_queue(&sdk, &unique("q")).await;
    let publisher = SqsPublisher::new(&config(endpoint(), false)).await.unwrap();
    publisher.validate_destination(&queue).unwrap();
    let run = unique("r");
    publish_all(&publisher, workload(&run, &queue, 5, 10), 10).await;
    let received = receive(&sdk, &queue, 50).await;
    assert_exact_and_ordered(&received, &run, 5, 10);
}

#[tokio::test]
async fn oversized_event_fails_permanently_and_later_events_succeed() {
    let sdk = setup().await;
    let (queue, _) = create_queue(&sdk, &unique("q")).await;
    let publisher = SqsPublisher::new(&config(endpoint(), false)).await.unwrap();
    let run = unique("r");
    let mut big = event(&run, &queue, "agg-0", 1);
    big.id = format!("{run}-big").into();
    big.payload = Some(Bytes::from(format!(
        "{{\"aggregate\":\"agg-0\",\"n\":1,\"pad\":\"{}\"}}",
        "x".repeat(262_144)
    )));
    let mut last = event(&run, &queue, "agg-0", 1);
    last.id = format!("{run}-agg-0-1").into();
    let batch = vec![event(&run, &queue, "agg-0", 0), big, last];
    let outcomes = publisher.accept(batch).await.unwrap().await;
    assert!(outcomes[0].result.is_ok());
    let err = outcomes[1].result.as_ref().unwrap_err();
    assert_eq!(err.class, ErrorClass::Permanent);
    assert_eq!(err.kind, "message_too_large");
    assert!(err.message.contains(&format!("{run}-big")), "{err}");
    assert!(err.message.contains(&queue), "{err}");
    assert!(outcomes[2].result.is_ok());
    let received = receive(&sdk, &queue, 2).await;
    assert_exact_and_ordered(&received, &run, 1, 2);
}

/// With `transient_error_window_ms: 0` a missing queue is permanent at once.
#[tokio::test]
async fn unknown_queue_is_a_permanent_error_naming_the_event() {
    let sdk = setup().await;
    let _ = sdk;
    let queue = format!("{}/123456789012/{}", endpoint(), unique("missing"));
    let publisher = SqsPublisher::new(&AwsConfig {
        transient_error_window: Duration::from_millis(0),
        ..config(endpoint(), false)
    })
    .await
    .unwrap();
    let run = unique("r");
    let outcomes = publisher
        .accept(vec![event(&run, &queue, "agg-0", 0)])
        .await
        .unwrap()
        .await;
    let err = outcomes[0].result.as_ref().unwrap_err();
    assert_eq!(err.class, ErrorClass::Permanent, "{err}");
    assert_eq!(err.kind, "destination_not_found", "{err}");
    assert!(err.message.contains(&format!("{run}-agg-0-0")), "{err}");
}

/// Issue 9: a queue that does not exist yet (infrastructure as code re-creating it) is
/// retried within the transient-error window (default 5 minutes): nothing fails, and
/// once it exists every event arrives, in order.
#[tokio::test]
async fn a_queue_created_after_the_first_event_gets_everything_in_order() {
    let sdk = setup().await;
    let name = unique("late");
    let queue = format!("{}/123456789012/{name}", endpoint());
    let publisher = SqsPublisher::new(&AwsConfig {
        retry_max_backoff: Duration::from_millis(500),
        ..config(endpoint(), false)
    })
    .await
    .unwrap();
    let run = unique("r");
    let started = Instant::now();
    let delivery = publisher
        .accept(workload(&run, &queue, 3, 4))
        .await
        .unwrap();
    let creator = {
        let sdk = sdk.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            create_queue(&sdk, &name).await.0
        })
    };
    let outcomes = tokio::time::timeout(Duration::from_secs(60), delivery)
        .await
        .expect("delivered within 60 s");
    assert_eq!(creator.await.unwrap(), queue);
    assert!(started.elapsed() >= Duration::from_secs(5));
    for o in &outcomes {
        assert!(o.result.is_ok(), "{}: {:?}", o.event.id, o.result);
    }
    let received = receive(&sdk, &queue, 12).await;
    assert_exact_and_ordered(&received, &run, 3, 4);
    assert!(publisher.retries() > 0, "retries counted");
}

/// A queue that never appears: the events are retried for the window, then fail
/// permanently (the relay dead-letters them); after that, the destination's clock has
/// run out, so an event of another aggregate fails at its first attempt.
#[tokio::test]
async fn a_queue_that_never_appears_fails_permanently_after_the_window() {
    let sdk = setup().await;
    let _ = sdk;
    let queue = format!("{}/123456789012/{}", endpoint(), unique("never"));
    let publisher = SqsPublisher::new(&AwsConfig {
        transient_error_window: Duration::from_millis(1_500),
        ..config(endpoint(), false)
    })
    .await
    .unwrap();
    let run = unique("r");
    let started = Instant::now();
    let outcomes = publisher
        .accept(workload(&run, &queue, 2, 2))
        .await
        .unwrap()
        .await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1_500), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    let ids: Vec<&str> = outcomes.iter().map(|o| o.event.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            format!("{run}-agg-0-0"),
            format!("{run}-agg-1-0"),
            format!("{run}-agg-0-1"),
            format!("{run}-agg-1-1")
        ]
    );
    for o in &outcomes {
        let err = o.result.as_ref().unwrap_err();
        assert_eq!(err.class, ErrorClass::Permanent, "{err}");
        assert_eq!(err.kind, "destination_not_found", "{err}");
        assert!(err.message.contains(o.event.id.as_str()), "{err}");
        assert!(
            err.message
                .contains("longer than transient_error_window_ms"),
            "{err}"
        );
    }
    assert!(publisher.retries() > 0);
    // The destination's window has passed: an aggregate that only now reaches it fails
    // at its first attempt, without a retry (counted, not timed: moto's latency varies).
    let retries_before = publisher.retries();
    let outcomes = publisher
        .accept(vec![event(&run, &queue, "agg-2", 0)])
        .await
        .unwrap()
        .await;
    assert_eq!(
        publisher.retries(),
        retries_before,
        "retried after the window"
    );
    let err = outcomes[0].result.as_ref().unwrap_err();
    assert_eq!(err.kind, "destination_not_found", "{err}");
    assert_eq!(publisher.pending(), 0);
}

// ---------------------------------------------------------------------------------------
// Fault-injecting proxy.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// HTTP 500 InternalError, not forwarded.
    ServerError,
    /// HTTP 400 Throttling, not forwarded.
    Throttle,
    /// SQS only: HTTP 400 UnrecognizedClientException (bad credentials), not forwarded.
    BadCredentials,
    /// SQS only: one entry removed from the request before forwarding, reported in
    /// `Failed` with `InternalError` / `SenderFault: false`.
    DropEntry,
    /// SQS only: forwarded whole, then one `Successful` entry turned into a retryable
    /// `Failed` one (an acknowledgement lost: the resend is a duplicate).
    LostAck,
    /// SQS only: the first entry removed before forwarding and reported in `Failed` with
    /// `InternalError` / `SenderFault: false`; the later entries, whatever their message
    /// group, are stored (a partial batch).
    FailFirst,
}

struct Proxy {
    addr: SocketAddr,
    faults: Arc<AtomicU64>,
}

impl Proxy {
    /// Every `every`-th batch request (PublishBatch / SendMessageBatch) gets the next fault
    /// of `faults` in turn; other requests pass through.
    async fn start(every: u64, faults: Vec<Fault>) -> Proxy {
        Proxy::start_with(every, faults, None).await
    }

    /// Like `start`, and every SendMessageBatch entry whose body contains `stuck` fails
    /// with a retryable `ThrottlingException` (the other entries go through).
    async fn start_with(every: u64, faults: Vec<Fault>, stuck: Option<&'static str>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let injected = Arc::new(AtomicU64::new(0));
        let state = Arc::new(Mutex::new((0u64, 0u64)));
        let faults = Arc::new(faults);
        let counter = injected.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (state, faults, counter) = (state.clone(), faults.clone(), counter.clone());
                tokio::spawn(async move {
                    let _ = serve(client, state, faults, counter, every, stuck).await;
                });
            }
        });
        Proxy {
            addr,
            faults: injected,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

struct HttpMessage {
    head: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpMessage {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn encode(&self, close: bool) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.head);
        for (k, v) in &self.headers {
            if ["connection", "content-length", "transfer-encoding"]
                .iter()
                .any(|h| k.eq_ignore_ascii_case(h))
            {
                continue;
            }
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// Reads one HTTP/1.1 message (Content-Length or chunked body; to EOF if `to_eof`).
async fn read_message(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    to_eof: bool,
) -> std::io::Result<Option<HttpMessage>> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 16384];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head_text = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head_text.split("\r\n");
    let head = lines.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    buf.drain(..head_end + 4);
    let mut message = HttpMessage {
        head,
        headers,
        body: Vec::new(),
    };
    let chunked = message
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length = message
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    if chunked || (to_eof && length.is_none()) {
        // Read to EOF (upstream connections are `Connection: close`), then de-chunk.
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await?;
        buf.extend_from_slice(&rest);
        let raw = std::mem::take(buf);
        message.body = if chunked { dechunk(&raw) } else { raw };
    } else {
        let length = length.unwrap_or(0);
        while buf.len() < length {
            let mut chunk = [0u8; 16384];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        message.body = buf.drain(..length.min(buf.len())).collect();
    }
    Ok(Some(message))
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&raw[..i])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap_or(0);
        raw = &raw[i + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[(size + 2).min(raw.len())..];
    }
    out
}

async fn forward(request: &HttpMessage) -> std::io::Result<HttpMessage> {
    let mut upstream = TcpStream::connect(upstream_addr()).await?;
    upstream.write_all(&request.encode(true)).await?;
    let mut buf = Vec::new();
    read_message(&mut upstream, &mut buf, true)
        .await?
        .ok_or_else(|| std::io::Error::other("upstream closed"))
}

fn reply(status: &str, content_type: &str, body: String) -> HttpMessage {
    HttpMessage {
        head: format!("HTTP/1.1 {status}"),
        headers: vec![
            ("Content-Type".into(), content_type.into()),
            ("x-amzn-RequestId".into(), "injected".into()),
        ],
        body: body.into_bytes(),
    }
}

async fn serve(
    mut client: TcpStream,
    state: Arc<Mutex<(u64, u64)>>,
    faults: Arc<Vec<Fault>>,
    injected: Arc<AtomicU64>,
    every: u64,
    stuck: Option<&'static str>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some(mut request) = read_message(&mut client, &mut buf, false).await? {
        let target = request
            .header("x-amz-target")
            .unwrap_or_default()
            .to_string();
        let body_text = String::from_utf8_lossy(&request.body).to_string();
        let sqs_json = target.ends_with("SendMessageBatch");
        let is_batch = sqs_json || body_text.contains("Action=PublishBatch");
        let fault = if is_batch {
            // (batch requests seen, faults injected)
            let mut n = state.lock().unwrap();
            n.0 += 1;
            (n.0 == every * (n.1 + 1)).then(|| {
                n.1 += 1;
                faults[(n.1 as usize) % faults.len()]
            })
        } else {
            None
        };
        let fault =
            match fault {
                Some(
                    Fault::DropEntry | Fault::LostAck | Fault::BadCredentials | Fault::FailFirst,
                ) if !sqs_json => Some(Fault::ServerError),
                f => f,
            };
        if fault.is_some() {
            injected.fetch_add(1, Ordering::Relaxed);
        }
        let stuck_here = stuck.filter(|needle| sqs_json && body_text.contains(needle));
        let response = match fault {
            None => match stuck_here {
                None => forward(&request).await?,
                Some(needle) => {
                    injected.fetch_add(1, Ordering::Relaxed);
                    fail_entries(
                        &mut request,
                        |_, entry| entry["MessageBody"].as_str().unwrap_or("").contains(needle),
                        "ThrottlingException",
                    )
                    .await?
                }
            },
            Some(Fault::ServerError) if sqs_json => reply(
                "500 Internal Server Error",
                "application/x-amz-json-1.0",
                r#"{"__type":"com.amazonaws.sqs#InternalError","message":"injected"}"#.into(),
            ),
            Some(Fault::ServerError) => reply(
                "500 Internal Server Error",
                "text/xml",
                "<ErrorResponse><Error><Type>Receiver</Type><Code>InternalError</Code><Message>injected</Message></Error><RequestId>injected</RequestId></ErrorResponse>".into(),
            ),
            Some(Fault::Throttle) if sqs_json => reply(
                "400 Bad Request",
                "application/x-amz-json-1.0",
                r#"{"__type":"com.amazonaws.sqs#ThrottlingException","message":"Rate exceeded"}"#.into(),
            ),
            Some(Fault::Throttle) => reply(
                "400 Bad Request",
                "text/xml",
                "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>injected</RequestId></ErrorResponse>".into(),
            ),
            Some(Fault::BadCredentials) => reply(
                "400 Bad Request",
                "application/x-amz-json-1.0",
                r#"{"__type":"com.amazon.coral.service#UnrecognizedClientException","message":"The security token included in the request is invalid."}"#.into(),
            ),
            Some(Fault::DropEntry) => {
                // The last entry: on a standard queue the only one of its aggregate.
                let last = serde_json::from_slice::<serde_json::Value>(&request.body).unwrap()
                    ["Entries"]
                    .as_array()
                    .unwrap()
                    .len()
                    - 1;
                fail_entries(&mut request, |i, _| i == last, "InternalError").await?
            }
            Some(Fault::FailFirst) => {
                fail_entries(&mut request, |i, _| i == 0, "InternalError").await?
            }
            Some(Fault::LostAck) => {
                let mut response = forward(&request).await?;
                let mut out: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
                if let Some(ok) = out.get_mut("Successful").and_then(|s| s.as_array_mut()) {
                    if let Some(entry) = ok.pop() {
                        let id = entry["Id"].clone();
                        if out.get("Failed").is_none() {
                            out["Failed"] = serde_json::json!([]);
                        }
                        out["Failed"].as_array_mut().unwrap().push(serde_json::json!({
                            "Id": id, "SenderFault": false, "Code": "ServiceUnavailable", "Message": "injected"
                        }));
                    }
                }
                response.body = serde_json::to_vec(&out).unwrap();
                response
            }
        };
        client.write_all(&response.encode(false)).await?;
    }
    Ok(())
}

/// Removes the SendMessageBatch entries `pick` selects before forwarding, and reports them
/// in `Failed` with `code` and `SenderFault: false`.
async fn fail_entries(
    request: &mut HttpMessage,
    pick: impl Fn(usize, &serde_json::Value) -> bool,
    code: &str,
) -> std::io::Result<HttpMessage> {
    let mut json: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    let entries = json["Entries"].as_array_mut().unwrap();
    let mut failed = Vec::new();
    let mut kept = Vec::new();
    for (i, entry) in entries.drain(..).enumerate() {
        if pick(i, &entry) {
            failed.push(serde_json::json!({
                "Id": entry["Id"], "SenderFault": false, "Code": code, "Message": "injected"
            }));
        } else {
            kept.push(entry);
        }
    }
    let mut response = if kept.is_empty() {
        reply(
            "200 OK",
            "application/x-amz-json-1.0",
            r#"{"Successful":[],"Failed":[]}"#.into(),
        )
    } else {
        json["Entries"] = serde_json::Value::Array(kept);
        request.body = serde_json::to_vec(&json).unwrap();
        forward(request).await?
    };
    let mut out: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    if out.get("Failed").is_none() {
        out["Failed"] = serde_json::json!([]);
    }
    out["Failed"].as_array_mut().unwrap().extend(failed);
    response.body = serde_json::to_vec(&out).unwrap();
    Ok(response)
}

#[tokio::test]
async fn invalid_credentials_are_fatal_and_stop_the_publisher() {
    let sdk = setup().await;
    let (queue, _) = create_queue(&sdk, &unique("q")).await;
    let proxy = Proxy::start(1, vec![Fault::BadCredentials]).await;
    let publisher = SqsPublisher::new(&config(proxy.endpoint(), false))
        .await
        .unwrap();
    let run = unique("r");
    let outcomes = publisher
        .accept(workload(&run, &queue, 2, 2))
        .await
        .unwrap()
        .await;
    for o in &outcomes {
        let err = o.result.as_ref().unwrap_err();
        assert_eq!(err.class, ErrorClass::Fatal, "{err}");
        assert_eq!(err.kind, "invalid_credentials", "{err}");
    }
    let err = publisher
        .accept(vec![event(&run, &queue, "agg-9", 0)])
        .await
        .err()
        .expect("accept after a fatal error fails");
    assert_eq!(err.class, ErrorClass::Fatal);
    assert!(publisher.flush(Duration::from_secs(1)).await.is_err());
}

#[tokio::test]
async fn sqs_fifo_retries_throttling_5xx_and_lost_acks_in_order() {
    let sdk = setup().await;
    let (queue, _) = create_queue(&sdk, &format!("{}.fifo", unique("q"))).await;
    let proxy = Proxy::start(3, vec![Fault::Throttle, Fault::ServerError, Fault::LostAck]).await;
    let publisher = SqsPublisher::new(&config(proxy.endpoint(), true))
        .await
        .unwrap();
    let run = unique("r");
    publish_all(&publisher, workload(&run, &queue, 5, 20), 10).await;
    let received = receive(&sdk, &queue, 100).await;
    assert_exact_and_ordered(&received, &run, 5, 20);
    assert!(proxy.faults.load(Ordering::Relaxed) > 0);
    assert!(publisher.retries() > 0, "retries counted");
}

/// Issue 9: a FIFO batch whose first entry fails retryably while the later ones are
/// stored. If the batch held two entries of one message group, the later one is already in
/// the queue ahead of the earlier one's resend (and its own resend is deduplicated away):
/// the consumer would see the group out of order.
#[tokio::test]
async fn sqs_fifo_partial_batch_failure_never_reorders_a_group() {
    let sdk = setup().await;
    let (queue, _) = create_queue(&sdk, &format!("{}.fifo", unique("q"))).await;
    let proxy = Proxy::start(2, vec![Fault::FailFirst]).await;
    let publisher = SqsPublisher::new(&config(proxy.endpoint(), true))
        .await
        .unwrap();
    let run = unique("r");
    // All accepted at once, so every lane has several events queued.
    publish_all(&publisher, workload(&run, &queue, 3, 8), 24).await;
    let received = receive(&sdk, &queue, 24).await;
    assert_exact_and_ordered(&received, &run, 3, 8);
    assert!(proxy.faults.load(Ordering::Relaxed) > 0);
    assert!(publisher.retries() > 0, "retries counted");
}

#[tokio::test]
async fn sqs_standard_partial_batch_failure_is_retried_in_order() {
    let sdk = setup().await;
    let (queue, _) = create_queue(&sdk, &unique("q")).await;
    let proxy = Proxy::start(
        2,
        vec![Fault::DropEntry, Fault::Throttle, Fault::ServerError],
    )
    .await;
    let publisher = SqsPublisher::new(&config(proxy.endpoint(), false))
        .await
        .unwrap();
    let run = unique("r");
    publish_all(&publisher, workload(&run, &queue, 6, 10), 12).await;
    let received = receive(&sdk, &queue, 60).await;
    assert_exact_and_ordered(&received, &run, 6, 10);
    assert!(proxy.faults.load(Ordering::Relaxed) > 0);
    assert!(publisher.retries() > 0, "retries counted");
}

#[tokio::test]
async fn sns_standard_retries_throttling_and_5xx_in_order() {
    let sdk = setup().await;
    let (topic, queue) = topic_to_queue(&sdk, false).await;
    let proxy = Proxy::start(2, vec![Fault::Throttle, Fault::ServerError]).await;
    let publisher = SnsPublisher::new(&config(proxy.endpoint(), false))
        .await
        .unwrap();
    let run = unique("r");
    publish_all(&publisher, workload(&run, &topic, 4, 10), 8).await;
    let received = receive(&sdk, &queue, 40).await;
    assert_exact_and_ordered(&received, &run, 4, 10);
    assert!(publisher.retries() > 0, "retries counted");
}

#[tokio::test]
async fn a_failing_aggregate_does_not_hold_up_others_and_gives_up_after_max_elapsed() {
    let sdk = setup().await;
    let (queue, _) = create_queue(&sdk, &unique("q")).await;
    let proxy = Proxy::start_with(u64::MAX, vec![Fault::Throttle], Some("\"stuck\"")).await;
    let publisher = SqsPublisher::new(&AwsConfig {
        max_retry_elapsed: Duration::from_millis(500),
        ..config(proxy.endpoint(), false)
    })
    .await
    .unwrap();
    let run = unique("r");
    let mut events = workload(&run, &queue, 3, 5);
    for n in 0..3 {
        events.insert(n * 4, event(&run, &queue, "stuck", n));
    }
    let started = Instant::now();
    let outcomes = publisher.accept(events).await.unwrap().await;
    assert!(started.elapsed() >= Duration::from_millis(500));
    for o in &outcomes {
        if o.event.aggregate_id == "stuck" {
            let err = o.result.as_ref().unwrap_err();
            assert_eq!(err.class, ErrorClass::Retryable, "{err}");
            assert!(err.message.contains(o.event.id.as_str()), "{err}");
        } else {
            assert!(o.result.is_ok(), "{}: {:?}", o.event.id, o.result);
        }
    }
    let received = receive(&sdk, &queue, 15).await;
    assert_exact_and_ordered(&received, &run, 3, 5);
    assert!(publisher.retries() > 0);
    assert_eq!(publisher.pending(), 0);
}

/// Rough throughput of the connector alone (no relay), SendMessageBatch to a standard and
/// a FIFO queue, for three shapes of workload: many aggregates (requests fill with ten
/// different groups), ten aggregates, and one hot aggregate (one message group).
/// Against fauxqs (fast): `OUTBOX_RELAY_AWS_ENDPOINT=http://127.0.0.1:19325 cargo test -p
/// outbox-connectors --test aws_moto -- --ignored --nocapture throughput`.
#[tokio::test]
#[ignore]
async fn throughput_sqs_fifo_and_standard() {
    let sdk = setup().await;
    for (aggregates, per_aggregate) in [(1000, 10), (10, 200), (1, 500)] {
        for fifo in [false, true] {
            let suffix = if fifo { ".fifo" } else { "" };
            let (queue, _) = create_queue(&sdk, &format!("{}{suffix}", unique("q"))).await;
            let publisher = SqsPublisher::new(&AwsConfig {
                max_concurrency: 16,
                ..config(endpoint(), fifo)
            })
            .await
            .unwrap();
            let run = unique("r");
            let events = workload(&run, &queue, aggregates, per_aggregate);
            let count = events.len();
            let started = Instant::now();
            publish_all(&publisher, events, 100).await;
            let elapsed = started.elapsed();
            eprintln!(
                "sqs fifo={fifo:<5} {aggregates:>4} aggregates x {per_aggregate:>3}: {count} events in {:>7.3} s ({:>6.0}/s), {:.2} events per request",
                elapsed.as_secs_f64(),
                count as f64 / elapsed.as_secs_f64(),
                count as f64 / publisher.requests() as f64
            );
        }
    }
}
