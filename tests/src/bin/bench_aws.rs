//! SNS/SQS benchmark against the fauxqs emulator (`deploy/local/aws.sh fauxqs-start`):
//!
//! 1. the emulator's ceiling: a plain SDK client sending SendMessageBatch / PublishBatch
//!    (10 entries, FIFO) with the relay's `max_concurrency` requests in flight;
//! 2. a backlog of outbox events drained by the release relay into an SQS FIFO queue, then
//!    an SNS FIFO topic (subscribed by a FIFO queue with raw delivery), each from its own
//!    slot created before the backlog; the received set is checked complete and in
//!    per-aggregate order;
//! 3. steady single-row transactions at a fixed rate: commit → acknowledgement from the
//!    relay's histogram and commit → receive measured at the queue.
//!
//! Run it with `tests/bench-aws.sh` (which builds in release mode and starts the services).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_sns::types::{MessageAttributeValue as SnsAttr, PublishBatchRequestEntry as SnsEntry};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue as SqsAttr, SendMessageBatchRequestEntry,
};
use clap::Parser;
use futures::StreamExt;
use outbox_relay_tests::backlog::BacklogArgs;
use outbox_relay_tests::process::ProcessUsage;
use outbox_relay_tests::relay::{http_get, metric_sum};
use outbox_relay_tests::{aws, backlog, env, pg};

#[derive(Parser)]
// A smaller default backlog than the Kafka benchmarks: the emulator is far slower.
#[command(
    mut_arg("events", |a| a.default_value("50000")),
    mut_arg("aggregates", |a| a.default_value("1000"))
)]
struct Args {
    #[command(flatten)]
    backlog: BacklogArgs,
    /// The relay binary (release build).
    #[arg(long)]
    relay_bin: PathBuf,
    /// Batch requests in flight: the relay's `max_concurrency` and the ceiling client's.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Steady-state rate (single-row transactions per second).
    #[arg(long, default_value_t = 1_000)]
    rate: usize,
    #[arg(long, default_value_t = 20)]
    steady_secs: u64,
    /// Concurrent receivers when reading a queue back.
    #[arg(long, default_value_t = 8)]
    receivers: usize,
}

const PUBLICATION: &str = "bench_aws_pub";
const TABLE: &str = "bench_aws_outbox";
const SLOTS: [&str; 2] = ["bench_aws_sqs", "bench_aws_sns"];
const STEADY_WRITERS: usize = 2;

struct Drain {
    name: String,
    wall: f64,
    cpu: f64,
    peak_rss_kb: u64,
    per_request: f64,
    check: String,
}

struct Latency {
    name: String,
    events: usize,
    achieved_rate: f64,
    hist_p50: f64,
    hist_p99: f64,
    batch_p50: f64,
    batch_p99: f64,
    per_request: f64,
    recv_p50: f64,
    recv_p99: f64,
    recv_max: f64,
    check: String,
}

struct RelayProc {
    child: Child,
    port: u16,
    started: Instant,
}

