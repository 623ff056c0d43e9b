//! Issue 18: events over the SNS/SQS size limit, offloaded to S3 (`large_payloads: s3`) in
//! the extended client libraries' format, against moto (SNS, SQS and S3 on one endpoint,
//! `deploy/local/aws.sh`). Before, such an event took the dead-letter / park outcome and
//! its aggregate went on without it.
//!
//! - SNS FIFO → SQS FIFO, small and 300 KiB–2 MiB events from concurrent writers, two
//!   relay kills: every event arrives, in order per aggregate, each large one as a pointer
//!   whose object holds the exact payload, one object per large event after the replays.
//! - A consumer on the Amazon SQS Extended Client Library for Python (PyPI, installed by
//!   `deploy/local/aws.sh extended-client`) reads the original payloads.
//! - The bucket missing: the objects cannot be written, nothing of the aggregate is
//!   published, the destination's circuit opens, and after `transient_error_window_ms`
//!   the failure policy (park) takes the event and its aggregate's later one.
//! - S3 unreachable, then back: the aggregate waits (circuit open), then arrives in order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use outbox_relay_tests::aws::{self, ACCOUNT, REGION};
use outbox_relay_tests::kafka::Record;
use outbox_relay_tests::relay::{metric_sum, Relay, RelaySetup};
use outbox_relay_tests::{pg, unique};

/// Offloaded above the SNS limit (the default threshold is `max_message_bytes`).
const LARGE_MIN: usize = 300 * 1024;
const LARGE_MAX: usize = 2 * 1024 * 1024;

/// A bucket name from a test name (lowercase letters, digits and '-').
fn bucket_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

fn sink_yaml(service: &str, bucket: &str, extra: &str) -> String {
    let endpoint = aws::endpoint();
    format!(
        "  kind: {service}\n  {service}:\n    region: {REGION}\n    endpoint: {endpoint}\n    fifo: true\n    retry_initial_backoff_ms: 50\n    max_concurrency: 32\n{extra}    large_payloads:\n      mode: s3\n      bucket: {bucket}\n      prefix: relay/\n      endpoint: {endpoint}\n      force_path_style: true\n"
    )
}

/// One committed event, as a writer inserted it.
#[derive(Clone, Debug)]
struct Written {
    id: String,
    aggregate: String,
    payload: Vec<u8>,
}

/// A payload of `size` bytes (at least its head) that names its aggregate and position.
fn payload(aggregate: &str, seq: usize, size: usize) -> Vec<u8> {
    let mut text = format!("{{\"aggregate\":\"{aggregate}\",\"seq\":{seq},\"pad\":\"").into_bytes();
    let head = text.len();
    let pattern = format!("{aggregate}/{seq};");
    while text.len() + 2 < size {
        text.extend_from_slice(pattern.as_bytes());
    }
    // The pattern is ASCII: any cut is valid UTF-8.
    text.truncate(size.saturating_sub(2).max(head));
    text.extend_from_slice(b"\"}");
    text
}

async fn insert(
    client: &tokio_postgres::Client,
    table: &str,
    aggregate: &str,
    payload: &[u8],
) -> String {
    let text = std::str::from_utf8(payload).unwrap();
    let row = client
        .query_one(
            &format!("INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', $1, 'T', $2) RETURNING id::text"),
            &[&aggregate, &text],
        )
        .await
        .expect("insert");
    row.get(0)
}