impl RelayProc {
    fn metrics(&self) -> String {
        http_get(self.port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }
    fn published(&self) -> usize {
        metric_sum(
            &self.metrics(),
            "outbox_relay_events_published_total",
            &["result=\"ok\""],
        ) as usize
    }
    /// Events published ÷ batch requests sent so far.
    fn events_per_request(&self) -> f64 {
        let m = self.metrics();
        metric_sum(
            &m,
            "outbox_relay_events_published_total",
            &["result=\"ok\""],
        ) / metric_sum(&m, "outbox_relay_sink_requests_total", &[])
    }
    /// Waits until the relay has published `n` events; seconds since process start.
    fn wait_published(&mut self, n: usize, what: &str) -> f64 {
        loop {
            if self.published() >= n {
                return self.started.elapsed().as_secs_f64();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("relay ({what}) exited early: {status}");
            }
            assert!(
                self.started.elapsed() < Duration::from_secs(1200),
                "relay ({what}) did not finish"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    /// SIGTERM and wait (see [`Drop`]).
    fn stop(self) {}
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let args = Args::parse();
    let sdk = aws::sdk().await;
    let tag = format!("baws{}", std::process::id());

    // 1. Ceilings.
    let body = "x".repeat(450);
    let (ceil_q, _) = aws::create_queue(&sdk, &format!("{tag}-ceil.fifo")).await;
    let sqs_ceiling = ceiling_sqs(&sdk, &ceil_q, &args, &body).await;
    eprintln!("bench-aws: SQS ceiling {sqs_ceiling:.0} events/s");
    let (_, ceil_sub_arn) = aws::create_queue(&sdk, &format!("{tag}-ceil-sub.fifo")).await;
    let ceil_topic = aws::create_topic_into(&sdk, &format!("{tag}-ceil.fifo"), &ceil_sub_arn).await;
    let sns_ceiling = ceiling_sns(&sdk, &ceil_topic, &args, &body).await;
    eprintln!("bench-aws: SNS ceiling {sns_ceiling:.0} events/s");

    // 2. Backlog.
    let client = pg::connect().await;
    cleanup_pg(&client).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE {TABLE} (
               id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
               aggregatetype varchar(255) NOT NULL, aggregateid varchar(255) NOT NULL,
               type varchar(255) NOT NULL, payload jsonb,
               timestamp timestamptz NOT NULL DEFAULT now(), tracingspancontext varchar(512));
             CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLE} WITH (publish = 'insert');"
        ))
        .await
        .expect("bench schema");
    backlog::define_fill(&client, "bench_aws_fill", TABLE).await;
    backlog::create_slots(&client, &SLOTS).await;
    args.backlog
        .write(&client, "bench_aws_fill", "bench-aws")
        .await;
    let avg_payload: f64 = client
        .query_one(
            &format!("SELECT avg(octet_length(payload::text))::float8 FROM {TABLE}"),
            &[],
        )
        .await
        .unwrap()
        .get(0);

    let mut drains = Vec::new();
    let mut latencies = Vec::new();

    // SQS FIFO: drain, verify, steady state.
    let (sqs_url, _) = aws::create_queue(&sdk, &format!("{tag}-sqs-Order.fifo")).await;
    let (sqs_dlq, _) = aws::create_queue(&sdk, &format!("{tag}-sqs-dlq.fifo")).await;
    let sqs_template = sqs_url.replace("Order.fifo", "{aggregatetype}.fifo");
    let mut relay = start_relay(&args, "sqs", SLOTS[0], &sqs_template, &sqs_dlq);
    let wall = relay.wait_published(args.backlog.events, "sqs");
    let ProcessUsage {
        cpu_seconds: cpu,
        peak_rss_kb,
        ..
    } = usage(relay.child.id());
    eprintln!("bench-aws: SQS drain {wall:.2}s, reading the queue back");
    let got = receive_all(&sdk, &sqs_url, args.receivers, args.backlog.events, None).await;
    let check = verify_backlog(&got, args.backlog.events);
    eprintln!("bench-aws: SQS drain check: {check}");
    // After the read-back: the connector's request counter is exported once a second.
    let per_request = relay.events_per_request();
    drains.push(Drain {
        name: "outbox-relay → SQS FIFO".into(),
        wall,
        cpu,
        peak_rss_kb,
        per_request,
        check,
    });
    let lat = steady(&args, &sdk, &relay, &sqs_url, "SQS FIFO", 0).await;
    let sqs_steady = lat.events;
    latencies.push(lat);
    relay.stop();
    drop_slot(&client, SLOTS[0]).await;

    // SNS FIFO → SQS FIFO (raw delivery): drain, verify, steady state. The slot also holds
    // the SQS run's steady events after the backlog.
    let (sub_url, sub_arn) = aws::create_queue(&sdk, &format!("{tag}-sns-sub.fifo")).await;
    let topic = aws::create_topic_into(&sdk, &format!("{tag}-sns-Order.fifo"), &sub_arn).await;
    let (_, dlq_sub_arn) = aws::create_queue(&sdk, &format!("{tag}-sns-dlq-sub.fifo")).await;
    let dlq_topic =
        aws::create_topic_into(&sdk, &format!("{tag}-sns-dlq.fifo"), &dlq_sub_arn).await;
    let sns_template = topic.replace("Order.fifo", "{aggregatetype}.fifo");
    let mut relay = start_relay(&args, "sns", SLOTS[1], &sns_template, &dlq_topic);
    let wall = relay.wait_published(args.backlog.events, "sns");
    let ProcessUsage {
        cpu_seconds: cpu,
        peak_rss_kb,
        ..
    } = usage(relay.child.id());
    relay.wait_published(args.backlog.events + sqs_steady, "sns");
    eprintln!("bench-aws: SNS drain {wall:.2}s, reading the subscribed queue back");
    let got = receive_all(
        &sdk,
        &sub_url,
        args.receivers,
        args.backlog.events + sqs_steady,
        None,
    )
    .await;
    let check = verify_backlog(&got, args.backlog.events);
    eprintln!("bench-aws: SNS drain check: {check}");
    // After the read-back: the connector's request counter is exported once a second.
    let per_request = relay.events_per_request();
    drains.push(Drain {
        name: "outbox-relay → SNS FIFO (→ SQS FIFO, raw)".into(),
        wall,
        cpu,
        peak_rss_kb,
        per_request,
        check,
    });
    let lat = steady(&args, &sdk, &relay, &sub_url, "SNS FIFO", sqs_steady).await;
    latencies.push(lat);
    relay.stop();
    drop_slot(&client, SLOTS[1]).await;
    cleanup_pg(&client).await;

    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let sns = aws_sdk_sns::Client::new(&sdk);
    for url in [&ceil_q, &sqs_url, &sqs_dlq, &sub_url] {
        let _ = sqs.delete_queue().queue_url(url.as_str()).send().await;
    }
    for arn in [&ceil_topic, &topic, &dlq_topic] {
        let _ = sns.delete_topic().topic_arn(arn.as_str()).send().await;
    }

    // Report.
    let n = args.backlog.events as f64;
    println!("| run | events/s | % of the client's ceiling | wall s | CPU s | CPU s per 1M events | peak RSS MiB | events per request | received back |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    println!(
        "| plain client → SQS FIFO (SendMessageBatch) | {sqs_ceiling:.0} | 100% | {:.2} | | | | 10 | |",
        n / sqs_ceiling
    );
    println!(
        "| plain client → SNS FIFO (PublishBatch, → SQS FIFO) | {sns_ceiling:.0} | 100% | {:.2} | | | | 10 | |",
        n / sns_ceiling
    );
    for (d, ceiling) in drains.iter().zip([sqs_ceiling, sns_ceiling]) {
        let rate = n / d.wall;
        println!(
            "| {} | {:.0} | {:.0}% | {:.2} | {:.2} | {:.1} | {:.1} | {:.2} | {} |",
            d.name,
            rate,
            100.0 * rate / ceiling,
            d.wall,
            d.cpu,
            d.cpu * 1e6 / n,
            d.peak_rss_kb as f64 / 1024.0,
            d.per_request,
            d.check
        );
    }
    println!();
    println!("| steady state | events | achieved/s | commit→ack p50 ≤ (relay histogram) | commit→ack p99 ≤ | batch→ack p50 ≤ | batch→ack p99 ≤ | events per request | commit→receive p50 ms | p99 ms | max ms | received back |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for l in &latencies {
        println!(
            "| {} at {}/s, {} s | {} | {:.0} | {} ms | {} ms | {} ms | {} ms | {:.2} | {:.1} | {:.1} | {:.1} | {} |",
            l.name,
            args.rate,
            args.steady_secs,
            l.events,
            l.achieved_rate,
            fmt_bound(l.hist_p50),
            fmt_bound(l.hist_p99),
            fmt_bound(l.batch_p50),
            fmt_bound(l.batch_p99),
            l.per_request,
            l.recv_p50,
            l.recv_p99,
            l.recv_max,
            l.check
        );
    }
    println!(
        "\n{} events, {} aggregates, {} rows per transaction, average payload {avg_payload:.0} bytes, max_concurrency {}, {} receivers",
        args.backlog.events, args.backlog.aggregates, args.backlog.txn_rows, args.concurrency, args.receivers
    );
}

fn fmt_bound(seconds: f64) -> String {
    if seconds.is_infinite() {
        "+Inf".into()
    } else {
        format!("{}", seconds * 1000.0)
    }
}

async fn ceiling_sqs(sdk: &aws_config::SdkConfig, url: &str, args: &Args, body: &str) -> f64 {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let batches = args.backlog.events.div_ceil(10);
    let started = Instant::now();
    futures::stream::iter(0..batches)
        .map(|b| {
            let sqs = sqs.clone();
            async move {
                let mut req = sqs.send_message_batch().queue_url(url);
                for i in b * 10..((b + 1) * 10).min(args.backlog.events) {
                    let agg = format!("order-{}", i % args.backlog.aggregates);
                    let attr = |v: &str| {
                        SqsAttr::builder()
                            .data_type("String")
                            .string_value(v)
                            .build()
                            .unwrap()
                    };
                    req = req.entries(
                        SendMessageBatchRequestEntry::builder()
                            .id(format!("e{i}"))
                            .message_body(body)
                            .message_group_id(&agg)
                            .message_deduplication_id(format!("c{i}"))
                            .message_attributes("id", attr(&format!("c{i}")))
                            .message_attributes("type", attr("OrderCreated"))
                            .message_attributes("aggregatetype", attr("Order"))
                            .message_attributes("aggregateid", attr(&agg))
                            .build()
                            .unwrap(),
                    );
                }
                let resp = req.send().await.expect("SendMessageBatch");
                assert!(resp.failed.is_empty(), "{:?}", resp.failed);
            }
        })
        .buffer_unordered(args.concurrency)
        .collect::<Vec<()>>()
        .await;
    args.backlog.events as f64 / started.elapsed().as_secs_f64()
}

async fn ceiling_sns(sdk: &aws_config::SdkConfig, arn: &str, args: &Args, body: &str) -> f64 {
    let sns = aws_sdk_sns::Client::new(sdk);
    let batches = args.backlog.events.div_ceil(10);
    let started = Instant::now();
    futures::stream::iter(0..batches)
        .map(|b| {
            let sns = sns.clone();
            async move {
                let mut req = sns.publish_batch().topic_arn(arn);
                for i in b * 10..((b + 1) * 10).min(args.backlog.events) {
                    let agg = format!("order-{}", i % args.backlog.aggregates);
                    let attr = |v: &str| {
                        SnsAttr::builder()
                            .data_type("String")
                            .string_value(v)
                            .build()
                            .unwrap()
                    };
                    req = req.publish_batch_request_entries(
                        SnsEntry::builder()
                            .id(format!("e{i}"))
                            .message(body)
                            .message_group_id(&agg)
                            .message_deduplication_id(format!("c{i}"))
                            .message_attributes("id", attr(&format!("c{i}")))
                            .message_attributes("type", attr("OrderCreated"))
                            .message_attributes("aggregatetype", attr("Order"))
                            .message_attributes("aggregateid", attr(&agg))
                            .build()
                            .unwrap(),
                    );
                }
                let resp = req.send().await.expect("PublishBatch");
                assert!(
                    resp.failed.as_ref().is_none_or(|f| f.is_empty()),
                    "{:?}",
                    resp.failed
                );
            }
        })
        .buffer_unordered(args.concurrency)
        .collect::<Vec<()>>()
        .await;
    args.backlog.events as f64 / started.elapsed().as_secs_f64()
}

fn start_relay(args: &Args, service: &str, slot: &str, template: &str, dlq: &str) -> RelayProc {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "source:\n  host: {}\n  port: {}\n  database: {}\n  user: {}\n  password: {}\n  sslmode: disable\n  slot: {slot}\n  publication: {PUBLICATION}\n  create_slot: false\n  create_publication: false\n  heartbeat_interval_ms: 0\noutbox:\n  tables:\n    - table: public.{TABLE}\n  route:\n    template: \"{template}\"\n  dead_letter_destination: \"{dlq}\"\nsink:\n  kind: {service}\n  {service}:\n    region: {}\n    endpoint: {}\n    fifo: true\n    max_concurrency: {}\ntelemetry:\n  listen: 127.0.0.1:{port}\n  log_level: warn\n",
        env::pg_host(), env::pg_port(), env::pg_database(), env::pg_user(), env::pg_password(),
        aws::REGION, aws::endpoint(), args.concurrency,
    );
    let path = std::env::temp_dir().join(format!("bench-aws-{service}.yaml"));
    std::fs::write(&path, config).unwrap();
    let started = Instant::now();
    let child = Command::new(&args.relay_bin)
        .arg("--config")
        .arg(&path)
        .arg("run")
        .envs(aws::relay_env())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn relay");
    RelayProc {
        child,
        port,
        started,
    }
}

/// Receives (and deletes) messages with `receivers` concurrent long-polling clients until
/// `want` arrived, 10 s pass without any, or `stop` is set and 3 s pass without any. Each
/// message is recorded (receive time in µs since the epoch, body) under one lock before it
/// is deleted, so the recorded order respects FIFO group order.
async fn receive_all(
    sdk: &aws_config::SdkConfig,
    url: &str,
    receivers: usize,
    want: usize,
    stop: Option<Arc<AtomicBool>>,
) -> Vec<(i64, String)> {
    let out: Arc<Mutex<Vec<(i64, String)>>> = Arc::new(Mutex::new(Vec::with_capacity(want)));
    let count = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(Mutex::new(Instant::now()));
    let mut tasks = Vec::new();
    for _ in 0..receivers {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let (out, count, last, stop) = (out.clone(), count.clone(), last.clone(), stop.clone());
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                if count.load(Ordering::Relaxed) >= want {
                    break;
                }
                let idle = last.lock().unwrap().elapsed();
                let stopping = stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed));
                if idle > Duration::from_secs(10) || (stopping && idle > Duration::from_secs(3)) {
                    break;
                }
                let resp = sqs
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .visibility_timeout(120)
                    .send()
                    .await
                    .expect("ReceiveMessage");
                let at = now_us();
                let messages = resp.messages.unwrap_or_default();
                if messages.is_empty() {
                    continue;
                }
                *last.lock().unwrap() = Instant::now();
                let mut entries = Vec::new();
                {
                    let mut out = out.lock().unwrap();
                    for (i, m) in messages.into_iter().enumerate() {
                        out.push((at, m.body.unwrap_or_default()));
                        entries.push(
                            DeleteMessageBatchRequestEntry::builder()
                                .id(format!("d{i}"))
                                .receipt_handle(m.receipt_handle.unwrap())
                                .build()
                                .unwrap(),
                        );
                    }
                    count.fetch_add(entries.len(), Ordering::Relaxed);
                }
                sqs.delete_message_batch()
                    .queue_url(&url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .expect("DeleteMessageBatch");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(out).unwrap().into_inner().unwrap()
}