/// `writers` concurrent writers, each with its own aggregates, `per_writer` events each,
/// every fourth one large (sizes spread over 300 KiB–2 MiB), one transaction per event.
async fn write(table: &str, writers: usize, per_writer: usize) -> Vec<Written> {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let table = table.to_string();
        tasks.push(tokio::spawn(async move {
            let client = pg::connect().await;
            let mut out = Vec::new();
            for i in 0..per_writer {
                let aggregate = format!("w{w}-a{}", i % 3);
                let size = if i % 4 == 1 {
                    LARGE_MIN + (w * 7919 + i * 104_729) % (LARGE_MAX - LARGE_MIN)
                } else {
                    60 + i
                };
                let payload = payload(&aggregate, i, size);
                let id = insert(&client, &table, &aggregate, &payload).await;
                out.push(Written {
                    id,
                    aggregate,
                    payload,
                });
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// The body a record stands for: its own, or the object its pointer names (checking the
/// pointer's format and the reserved attribute on the way). `Some(key)` when it was one.
async fn resolve(s3: &aws_sdk_s3::Client, bucket: &str, r: &Record) -> (Vec<u8>, Option<String>) {
    let body = r.payload.clone().unwrap_or_default();
    let Some(size) = r.header_str("ExtendedPayloadSize") else {
        return (body, None);
    };
    let pointer: serde_json::Value = serde_json::from_slice(&body).expect("pointer JSON");
    assert_eq!(
        pointer[0], "software.amazon.payloadoffloading.PayloadS3Pointer",
        "{pointer}"
    );
    assert_eq!(pointer[1]["s3BucketName"], bucket, "{pointer}");
    let key = pointer[1]["s3Key"].as_str().expect("s3Key").to_string();
    let stored = aws::get_object(s3, bucket, &key).await;
    assert_eq!(size, stored.len().to_string(), "ExtendedPayloadSize");
    (stored, Some(key))
}

async fn wait_metric(relay: &Relay, metric: &str, labels: &[&str], want: f64) -> f64 {
    let mut value = 0.0;
    for _ in 0..100 {
        value = metric_sum(&relay.metrics(), metric, labels);
        if value >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sns_fifo_to_sqs_fifo_offloads_large_events_in_order_through_two_kills() {
    let name = unique("snslarge");
    let bucket = bucket_name(&name);
    let sdk = aws::sdk().await;
    let s3 = aws::s3(&sdk);
    aws::create_bucket(&s3, &bucket).await;
    let (queue_url, queue_arn) = aws::create_queue(&sdk, &format!("{name}-q.fifo")).await;
    let topic = aws::create_topic_into(&sdk, &format!("{name}-Order.fifo"), &queue_arn).await;
    let (_, dl_arn) = aws::create_queue(&sdk, &format!("{name}-dlq-q.fifo")).await;
    let dl_topic = aws::create_topic_into(&sdk, &format!("{name}-dlq.fifo"), &dl_arn).await;
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "text", false).await;
    let mut setup = RelaySetup::new(&name, &table).with_env(&aws::relay_env());
    setup.sink_yaml = Some(sink_yaml("sns", &bucket, ""));
    setup.route_template = Some(topic.replace("-Order.fifo", "-{aggregatetype}.fifo"));
    setup.dead_letter = Some(dl_topic);
    setup.inflight_bytes = 64 << 20;
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    let started = Instant::now();
    let writes = {
        let table = table.clone();
        tokio::spawn(async move { write(&table, 4, 32).await })
    };
    for pause in [1200, 1500] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        relay.kill9();
        relay = Relay::start(&setup);
        relay.wait_ready(Duration::from_secs(60));
    }
    let mut written = writes.await.unwrap();
    // One more large event once the last relay runs: the writers may have finished, and
    // the killed relays confirmed everything, before it started, and the last session's
    // offload metrics below need an event of its own (CI saw them at 0 without it).
    {
        let client = pg::connect().await;
        let aggregate = "tail-a0".to_string();
        let payload = payload(&aggregate, 0, LARGE_MIN + 4096);
        let id = insert(&client, &table, &aggregate, &payload).await;
        written.push(Written {
            id,
            aggregate,
            payload,
        });
    }
    let large: HashSet<&str> = written
        .iter()
        .filter(|w| w.payload.len() >= LARGE_MIN)
        .map(|w| w.id.as_str())
        .collect();
    let large_bytes: usize = written
        .iter()
        .filter(|w| large.contains(w.id.as_str()))
        .map(|w| w.payload.len())
        .sum();
    assert_eq!(written.len(), 129);
    assert_eq!(large.len(), 33);

    let want = written.len();
    let records = aws::receive(&sdk, &queue_url, "q", Duration::from_secs(60), |r| {
        let ids: HashSet<&[u8]> = r.iter().filter_map(|x| x.header("id")).collect();
        ids.len() >= want
    })
    .await;
    let elapsed = started.elapsed();

    // Every event, first copies in order per aggregate, each with its exact payload; the
    // large ones as pointers to `relay/<event id>`.
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen: HashMap<String, Vec<u8>> = HashMap::new();
    let mut duplicates = 0;
    for r in &records {
        let id = r.header_str("id").expect("id attribute");
        let (body, key) = resolve(&s3, &bucket, r).await;
        assert_eq!(
            key.is_some(),
            large.contains(id.as_str()),
            "event {id}: a pointer exactly when the payload is large"
        );
        if let Some(key) = &key {
            assert_eq!(key, &format!("relay/{id}"));
        }
        if let Some(first) = seen.get(&id) {
            assert_eq!(first, &body, "a duplicate of {id} carries the same payload");
            duplicates += 1;
            continue;
        }
        seen.insert(id.clone(), body);
        got.entry(r.key_str().to_string()).or_default().push(id);
    }
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for w in &written {
        expected
            .entry(w.aggregate.clone())
            .or_default()
            .push(w.id.clone());
        assert_eq!(
            seen.get(&w.id).map(Vec::as_slice),
            Some(w.payload.as_slice()),
            "event {} ({} bytes) arrives with its exact payload",
            w.id,
            w.payload.len()
        );
    }
    assert_eq!(got, expected, "every event, in order per aggregate");

    // One object per large event, replays included.
    let keys = aws::list_keys(&s3, &bucket, "relay/").await;
    let want_keys: HashSet<String> = large.iter().map(|id| format!("relay/{id}")).collect();
    assert_eq!(
        keys.len(),
        want_keys.len(),
        "no duplicate objects: {keys:?}"
    );
    assert_eq!(keys.into_iter().collect::<HashSet<_>>(), want_keys);

    // The last relay counts what it delivered offloaded (replays of earlier sessions'
    // events included); at least the tail event, each with its body's bytes.
    let topic_label = format!("destination=\"{}\"", topic);
    let events = wait_metric(
        &relay,
        "outbox_relay_offloaded_events_total",
        &[&topic_label],
        1.0,
    )
    .await;
    let bytes = metric_sum(
        &relay.metrics(),
        "outbox_relay_offloaded_bytes_total",
        &[&topic_label],
    );
    assert!(events >= 1.0, "offloaded_events_total {events}");
    assert!(
        bytes >= events * LARGE_MIN as f64,
        "offloaded_bytes_total {bytes} for {events} events"
    );
    eprintln!(
        "sns fifo large: {} events ({} large, {:.1} MB offloaded) delivered in {:.1} s with two kills; {} records, {duplicates} duplicates; last session: {events} offloaded events, {bytes} bytes",
        written.len(),
        large.len(),
        large_bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        records.len(),
    );
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
    aws::delete_bucket(&s3, &bucket).await;
}

/// A consumer on the Python extended client library reads the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_extended_client_consumer_reads_the_original_payloads() {
    let name = unique("sqslargepy");
    let bucket = bucket_name(&name);
    let sdk = aws::sdk().await;
    let s3 = aws::s3(&sdk);
    aws::create_bucket(&s3, &bucket).await;
    let (queue_url, _) = aws::create_queue(&sdk, &format!("{name}-Order.fifo")).await;
    let (dl_url, _) = aws::create_queue(&sdk, &format!("{name}-dlq.fifo")).await;
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "text", false).await;
    let mut setup = RelaySetup::new(&name, &table).with_env(&aws::relay_env());
    setup.sink_yaml = Some(sink_yaml("sqs", &bucket, ""));
    setup.route_template = Some(format!(
        "{}/{ACCOUNT}/{name}-{{aggregatetype}}.fifo",
        aws::endpoint()
    ));
    setup.dead_letter = Some(dl_url);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    let sizes = [100, 300 * 1024, 50, 1536 * 1024, 250_000, 700 * 1024];
    let mut written = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let aggregate = format!("a{}", i % 2);
        let payload = payload(&aggregate, i, *size);
        let id = insert(&client, &table, &aggregate, &payload).await;
        written.push(Written {
            id,
            aggregate,
            payload,
        });
    }

    let python = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/local/aws.sh"
    ))
    .arg("extended-client")
    .output()
    .expect("deploy/local/aws.sh extended-client");
    assert!(python.status.success(), "{python:?}");
    let python = String::from_utf8(python.stdout).unwrap().trim().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/sqs_extended_consumer.py"
            ))
            .arg(&queue_url)
            .arg("6")
            .arg("30")
            .env("AWS_ENDPOINT_URL", aws::endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", REGION)
            .output()
            .expect("run the Python consumer")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "consumer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{lines:?}");
    // Exactly the payloads, in order per aggregate, pointers resolved for the three over
    // 256 KiB.
    for aggregate in ["a0", "a1"] {
        let want: Vec<(String, String, u64, bool)> = written
            .iter()
            .filter(|w| w.aggregate == aggregate)
            .map(|w| {
                (
                    w.id.clone(),
                    sha256_hex(&w.payload),
                    w.payload.len() as u64,
                    w.payload.len() > 262_144,
                )
            })
            .collect();
        let got: Vec<(String, String, u64, bool)> = lines
            .iter()
            .filter(|l| l["aggregateid"] == aggregate)
            .map(|l| {
                (
                    l["id"].as_str().unwrap().to_string(),
                    l["sha256"].as_str().unwrap().to_string(),
                    l["len"].as_u64().unwrap(),
                    l["pointer"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "aggregate {aggregate}");
    }
    let queue_label = format!(
        "destination=\"{}/{ACCOUNT}/{name}-Order.fifo\"",
        aws::endpoint()
    );
    assert_eq!(
        wait_metric(
            &relay,
            "outbox_relay_offloaded_events_total",
            &[&queue_label],
            3.0
        )
        .await,
        3.0
    );
    let offloaded: usize = sizes.iter().filter(|s| **s > 262_144).sum();
    assert_eq!(
        metric_sum(
            &relay.metrics(),
            "outbox_relay_offloaded_bytes_total",
            &[&queue_label]
        ),
        offloaded as f64
    );
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
    aws::delete_bucket(&s3, &bucket).await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// S3 refuses the objects (the bucket does not exist): nothing of the aggregate is
/// published, the circuit opens, and the failure policy (park) takes the event and the
/// aggregate's later one, while another aggregate flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_object_nothing_is_published_and_the_failure_policy_applies() {
    let name = unique("sqslargenos3");
    let bucket = bucket_name(&name);
    let sdk = aws::sdk().await;
    let (queue_url, _) = aws::create_queue(&sdk, &format!("{name}-Order.fifo")).await;
    let (dl_url, _) = aws::create_queue(&sdk, &format!("{name}-dlq.fifo")).await;
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "text", false).await;
    let mut setup = RelaySetup::new(&name, &table).with_env(&aws::relay_env());
    setup.sink_yaml = Some(sink_yaml(
        "sqs",
        &bucket,
        "    transient_error_window_ms: 3000\n    circuit_breaker:\n      failure_threshold: 2\n      open_initial_ms: 200\n      open_max_ms: 400\n",
    ));
    setup.route_template = Some(format!(
        "{}/{ACCOUNT}/{name}-{{aggregatetype}}.fifo",
        aws::endpoint()
    ));
    setup.dead_letter = Some(dl_url);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    let big = payload("x", 0, 400 * 1024);
    insert(&client, &table, "x", &big).await;
    insert(&client, &table, "x", b"{\"after\":1}").await;
    insert(&client, &table, "y", b"{\"other\":1}").await;

    let received = aws::receive(&sdk, &queue_url, "q", Duration::from_secs(8), |_| false).await;
    // The rejection's later event ends the session (it is replayed behind the parked
    // one): the other aggregate's event may come twice (moto's FIFO queues do not
    // de-duplicate against deleted messages; AWS does, for five minutes).
    let bodies: HashSet<&[u8]> = received
        .iter()
        .filter_map(|r| r.payload.as_deref())
        .collect();
    assert_eq!(
        bodies,
        HashSet::from([&b"{\"other\":1}"[..]]),
        "only the other aggregate's event, never x's later one"
    );
    assert_eq!(
        wait_metric(&relay, "outbox_relay_parked_events", &[], 2.0).await,
        2.0,
        "the event and its aggregate's later one are parked:\n{}",
        relay.log_tail()
    );
    let queue_label = format!(
        "destination=\"{}/{ACCOUNT}/{name}-Order.fifo\"",
        aws::endpoint()
    );
    assert!(
        metric_sum(
            &relay.metrics(),
            "outbox_relay_circuit_transitions_total",
            &[&queue_label, "state=\"open\""]
        ) >= 1.0,
        "the queue's circuit opened while S3 refused the object"
    );
    assert!(
        metric_sum(
            &relay.metrics(),
            "outbox_relay_sink_retries_total",
            &[&queue_label]
        ) >= 2.0
    );
    assert_eq!(
        metric_sum(&relay.metrics(), "outbox_relay_offloaded_events_total", &[]),
        0.0
    );
    assert!(
        relay.log_text().contains("NoSuchBucket"),
        "{}",
        relay.log_tail()
    );
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
    client
        .execute(
            "DELETE FROM outbox_relay.parked WHERE slot = $1",
            &[&setup.slot()],
        )
        .await
        .unwrap();
}

/// S3 unreachable (a proxy in front of it stops answering): the large event's object times
/// out and is retried, nothing of its aggregate is published, the queue's circuit opens,
/// another aggregate flows; when S3 answers again the circuit closes and the aggregate's
/// events arrive in order, the large one as a pointer to its exact payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_s3_holds_the_aggregate_until_it_answers_then_all_arrive_in_order() {
    use outbox_relay_tests::fault_proxy::FaultProxy;

    let name = unique("sqslargeproxy");
    let bucket = bucket_name(&name);
    let sdk = aws::sdk().await;
    let s3 = aws::s3(&sdk);
    aws::create_bucket(&s3, &bucket).await;
    let (queue_url, _) = aws::create_queue(&sdk, &format!("{name}-Order.fifo")).await;
    let (dl_url, _) = aws::create_queue(&sdk, &format!("{name}-dlq.fifo")).await;
    let moto: std::net::SocketAddr = aws::endpoint()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("moto at an IP:port");
    let proxy = FaultProxy::start(moto).await;
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "text", false).await;
    let mut setup = RelaySetup::new(&name, &table).with_env(&aws::relay_env());
    let endpoint = aws::endpoint();
    setup.sink_yaml = Some(format!(
        "  kind: sqs\n  sqs:\n    region: {REGION}\n    endpoint: {endpoint}\n    fifo: true\n    retry_initial_backoff_ms: 50\n    retry_max_backoff_ms: 500\n    request_timeout_ms: 1000\n    circuit_breaker:\n      failure_threshold: 2\n      open_initial_ms: 300\n      open_max_ms: 600\n    large_payloads:\n      mode: s3\n      bucket: {bucket}\n      prefix: relay/\n      endpoint: http://127.0.0.1:{}\n      force_path_style: true\n",
        proxy.port()
    ));
    setup.route_template = Some(format!(
        "{endpoint}/{ACCOUNT}/{name}-{{aggregatetype}}.fifo"
    ));
    setup.dead_letter = Some(dl_url);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    proxy.blackhole();
    let big = payload("x", 0, 400 * 1024);
    let big_id = insert(&client, &table, "x", &big).await;
    let after_id = insert(&client, &table, "x", b"{\"after\":1}").await;
    insert(&client, &table, "y", b"{\"other\":1}").await;
    let received = aws::receive(&sdk, &queue_url, "q", Duration::from_secs(6), |_| false).await;
    // At least once: a send that timed out on a loaded machine may come twice (moto's FIFO
    // queues do not de-duplicate as AWS does).
    let keys: HashSet<String> = received.iter().map(|r| r.key_str()).collect();
    assert_eq!(
        keys,
        HashSet::from(["y".to_string()]),
        "nothing of x while S3 does not answer"
    );
    let queue_label = format!("destination=\"{endpoint}/{ACCOUNT}/{name}-Order.fifo\"");
    let metrics = relay.metrics();
    assert!(
        metric_sum(
            &metrics,
            "outbox_relay_circuit_transitions_total",
            &[&queue_label, "state=\"open\""]
        ) >= 1.0,
        "the queue's circuit opened:\n{}",
        relay.log_tail()
    );
    assert!(metric_sum(&metrics, "outbox_relay_sink_retries_total", &[&queue_label]) >= 2.0);

    proxy.heal();
    let received = aws::receive(&sdk, &queue_url, "q", Duration::from_secs(30), |r| {
        r.iter()
            .any(|x| x.header_str("id").as_deref() == Some(after_id.as_str()))
    })
    .await;
    // First copies, in arrival order (a late copy of y may come first).
    let mut firsts: Vec<&Record> = Vec::new();
    for r in received.iter().filter(|r| r.key_str() == "x") {
        if !firsts.iter().any(|f| f.header("id") == r.header("id")) {
            firsts.push(r);
        }
    }
    let ids: Vec<String> = firsts.iter().map(|r| r.header_str("id").unwrap()).collect();
    assert_eq!(
        ids,
        [big_id.clone(), after_id.clone()],
        "x's events, in order"
    );
    let (body, key) = resolve(&s3, &bucket, firsts[0]).await;
    assert_eq!(key, Some(format!("relay/{big_id}")));
    assert_eq!(body, big, "the exact payload");
    assert_eq!(firsts[1].payload.as_deref(), Some(&b"{\"after\":1}"[..]));
    assert_eq!(aws::list_keys(&s3, &bucket, "relay/").await.len(), 1);
    assert_eq!(
        wait_metric(
            &relay,
            "outbox_relay_offloaded_events_total",
            &[&queue_label],
            1.0
        )
        .await,
        1.0
    );
    assert_eq!(
        metric_sum(
            &relay.metrics(),
            "outbox_relay_circuit_state",
            &[&queue_label]
        ),
        0.0,
        "closed again"
    );
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
    aws::delete_bucket(&s3, &bucket).await;
}