/// Backlog bodies carry `orderId` and `seq` (0..n, increasing per aggregate in commit
/// order): every seq exactly once, per-aggregate order kept. Other bodies are ignored.
fn verify_backlog(got: &[(i64, String)], n: usize) -> String {
    let mut seen = vec![0u32; n];
    let mut last: HashMap<String, i64> = HashMap::new();
    let (mut disorder, mut foreign, mut unparsed) = (0, 0, 0);
    for (_, body) in got {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
            unparsed += 1;
            continue;
        };
        let (Some(order), Some(seq)) = (v["orderId"].as_str(), v["seq"].as_i64()) else {
            foreign += 1;
            continue;
        };
        if (seq as usize) < n {
            seen[seq as usize] += 1;
        }
        let prev = last.insert(order.to_string(), seq);
        if prev.is_some_and(|p| p >= seq) {
            disorder += 1;
        }
    }
    let missing = seen.iter().filter(|&&c| c == 0).count();
    let dups: u32 = seen.iter().map(|&c| c.saturating_sub(1)).sum();
    let verdict = if missing == 0 && dups == 0 && disorder == 0 && unparsed == 0 {
        "all, once, in order"
    } else {
        "PROBLEMS"
    };
    format!("{verdict} ({} of {n}: {missing} missing, {dups} duplicates, {disorder} out of order, {unparsed} unparsable, {foreign} others)", n - missing)
}

/// Single-row transactions at `args.rate` for `args.steady_secs` from [`STEADY_WRITERS`]
/// connections (disjoint aggregates per writer), each payload carrying its
/// `clock_timestamp()` in µs; read back from `queue` concurrently. `seq_base` keeps the
/// seqs unique across runs.
async fn steady(
    args: &Args,
    sdk: &aws_config::SdkConfig,
    relay: &RelayProc,
    queue: &str,
    name: &str,
    seq_base: usize,
) -> Latency {
    let total = args.rate * args.steady_secs as usize;
    let before = relay.metrics();
    let published_before = relay.published();
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = {
        let sdk = sdk.clone();
        let queue = queue.to_string();
        let stop = stop.clone();
        let receivers = args.receivers;
        tokio::spawn(async move { receive_all(&sdk, &queue, receivers, total, Some(stop)).await })
    };
    eprintln!(
        "bench-aws: {name} steady state, {}/s for {} s",
        args.rate, args.steady_secs
    );
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..STEADY_WRITERS {
        let per_writer = args.rate as f64 / STEADY_WRITERS as f64;
        let aggs = args.backlog.aggregates;
        writers.push(tokio::spawn(async move {
            let c = pg::connect().await;
            // The project's cluster runs synchronous_commit=off: a commit would reach the
            // walsender only at the WAL writer's next flush (wal_writer_delay, 200 ms),
            // adding ≈ 100 ms on average to every latency (as in compare).
            c.batch_execute("SET synchronous_commit = on")
                .await
                .expect("synchronous_commit");
            let stmt = c
                .prepare(&format!(
                    "INSERT INTO {TABLE} (aggregatetype, aggregateid, type, payload) VALUES ('Order', $1::text, 'Steady',
                       jsonb_build_object('steadyId', $1::text, 'steadySeq', $2::bigint,
                         'ts', (extract(epoch from clock_timestamp()) * 1000000)::bigint, 'pad', repeat('x', 380)))"
                ))
                .await
                .unwrap();
            let mut k = 0usize;
            loop {
                let seq = seq_base + w + k * STEADY_WRITERS;
                if seq >= seq_base + total {
                    break;
                }
                let due = started + Duration::from_secs_f64(k as f64 / per_writer);
                tokio::time::sleep_until(due.into()).await;
                // seq % aggs with aggs a multiple of the writer count keeps each aggregate
                // on one writer, so per-aggregate seq order is commit order.
                let agg = format!("steady-{}", (w + (k * STEADY_WRITERS)) % aggs);
                c.execute(&stmt, &[&agg, &(seq as i64)]).await.unwrap();
                k += 1;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let write_secs = started.elapsed().as_secs_f64();
    let relay_wait = Instant::now();
    while relay.published() < published_before + total
        && relay_wait.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = relay.metrics();
    stop.store(true, Ordering::Relaxed);
    let got = receiver.await.unwrap();

    // Relay histogram deltas: commit → ack per event, batch → ack per batch; requests.
    let e2e = "outbox_relay_end_to_end_latency_seconds";
    let batch = "outbox_relay_publish_duration_seconds";
    let requests = metric_sum(&after, "outbox_relay_sink_requests_total", &[])
        - metric_sum(&before, "outbox_relay_sink_requests_total", &[]);

    // Receive-side latency and checks.
    let mut lats = Vec::new();
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut seen: HashMap<i64, u32> = HashMap::new();
    let mut disorder = 0;
    for (at, body) in &got {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
            continue;
        };
        let (Some(id), Some(seq), Some(ts)) = (
            v["steadyId"].as_str(),
            v["steadySeq"].as_i64(),
            v["ts"].as_i64(),
        ) else {
            continue;
        };
        if (seq as usize) < seq_base {
            continue;
        }
        *seen.entry(seq).or_default() += 1;
        if last.insert(id.to_string(), seq).is_some_and(|p| p >= seq) {
            disorder += 1;
        }
        lats.push((at - ts) as f64 / 1000.0);
    }
    lats.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |q: f64| {
        if lats.is_empty() {
            f64::NAN
        } else {
            lats[((q * lats.len() as f64).ceil() as usize).clamp(1, lats.len()) - 1]
        }
    };
    let missing = total - seen.len();
    let dups: u32 = seen.values().map(|c| c - 1).sum();
    let verdict = if missing == 0 && dups == 0 && disorder == 0 {
        "all, once, in order"
    } else {
        "PROBLEMS"
    };
    let check = format!(
        "{verdict} ({} of {total}: {missing} missing, {dups} duplicates, {disorder} out of order)",
        seen.len()
    );
    let l = Latency {
        name: name.into(),
        events: total,
        achieved_rate: total as f64 / write_secs,
        hist_p50: hist_quantile(&before, &after, e2e, 0.5),
        hist_p99: hist_quantile(&before, &after, e2e, 0.99),
        batch_p50: hist_quantile(&before, &after, batch, 0.5),
        batch_p99: hist_quantile(&before, &after, batch, 0.99),
        per_request: total as f64 / requests,
        recv_p50: pct(0.5),
        recv_p99: pct(0.99),
        recv_max: lats.last().copied().unwrap_or(f64::NAN),
        check,
    };
    eprintln!(
        "bench-aws: {name}: {:.0}/s, histogram p50 ≤ {} p99 ≤ {} (batch→ack p50 ≤ {} p99 ≤ {}, {:.2} events/request), receive p50 {:.1} p99 {:.1} max {:.1} ms, {}",
        l.achieved_rate,
        fmt_bound(l.hist_p50),
        fmt_bound(l.hist_p99),
        fmt_bound(l.batch_p50),
        fmt_bound(l.batch_p99),
        l.per_request,
        l.recv_p50,
        l.recv_p99,
        l.recv_max,
        l.check
    );
    l
}

/// Cumulative bucket counts of histogram `metric`, summed over label sets, by upper bound.
fn buckets(text: &str, metric: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{metric}_bucket{{");
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = l.strip_prefix(prefix.as_str()) else {
            continue;
        };
        let Some(le_at) = rest.find("le=\"") else {
            continue;
        };
        let le_str = &rest[le_at + 4..];
        let le_str = &le_str[..le_str.find('"').unwrap()];
        let le: f64 = if le_str == "+Inf" {
            f64::INFINITY
        } else {
            le_str.parse().unwrap()
        };
        let count: f64 = l.rsplit_once(' ').unwrap().1.parse().unwrap();
        match by_le.iter_mut().find(|(x, _)| *x == le) {
            Some(e) => e.1 += count,
            None => by_le.push((le, count)),
        }
    }
    by_le.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    by_le
}

/// The upper bound of the bucket holding quantile `q` of the observations `metric` gained
/// between the scrapes `before` and `after`.
fn hist_quantile(before: &str, after: &str, metric: &str, q: f64) -> f64 {
    let b0 = buckets(before, metric);
    let delta: Vec<(f64, f64)> = buckets(after, metric)
        .into_iter()
        .map(|(le, c)| {
            let c0 = b0
                .iter()
                .find(|(l, _)| *l == le)
                .map(|(_, c)| *c)
                .unwrap_or(0.0);
            (le, c - c0)
        })
        .collect();
    let n = delta.last().map(|(_, c)| *c).unwrap_or(0.0);
    delta
        .iter()
        .find(|(_, c)| *c >= q * n)
        .map(|(le, _)| *le)
        .unwrap_or(f64::NAN)
}

async fn drop_slot(client: &tokio_postgres::Client, slot: &str) {
    for _ in 0..50 {
        if client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .is_ok()
        {
            return;
        }
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .unwrap()
            .is_some();
        if !exists {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn cleanup_pg(client: &tokio_postgres::Client) {
    for slot in SLOTS {
        drop_slot(client, slot).await;
    }
    client
        .batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {PUBLICATION}; DROP TABLE IF EXISTS {TABLE};
             DROP PROCEDURE IF EXISTS bench_aws_fill(int, int, int)"
        ))
        .await
        .expect("cleanup");
}

fn usage(pid: u32) -> ProcessUsage {
    ProcessUsage::of(pid).unwrap_or_else(|e| panic!("/proc/{pid}: {e}"))
}
