//! Relay vs Debezium, side by side on one machine (docs/benchmarks.md, "Relay vs Debezium").
//!
//! 1. Drain: a backlog of outbox events (bench.rs's table shape and fill procedure) written
//!    after every reader's slot exists, then drained one reader after another:
//!    `pg_recvlogical` (pgoutput to /dev/null), the relay (Kafka sink) and Debezium's
//!    PostgreSQL connector with the Outbox Event Router in Kafka Connect standalone.
//!    events/s, CPU seconds per million events and peak RSS of each process.
//! 2. Steady state: paced single-row autocommit writers at fixed rates, one system after
//!    the other, each from a fresh slot; end-to-end latency per event = broker append time
//!    (topics created with `message.timestamp.type=LogAppendTime`) − `clock_timestamp()`
//!    written into the payload by the INSERT.
//! 3. Every Kafka output is checked: every committed id and sequence number present, and
//!    per aggregate in commit order. A run that loses or reorders events is FAILED.
//!
//! Run it with `tests/compare.sh`, which fetches Debezium, builds the relay in release
//! mode and starts the services.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use outbox_relay_tests::backlog::BacklogArgs;
use outbox_relay_tests::process::ProcessUsage;
use outbox_relay_tests::relay::{http_get, metric_sum};
use outbox_relay_tests::{backlog, env, pg};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    backlog: BacklogArgs,
    /// Steady-state rates, events/s.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    rates: Vec<u32>,
    /// Seconds of writing per steady-state rate.
    #[arg(long, default_value_t = 60)]
    steady_secs: u64,
    /// Writer connections in the steady state (each owns a share of the aggregates).
    #[arg(long, default_value_t = 4)]
    writers: usize,
    #[arg(long)]
    skip_drain: bool,
    #[arg(long)]
    skip_steady: bool,
    /// logical_decoding_work_mem for the run's walsenders (PostgreSQL's default; the
    /// project cluster's own 64kB makes the backlog spill to disk).
    #[arg(long, default_value = "64MB")]
    logical_decoding_work_mem: String,
    /// Systems in the steady state (`relay`, `debezium`).
    #[arg(long, value_delimiter = ',', default_value = "relay,debezium")]
    steady_systems: Vec<String>,
    /// The relay binary (release build).
    #[arg(long)]
    relay_bin: PathBuf,
    /// Extra librdkafka properties for the relay (`key=value`, repeatable), e.g. linger.ms=0.
    #[arg(long = "relay-kafka-property")]
    relay_kafka_properties: Vec<String>,
    /// Directory with Kafka Connect + Debezium jars.
    #[arg(long)]
    debezium_libs: PathBuf,
    /// tests/debezium: worker.properties, connector.properties, connect-log4j2.xml.
    #[arg(long)]
    debezium_dir: PathBuf,
    #[arg(long, default_value = "unknown")]
    debezium_version: String,
    #[arg(long, default_value = "java")]
    java: String,
    #[arg(long, default_value = "1g")]
    jvm_heap: String,
    /// Debezium's `poll.interval.ms` (its default is 500).
    #[arg(long, default_value_t = 500)]
    debezium_poll_interval_ms: u64,
    /// Debezium's `max.batch.size` (its default is 2048).
    #[arg(long, default_value_t = 2048)]
    debezium_max_batch_size: u64,
    /// Debezium's `max.queue.size` (its default is 8192).
    #[arg(long, default_value_t = 8192)]
    debezium_max_queue_size: u64,
    /// Kafka broker version.
    #[arg(long, default_value = "unknown")]
    kafka_version: String,
    /// connect-runtime version Debezium runs in.
    #[arg(long, default_value = "unknown")]
    connect_version: String,
    #[arg(long, default_value = "unknown")]
    relay_commit: String,
    /// The command line to print in the report.
    #[arg(long, default_value = "tests/compare.sh")]
    command: String,
    /// Write the report into this markdown file, section `## Relay vs Debezium`.
    #[arg(long)]
    doc: Option<PathBuf>,
}

/// Resource use of one reader process over one measured run.
#[derive(Debug, Default, Clone)]
struct Usage {
    wall: f64,
    cpu: f64,
    peak_rss_kb: u64,
    /// Process start → first event in Kafka (Kafka readers only).
    first_event: Option<f64>,
}

/// What a Kafka output check found.
#[derive(Debug, Default, Clone)]
struct Check {
    records: usize,
    missing: usize,
    missing_ids: usize,
    duplicates: usize,
    reordered: usize,
    wrong_key: usize,
    /// Payloads whose bytes differ from the relay's for the same event (drain only).
    payload_diff: Option<usize>,
    latencies_ms: Vec<i64>,
}

impl Check {
    fn ok(&self) -> bool {
        self.missing == 0 && self.missing_ids == 0 && self.reordered == 0 && self.wrong_key == 0
    }
    fn verdict(&self) -> String {
        if self.ok() {
            let mut s = "ok".to_string();
            if self.duplicates > 0 {
                write!(s, " ({} duplicates)", self.duplicates).unwrap();
            }
            s
        } else {
            format!(
                "FAILED: {} missing seqs, {} missing ids, {} reordered, {} wrong key, {} duplicates",
                self.missing, self.missing_ids, self.reordered, self.wrong_key, self.duplicates
            )
        }
    }
}

#[derive(Debug, Clone)]
struct SteadyResult {
    rate: u32,
    achieved: f64,
    written: usize,
    check: Check,
    cpu_pct: f64,
    peak_rss_kb: u64,
    /// The relay's own histograms over the run (p50 / p99 bucket bounds, ms):
    /// commit → broker ack, and batch handed to the producer → acked.
    relay_histograms: Option<String>,
    /// The broker's stop-the-world pauses while the run was measured.
    broker_pauses: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Relay,
    Debezium,
}

impl System {
    fn label(self) -> &'static str {
        match self {
            System::Relay => "outbox-relay",
            System::Debezium => "Debezium",
        }
    }
}

const PARTITIONS: i32 = 3;

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    let run = format!(
        "cmp_{}_{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    );
    let topic_base = run.replace('_', "-");
    eprintln!("compare: run {run}");
    let client = pg::connect().await;
    let pg_version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);

    // The project's cluster keeps logical_decoding_work_mem at 64kB so that the tests
    // exercise spilling; at that size nearly every 100-row backlog transaction spills to
    // disk in the walsender, a cost every reader pays alike and no production server has.
    // The walsenders of this run (this role's sessions) get PostgreSQL's default.
    client
        .batch_execute(&format!(
            "ALTER ROLE CURRENT_USER SET logical_decoding_work_mem = '{}'",
            args.logical_decoding_work_mem
        ))
        .await
        .expect("ALTER ROLE … SET logical_decoding_work_mem");

    let mut drain: Option<DrainReport> = None;
    if !args.skip_drain {
        drain = Some(drain_phase(&args, &client, &run, &topic_base).await);
    }
    let mut steady: Vec<(System, SteadyResult)> = Vec::new();
    if !args.skip_steady {
        steady = steady_phase(&args, &client, &run, &topic_base).await;
    }

    client
        .batch_execute("ALTER ROLE CURRENT_USER RESET logical_decoding_work_mem")
        .await
        .expect("ALTER ROLE … RESET logical_decoding_work_mem");
    let report = render_report(&args, &pg_version, drain.as_ref(), &steady);
    println!("{report}");
    if let Some(doc) = &args.doc {
        write_section(doc, &report);
        eprintln!(
            "compare: wrote section \"## Relay vs Debezium\" of {}",
            doc.display()
        );
    }
    let failed = drain
        .as_ref()
        .is_some_and(|d| !d.relay.1.ok() || !d.dbz.1.ok())
        || steady.iter().any(|(_, r)| !r.check.ok());
    if failed {
        eprintln!("compare: FAILED: an output lost or reordered events (see the table)");
        std::process::exit(1);
    }
}

// ------------------------------------------------------------------------------ drain

struct DrainReport {
    avg_payload: f64,
    recvlogical: Usage,
    relay: (Usage, Check),
    dbz: (Usage, Check),
}

async fn drain_phase(
    args: &Args,
    client: &tokio_postgres::Client,
    run: &str,
    topic_base: &str,
) -> DrainReport {
    let table = format!("{run}_drain");
    let publication = table.clone();
    let slots = [
        format!("{run}_recvlogical"),
        format!("{run}_relay"),
        format!("{run}_dbz"),
    ];
    let relay_prefix = format!("{topic_base}-drain-relay");
    let dbz_prefix = format!("{topic_base}-drain-dbz");
    create_topics(&[
        format!("{relay_prefix}.Order"),
        format!("{dbz_prefix}.Order"),
    ])
    .await;
    pg::create_outbox_table(client, &table, "jsonb", false).await;
    client
        .batch_execute(&format!(
            "CREATE PUBLICATION {publication} FOR TABLE {table} WITH (publish = 'insert');"
        ))
        .await
        .expect("drain schema");
    backlog::define_fill(client, &format!("{run}_fill"), &table).await;
    let slot_names: Vec<&str> = slots.iter().map(String::as_str).collect();
    backlog::create_slots(client, &slot_names).await;
    let t = Instant::now();
    args.backlog
        .write(client, &format!("{run}_fill"), "compare")
        .await;
    let end_lsn: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let avg_payload: f64 = client
        .query_one(
            &format!("SELECT avg(octet_length(payload::text))::float8 FROM {table}"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    eprintln!(
        "compare: backlog written in {:.1}s, end LSN {end_lsn}, average payload {avg_payload:.0} bytes",
        t.elapsed().as_secs_f64()
    );
    let ids: HashSet<String> = client
        .query(&format!("SELECT id::text FROM {table}"), &[])
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();

    let recv = recvlogical(&slots[0], &publication, &end_lsn);
    eprintln!("compare: pg_recvlogical {recv:?}");

    let mut relay = start_relay(args, &slots[1], &publication, &table, &relay_prefix);
    let relay_usage = wait_drained(
        &mut relay,
        args.backlog.events,
        &format!("{relay_prefix}.Order"),
    );
    relay.stop();
    eprintln!("compare: relay {relay_usage:?}");

    let mut dbz = start_debezium(args, "drain", &slots[2], &publication, &table, &dbz_prefix);
    let dbz_usage = wait_drained(
        &mut dbz,
        args.backlog.events,
        &format!("{dbz_prefix}.Order"),
    );
    dbz.stop();
    eprintln!("compare: Debezium {dbz_usage:?}");

    eprintln!("compare: checking the relay's output");
    let (relay_check, relay_payloads) =
        check_drain(&format!("{relay_prefix}.Order"), args, &ids, None);
    eprintln!("compare: relay {}", relay_check.verdict());
    eprintln!("compare: checking Debezium's output");
    let (dbz_check, _) = check_drain(
        &format!("{dbz_prefix}.Order"),
        args,
        &ids,
        Some(&relay_payloads),
    );
    eprintln!("compare: Debezium {}", dbz_check.verdict());

    for slot in &slots {
        pg::cleanup(client, slot, &publication, &[]).await;
    }
    let _ = client
        .batch_execute(&format!(
            "DROP PROCEDURE IF EXISTS {run}_fill; DROP TABLE IF EXISTS {table}"
        ))
        .await;
    delete_topics(&[
        format!("{relay_prefix}.Order"),
        format!("{dbz_prefix}.Order"),
        debezium_message_topic(&slots[2]),
    ])
    .await;
    DrainReport {
        avg_payload,
        recvlogical: recv,
        relay: (relay_usage, relay_check),
        dbz: (dbz_usage, dbz_check),
    }
}

/// Reads a drain topic and checks it against the committed backlog: seq 0..events-1 each
/// once, key `order-<seq % aggregates>`, per key increasing seq, every committed id.
/// Returns the payload hash per seq (to compare bytes between systems).
fn check_drain(
    topic: &str,
    args: &Args,
    ids: &HashSet<String>,
    compare_to: Option<&Vec<u64>>,
) -> (Check, Vec<u64>) {
    let mut check = Check::default();
    let mut seen = vec![false; args.backlog.events];
    let mut hashes = vec![0u64; args.backlog.events];
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut seen_ids: HashSet<String> = HashSet::with_capacity(args.backlog.events);
    let mut payload_diff = 0usize;
    read_topic(topic, |key, payload, id, _ts| {
        check.records += 1;
        let Some(seq) = json_int(payload, "\"seq\":") else {
            check.wrong_key += 1;
            return;
        };
        if seq < 0 || seq as usize >= args.backlog.events {
            check.wrong_key += 1;
            return;
        }
        let s = seq as usize;
        if key != format!("order-{}", s % args.backlog.aggregates).as_bytes() {
            check.wrong_key += 1;
        }
        if seen[s] {
            check.duplicates += 1;
        } else {
            seen[s] = true;
            hashes[s] = fnv(payload);
            if let Some(other) = compare_to {
                if other[s] != hashes[s] {
                    payload_diff += 1;
                }
            }
            let k = String::from_utf8_lossy(key).into_owned();
            let e = last.entry(k).or_insert(-1);
            if seq < *e {
                check.reordered += 1;
            } else {
                *e = seq;
            }
        }
        if let Some(id) = id {
            seen_ids.insert(String::from_utf8_lossy(id).into_owned());
        }
    });
    check.missing = seen.iter().filter(|s| !**s).count();
    check.missing_ids = ids.iter().filter(|id| !seen_ids.contains(*id)).count();
    if compare_to.is_some() {
        check.payload_diff = Some(payload_diff);
    }
    (check, hashes)
}

/// `pg_recvlogical` to /dev/null until the end of the backlog, under GNU time.
fn recvlogical(slot: &str, publication: &str, end_lsn: &str) -> Usage {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .expect("postgresql installed")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin/pg_recvlogical"))
        .filter(|p| p.exists())
        .max()
        .expect("pg_recvlogical");
    let out = std::env::temp_dir().join(format!("compare-recvlogical-{}.time", std::process::id()));
    let started = Instant::now();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%e %U %S %M", "-o"])
        .arg(&out)
        .arg(bin)
        .args([
            "-h",
            &env::pg_host(),
            "-p",
            &env::pg_port().to_string(),
            "-U",
            &env::pg_user(),
            "-d",
            &env::pg_database(),
        ])
        .args([
            "--slot",
            slot,
            "--start",
            "--endpos",
            end_lsn,
            "--no-loop",
            "-f",
            "/dev/null",
        ])
        .args([
            "-o",
            "proto_version=1",
            "-o",
            &format!("publication_names={publication}"),
        ])
        .env("PGPASSWORD", env::pg_password())
        .status()
        .expect("run pg_recvlogical");
    let wall = started.elapsed().as_secs_f64();
    assert!(status.success(), "pg_recvlogical failed: {status}");
    let text = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    Usage {
        wall,
        cpu: f[1] + f[2],
        peak_rss_kb: f[3] as u64,
        first_event: None,
    }
}

/// Waits until `topic` holds `events` records (the relay: until its metrics say so),
/// measured from process start.
fn wait_drained(p: &mut Proc, events: usize, topic: &str) -> Usage {
    let counter = watermark_consumer();
    let mut first_event = None;
    let wall = loop {
        let n = match p.metrics_port {
            Some(port) => http_get(port, "/metrics")
                .map(|(_, body)| {
                    metric_sum(
                        &body,
                        "outbox_relay_events_published_total",
                        &["result=\"ok\""],
                    ) as usize
                })
                .unwrap_or(0),
            None => topic_count(&counter, topic) as usize,
        };
        if n > 0 && first_event.is_none() {
            first_event = Some(p.started.elapsed().as_secs_f64());
        }
        if n >= events {
            break p.started.elapsed().as_secs_f64();
        }
        p.assert_alive();
        assert!(
            p.started.elapsed() < Duration::from_secs(3600),
            "{} did not finish draining",
            p.name
        );
        std::thread::sleep(Duration::from_millis(if p.metrics_port.is_some() {
            20
        } else {
            50
        }));
    };
    let ProcessUsage {
        cpu_seconds: cpu,
        peak_rss_kb,
        ..
    } = usage(p.pid());
    Usage {
        wall,
        cpu,
        peak_rss_kb,
        first_event,
    }
}

// ------------------------------------------------------------------------- steady state

async fn steady_phase(
    args: &Arc<Args>,
    client: &tokio_postgres::Client,
    run: &str,
    topic_base: &str,
) -> Vec<(System, SteadyResult)> {
    let table = format!("{run}_steady");
    let publication = table.clone();
    pg::create_outbox_table(client, &table, "jsonb", false).await;
    client
        .batch_execute(&format!(
            "CREATE PUBLICATION {publication} FOR TABLE {table} WITH (publish = 'insert')"
        ))
        .await
        .expect("steady publication");
    let mut results = Vec::new();
    for system in [System::Relay, System::Debezium] {
        let tag = match system {
            System::Relay => "relay",
            System::Debezium => "debezium",
        };
        if !args.steady_systems.iter().any(|s| s == tag) {
            continue;
        }
        for &rate in &args.rates {
            let tag = match system {
                System::Relay => "relay",
                System::Debezium => "dbz",
            };
            let slot = format!("{run}_s{rate}_{tag}");
            let prefix = format!("{topic_base}-s{rate}-{tag}");
            let topic = format!("{prefix}.Order");
            create_topics(std::slice::from_ref(&topic)).await;
            client
                .execute(
                    "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                    &[&slot],
                )
                .await
                .expect("create slot");
            let mut p = match system {
                System::Relay => start_relay(args, &slot, &publication, &table, &prefix),
                System::Debezium => start_debezium(
                    args,
                    &format!("s{rate}"),
                    &slot,
                    &publication,
                    &table,
                    &prefix,
                ),
            };
            // Probes until one arrives: the reader is streaming. Probes use aggregate
            // `probe` and seq -1, and are left out of the measurement.
            let counter = watermark_consumer();
            let ready = Instant::now();
            loop {
                client
                    .execute(
                        &format!("INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'probe', 'Probe', '{{\"seq\":-1,\"ts\":0}}')"),
                        &[],
                    )
                    .await
                    .expect("probe");
                tokio::time::sleep(Duration::from_millis(500)).await;
                if topic_count(&counter, &topic) > 0 {
                    break;
                }
                p.assert_alive();
                assert!(
                    ready.elapsed() < Duration::from_secs(180),
                    "{} not streaming after 180 s",
                    p.name
                );
            }
            let probes = topic_count(&counter, &topic);
            eprintln!(
                "compare: {} streaming after {:.1}s; writing {rate} events/s for {}s",
                system.label(),
                p.started.elapsed().as_secs_f64(),
                args.steady_secs
            );
            let ProcessUsage {
                cpu_seconds: cpu0,
                peak_rss_kb: _,
                ..
            } = usage(p.pid());
            let gc_from = gc_log_len();
            let t0 = Instant::now();
            let (written, elapsed) = write_paced(args.clone(), table.clone(), rate).await;
            let achieved = written.iter().sum::<usize>() as f64 / elapsed;
            let total: usize = written.iter().sum();
            // Let the reader catch up.
            let wait = Instant::now();
            while (topic_count(&counter, &topic) - probes) < total as i64
                && wait.elapsed() < Duration::from_secs(300)
            {
                p.assert_alive();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let ProcessUsage {
                cpu_seconds: cpu1,
                peak_rss_kb,
                ..
            } = usage(p.pid());
            let busy = t0.elapsed().as_secs_f64();
            let broker_pauses = broker_pauses(gc_from);
            let relay_histograms = p.metrics_port.and_then(|port| {
                let (_, body) = http_get(port, "/metrics")?;
                let q = |name: &str| {
                    format!(
                        "{} / {}",
                        bucket_quantile(&body, name, 0.5),
                        bucket_quantile(&body, name, 0.99)
                    )
                };
                Some(format!(
                    "commit→ack {} ms; batch→ack {} ms",
                    q("outbox_relay_end_to_end_latency_seconds"),
                    q("outbox_relay_publish_duration_seconds")
                ))
            });
            p.stop();
            let check = check_steady(&topic, args.writers, &written);
            eprintln!(
                "compare: {} at {rate}/s: achieved {achieved:.0}/s, {} events, {}, p99 {} ms",
                system.label(),
                total,
                check.verdict(),
                percentile(&check.latencies_ms, 0.99)
            );
            results.push((
                system,
                SteadyResult {
                    rate,
                    achieved,
                    written: total,
                    check,
                    cpu_pct: 100.0 * (cpu1 - cpu0) / busy,
                    peak_rss_kb,
                    relay_histograms,
                    broker_pauses,
                },
            ));
            pg::cleanup(client, &slot, "", &[]).await;
            delete_topics(&[topic, debezium_message_topic(&slot)]).await;
        }
    }
    pg::cleanup(client, "", &publication, &[&table]).await;
    results
}

/// `args.writers` connections, each inserting single-row autocommit transactions at
/// `rate / writers` per second (catching up without sleeping when behind), for
/// `steady_secs`. Writer `w` owns aggregates `a ≡ w (mod writers)` and numbers its events
/// `k * writers + w`, so seqs increase per aggregate in commit order. Returns the number of
/// events each writer committed and the elapsed seconds.
async fn write_paced(args: Arc<Args>, table: String, rate: u32) -> (Vec<usize>, f64) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let args = args.clone();
        let table = table.clone();
        tasks.push(tokio::spawn(async move {
            let client = pg::connect().await;
            // The project's cluster runs synchronous_commit=off: a commit would reach the
            // walsender only at the WAL writer's next flush (wal_writer_delay, 200 ms),
            // which would dominate every latency. Writers commit as production does.
            client
                .batch_execute("SET synchronous_commit = on")
                .await
                .expect("synchronous_commit");
            let stmt = client
                .prepare(&format!(
                    "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', $1, 'OrderCreated', \
                     ($2::text || (extract(epoch FROM clock_timestamp()) * 1000000)::int8 || '}}')::jsonb)"
                ))
                .await
                .expect("prepare");
            let per_writer = rate as f64 / args.writers as f64;
            let interval = Duration::from_secs_f64(1.0 / per_writer);
            let deadline = Duration::from_secs(args.steady_secs);
            let mine: Vec<usize> = (w..args.backlog.aggregates).step_by(args.writers).collect();
            let begin = tokio::time::Instant::now();
            let mut k = 0usize;
            loop {
                let due = begin + interval.mul_f64(k as f64);
                if due.duration_since(begin) >= deadline {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let agg = mine[k % mine.len()];
                let seq = k * args.writers + w;
                let prefix = format!(
                    "{{\"orderId\":\"order-{agg}\",\"seq\":{seq},\"customerId\":\"c-{c}\",\"status\":\"CREATED\",\"currency\":\"EUR\",\"total\":{t}.99,\
                     \"items\":[{{\"sku\":\"SKU-{s1}\",\"qty\":2,\"price\":10.5}},{{\"sku\":\"SKU-{s2}\",\"qty\":1,\"price\":99.0}}],\
                     \"shippingAddress\":{{\"street\":\"Main Street {st}\",\"city\":\"Berlin\",\"zip\":\"10115\",\"country\":\"DE\"}},\
                     \"note\":\"{note}\",\"ts\":",
                    c = seq % 997,
                    t = seq % 1000,
                    s1 = seq % 50,
                    s2 = seq % 77,
                    st = seq % 300,
                    note = "x".repeat(100),
                );
                client
                    .execute(&stmt, &[&format!("order-{agg}"), &prefix])
                    .await
                    .expect("insert");
                k += 1;
            }
            k
        }));
    }
    let mut written = Vec::new();
    for t in tasks {
        written.push(t.await.expect("writer"));
    }
    (written, started.elapsed().as_secs_f64())
}

/// Checks a steady-state topic against what the writers committed and computes the
/// latency of every event: broker append time (ms) − insert `clock_timestamp()` (µs).
fn check_steady(topic: &str, writers: usize, written: &[usize]) -> Check {
    let mut check = Check::default();
    let total: usize = written.iter().sum();
    let max_seq = written.iter().max().copied().unwrap_or(0) * writers;
    let mut seen = vec![false; max_seq + writers];
    let mut last: HashMap<Vec<u8>, i64> = HashMap::new();
    read_topic(topic, |key, payload, _id, ts| {
        let Some(seq) = json_int(payload, "\"seq\":") else {
            check.wrong_key += 1;
            return;
        };
        if seq < 0 {
            return; // probe
        }
        check.records += 1;
        let s = seq as usize;
        let w = s % writers;
        if s / writers >= written[w] {
            check.wrong_key += 1; // not a committed event
            return;
        }
        if seen[s] {
            check.duplicates += 1;
            return;
        }
        seen[s] = true;
        let e = last.entry(key.to_vec()).or_insert(-1);
        if seq < *e {
            check.reordered += 1;
        } else {
            *e = seq;
        }
        if let (Some(ts), Some(us)) = (ts, json_int(payload, "\"ts\":")) {
            check.latencies_ms.push(ts - us / 1000);
        }
    });
    let found = seen.iter().filter(|s| **s).count();
    check.missing = total - found.min(total);
    check.latencies_ms.sort_unstable();
    check
}

/// The upper bound (ms) of the histogram bucket holding quantile `q`, from a Prometheus
/// text exposition (`<name>_bucket{...le="x"} count`, cumulative).
fn bucket_quantile(text: &str, name: &str, q: f64) -> String {
    let prefix = format!("{name}_bucket{{");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit_once(' ')?.1.parse().ok()?;
            Some((le, count))
        })
        .collect();
    let Some(&(_, total)) = buckets.last() else {
        return "–".into();
    };
    buckets
        .iter()
        .find(|(_, c)| *c >= q * total && total > 0.0)
        .map(|(le, _)| {
            if le.is_finite() {
                format!("≤{}", le * 1000.0)
            } else {
                "+Inf".into()
            }
        })
        .unwrap_or_else(|| "–".into())
}

fn percentile(sorted: &[i64], p: f64) -> String {
    if sorted.is_empty() {
        return "–".into();
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].to_string()
}

// ---------------------------------------------------------------------------- processes

/// A reader process (relay or Kafka Connect) under measurement.
struct Proc {
    name: String,
    child: Child,
    started: Instant,
    metrics_port: Option<u16>,
    log: PathBuf,
    cleanup: Vec<PathBuf>,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            panic!(
                "{} exited early ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
    }
    /// SIGTERM, then SIGKILL after 30 s.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for p in &self.cleanup {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The broker JVM's collector and heap, from its command line (`deploy/local/kafka.sh`).
fn broker_jvm() -> String {
    let run = std::env::var("OUTBOX_RELAY_RUN").unwrap_or_else(|_| "/tmp/outbox-relay".into());
    let cmdline = std::fs::read_to_string(Path::new(&run).join("kafka/kafka.pid"))
        .ok()
        .and_then(|pid| std::fs::read(format!("/proc/{}/cmdline", pid.trim())).ok())
        .unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let gc = args
        .iter()
        .find_map(|a| a.strip_prefix("-XX:+Use")?.strip_suffix("GC"))
        .map(|g| format!("{g}GC"))
        .unwrap_or_else(|| "default GC".into());
    let heap = args
        .iter()
        .rev()
        .find(|a| a.starts_with("-Xmx"))
        .cloned()
        .unwrap_or_else(|| "default heap".into());
    format!("{gc}, {heap}")
}

/// The broker's GC and safepoint log (`deploy/local/kafka.sh`).
fn broker_gc_log() -> PathBuf {
    let run = std::env::var("OUTBOX_RELAY_RUN").unwrap_or_else(|_| "/tmp/outbox-relay".into());
    Path::new(&run).join("kafka/logs/gc.log")
}

fn gc_log_len() -> Option<u64> {
    std::fs::metadata(broker_gc_log()).ok().map(|m| m.len())
}

/// The broker's stop-the-world pauses (every safepoint: GC and the others) logged since
/// offset `from` of its GC log: "count, total / max ms" over pauses of at least 1 ms.
/// Every produce request in flight waits out such a pause, so they are the first thing
/// to look at when a latency tail appears. None if the log is missing or was rotated.
fn broker_pauses(from: Option<u64>) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let from = from?;
    let mut file = std::fs::File::open(broker_gc_log()).ok()?;
    if file.metadata().ok()?.len() < from {
        return None;
    }
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    // [time][uptime] Safepoint "G1CollectForAllocation", ..., Total: 16330271 ns
    let pauses_ms: Vec<f64> = text
        .lines()
        .filter(|l| l.contains("] Safepoint \""))
        .filter_map(|l| {
            l.rsplit_once("Total: ")?
                .1
                .strip_suffix(" ns")?
                .parse::<f64>()
                .ok()
        })
        .map(|ns| ns / 1e6)
        .filter(|ms| *ms >= 1.0)
        .collect();
    let total: f64 = pauses_ms.iter().fold(0.0, |a, b| a + b);
    let max = pauses_ms.iter().copied().fold(0.0, f64::max);
    Some(format!("{}, {total:.0} / {max:.0}", pauses_ms.len()))
}

fn work_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("outbox-relay-compare");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn start_relay(args: &Args, slot: &str, publication: &str, table: &str, prefix: &str) -> Proc {
    let port = free_port();
    let mut props = String::new();
    for kv in &args.relay_kafka_properties {
        let (k, v) = kv
            .split_once('=')
            .expect("--relay-kafka-property takes key=value");
        writeln!(props, "      {k}: \"{v}\"").unwrap();
    }
    if !props.is_empty() {
        props.insert_str(0, "    properties:\n");
    }
    let config = format!(
        "source:\n  host: {}\n  port: {}\n  database: {}\n  user: {}\n  password: {}\n  sslmode: disable\n  slot: {slot}\n  publication: {publication}\n  create_slot: false\n  create_publication: false\n  heartbeat_interval_ms: 0\noutbox:\n  tables:\n    - table: public.{table}\n  route:\n    template: \"{prefix}.{{aggregatetype}}\"\nsink:\n  kind: kafka\n  kafka:\n    brokers: {}\n{props}telemetry:\n  listen: 127.0.0.1:{port}\n  log_level: warn\n",
        env::pg_host(),
        env::pg_port(),
        env::pg_database(),
        env::pg_user(),
        env::pg_password(),
        env::kafka_bootstrap(),
    );
    let dir = work_dir();
    let path = dir.join(format!("{slot}.yaml"));
    std::fs::write(&path, config).unwrap();
    let log = dir.join(format!("{slot}.log"));
    let log_file = std::fs::File::create(&log).unwrap();
    let started = Instant::now();
    let child = Command::new(&args.relay_bin)
        .arg("--config")
        .arg(&path)
        .arg("run")
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("spawn relay");
    Proc {
        name: "outbox-relay".into(),
        child,
        started,
        metrics_port: Some(port),
        log,
        cleanup: vec![path],
    }
}

fn render(template: &Path, vars: &[(&str, String)]) -> String {
    let mut text =
        std::fs::read_to_string(template).unwrap_or_else(|e| panic!("{}: {e}", template.display()));
    for (k, v) in vars {
        text = text.replace(&format!("@{k}@"), v);
    }
    assert!(
        !text.lines().any(|l| !l.starts_with('#') && l.contains('@')),
        "{}: unfilled placeholder",
        template.display()
    );
    text
}

/// Kafka Connect standalone with Debezium's PostgreSQL connector and the Outbox Event
/// Router, from `slot`, publishing to `<prefix>.<aggregatetype>`.
fn start_debezium(
    args: &Args,
    phase: &str,
    slot: &str,
    publication: &str,
    table: &str,
    prefix: &str,
) -> Proc {
    let dir = work_dir();
    let name = slot.replace('_', "-"); // also topic.prefix: see debezium_message_topic
    let offsets = dir.join(format!("{slot}.offsets"));
    let _ = std::fs::remove_file(&offsets);
    let worker = render(
        &args.debezium_dir.join("worker.properties"),
        &[
            ("BOOTSTRAP", env::kafka_bootstrap()),
            ("OFFSETS_FILE", offsets.display().to_string()),
            ("REST_PORT", free_port().to_string()),
        ],
    );
    let connector = render(
        &args.debezium_dir.join("connector.properties"),
        &[
            ("NAME", name.clone()),
            ("PG_HOST", env::pg_host()),
            ("PG_PORT", env::pg_port().to_string()),
            ("PG_USER", env::pg_user()),
            ("PG_PASSWORD", env::pg_password()),
            ("PG_DATABASE", env::pg_database()),
            ("SLOT", slot.to_string()),
            ("PUBLICATION", publication.to_string()),
            ("TABLE", table.to_string()),
            ("TOPIC_PREFIX", prefix.to_string()),
            (
                "POLL_INTERVAL_MS",
                args.debezium_poll_interval_ms.to_string(),
            ),
            ("MAX_BATCH_SIZE", args.debezium_max_batch_size.to_string()),
            ("MAX_QUEUE_SIZE", args.debezium_max_queue_size.to_string()),
        ],
    );
    let worker_path = dir.join(format!("{slot}.worker.properties"));
    let connector_path = dir.join(format!("{slot}.connector.properties"));
    std::fs::write(&worker_path, worker).unwrap();
    std::fs::write(&connector_path, connector).unwrap();
    let log = dir.join(format!("{slot}.connect.log"));
    let _ = std::fs::remove_file(&log);
    let out = std::fs::File::create(dir.join(format!("{slot}.connect.out"))).unwrap();
    eprintln!(
        "compare: starting Kafka Connect + Debezium ({phase}), log {}",
        log.display()
    );
    let started = Instant::now();
    let child = Command::new(&args.java)
        .arg(format!("-Xmx{}", args.jvm_heap))
        .args([
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
        ])
        .arg(format!("-Dconnect.log.file={}", log.display()))
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            args.debezium_dir.join("connect-log4j2.xml").display()
        ))
        .arg("-cp")
        .arg(format!("{}/*", args.debezium_libs.display()))
        .arg("org.apache.kafka.connect.cli.ConnectStandalone")
        .arg(&worker_path)
        .arg(&connector_path)
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("spawn java");
    Proc {
        name: "Debezium (Kafka Connect)".into(),
        child,
        started,
        metrics_port: None,
        log,
        cleanup: vec![worker_path, connector_path, offsets],
    }
}

/// Debezium publishes the logical decoding messages it sees in the WAL (other clients'
/// `pg_logical_emit_message`, e.g. relay heartbeats) to `<topic.prefix>.message`.
fn debezium_message_topic(slot: &str) -> String {
    format!("{}.message", slot.replace('_', "-"))
}

// -------------------------------------------------------------------------------- kafka

/// Creates topics with the broker's append time as record timestamp.
async fn create_topics(topics: &[String]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .create()
        .expect("admin client");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1))
                .set("message.timestamp.type", "LogAppendTime")
        })
        .collect();
    for r in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .expect("create topics")
    {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

async fn delete_topics(topics: &[String]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .create()
        .expect("admin client");
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
}

fn watermark_consumer() -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .set("group.id", "compare-watermarks")
        .create()
        .expect("kafka consumer")
}

/// Records in a topic: the sum of its partitions' high watermarks.
fn topic_count(c: &BaseConsumer, topic: &str) -> i64 {
    (0..PARTITIONS)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(5))
                .map(|(_, high)| high)
                .unwrap_or(0)
        })
        .sum()
}

/// Reads every record of `topic` up to the high watermarks at call time:
/// `f(key, payload, header id, timestamp ms)`.
fn read_topic(topic: &str, mut f: impl FnMut(&[u8], &[u8], Option<&[u8]>, Option<i64>)) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .set("group.id", "compare-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .expect("kafka consumer");
    let mut remaining: i64 = 0;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let (low, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        remaining += high - low;
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).expect("assign");
    let mut idle = Instant::now();
    while remaining > 0 {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                remaining -= 1;
                idle = Instant::now();
                let id = m
                    .headers()
                    .and_then(|hs| hs.iter().find(|h| h.key == "id").and_then(|h| h.value));
                f(
                    m.key().unwrap_or_default(),
                    m.payload().unwrap_or_default(),
                    id,
                    m.timestamp().to_millis(),
                );
            }
            Some(Err(e)) => eprintln!("compare: consumer error (continuing): {e}"),
            None => assert!(
                idle.elapsed() < Duration::from_secs(60),
                "reading {topic}: {remaining} records never arrived"
            ),
        }
    }
}

/// The integer after `field` in a JSON text (`"seq":` / `"seq": `).
fn json_int(payload: &[u8], field: &str) -> Option<i64> {
    let text = std::str::from_utf8(payload).ok()?;
    let at = text.find(field)? + field.len();
    let rest = text[at..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}

// ------------------------------------------------------------------------------- report

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "{nproc} CPUs ({model}), {:.1} GiB RAM",
        mem_kb / 1024.0 / 1024.0
    )
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn render_report(
    args: &Args,
    pg_version: &str,
    drain: Option<&DrainReport>,
    steady: &[(System, SteadyResult)],
) -> String {
    let mut s = String::new();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    writeln!(s, "Run {date} on {}.", machine()).unwrap();
    writeln!(
        s,
        "Versions: outbox-relay {}, Debezium {} (Kafka Connect standalone, connect-runtime {}, JVM heap -Xmx{}), Kafka broker {} ({}), PostgreSQL {pg_version}.",
        args.relay_commit, args.debezium_version, args.connect_version, args.jvm_heap, args.kafka_version, broker_jvm()
    )
    .unwrap();
    writeln!(s, "\nCommand: `{}`\n", args.command).unwrap();
    writeln!(
        s,
        "| metric | pg_recvlogical | outbox-relay | Debezium | relay ÷ Debezium |"
    )
    .unwrap();
    writeln!(s, "|---|---:|---:|---:|---:|").unwrap();
    let mut targets: Vec<(String, String, bool)> = Vec::new();
    if let Some(d) = drain {
        let n = args.backlog.events as f64;
        let rate = |u: &Usage| n / u.wall;
        let (rr, rd, rp) = (rate(&d.relay.0), rate(&d.dbz.0), rate(&d.recvlogical));
        let fail = |c: &Check, v: String| if c.ok() { v } else { format!("FAILED ({v})") };
        writeln!(
            s,
            "| drain: events/s ({} events, from process start) | {:.0} | {} | {} | {:.1}× |",
            args.backlog.events,
            rp,
            fail(&d.relay.1, format!("{rr:.0}")),
            fail(&d.dbz.1, format!("{rd:.0}")),
            rr / rd
        )
        .unwrap();
        writeln!(
            s,
            "| drain: wall s (process start → last event in Kafka) | {:.1} | {:.1} | {:.1} | |",
            d.recvlogical.wall, d.relay.0.wall, d.dbz.0.wall
        )
        .unwrap();
        writeln!(
            s,
            "| drain: s from process start to first event in Kafka | – | {:.1} | {:.1} | |",
            d.relay.0.first_event.unwrap_or(f64::NAN),
            d.dbz.0.first_event.unwrap_or(f64::NAN)
        )
        .unwrap();
        writeln!(
            s,
            "| drain: % of pg_recvlogical's events/s | 100% | {:.0}% | {:.0}% | |",
            100.0 * rr / rp,
            100.0 * rd / rp
        )
        .unwrap();
        let per_m = |u: &Usage| u.cpu * 1e6 / n;
        writeln!(
            s,
            "| drain: CPU s per 1M events | {:.1} | {:.1} | {:.1} | {:.2} |",
            per_m(&d.recvlogical),
            per_m(&d.relay.0),
            per_m(&d.dbz.0),
            per_m(&d.relay.0) / per_m(&d.dbz.0)
        )
        .unwrap();
        writeln!(
            s,
            "| drain: peak RSS MiB | {:.1} | {:.1} | {:.1} | {:.3} |",
            mib(d.recvlogical.peak_rss_kb),
            mib(d.relay.0.peak_rss_kb),
            mib(d.dbz.0.peak_rss_kb),
            d.relay.0.peak_rss_kb as f64 / d.dbz.0.peak_rss_kb as f64
        )
        .unwrap();
        writeln!(
            s,
            "| drain: output check (all ids and seqs, per-aggregate order) | – | {} | {} | |",
            d.relay.1.verdict(),
            d.dbz.1.verdict()
        )
        .unwrap();
        writeln!(
            s,
            "| drain: payload bytes identical to the relay's | – | – | {} | |",
            match d.dbz.1.payload_diff {
                Some(0) => "yes, all".to_string(),
                Some(k) => format!("{k} differ"),
                None => "–".into(),
            }
        )
        .unwrap();
        targets.push((
            "drain events/s ≥ 3× Debezium's".into(),
            format!("{:.1}×", rr / rd),
            rr >= 3.0 * rd && d.relay.1.ok(),
        ));
        targets.push((
            "drain events/s ≥ 80% of pg_recvlogical's".into(),
            format!("{:.0}%", 100.0 * rr / rp),
            rr >= 0.8 * rp && d.relay.1.ok(),
        ));
        targets.push((
            "peak RSS ≤ 1/20 of Debezium's (drain)".into(),
            format!(
                "1/{:.0}",
                d.dbz.0.peak_rss_kb as f64 / d.relay.0.peak_rss_kb as f64
            ),
            d.relay.0.peak_rss_kb * 20 <= d.dbz.0.peak_rss_kb,
        ));
    }
    let mut relay_max_rss = drain.map(|d| d.relay.0.peak_rss_kb).unwrap_or(0);
    for &rate in &args.rates {
        let get = |sys: System| {
            steady
                .iter()
                .find(|(s, r)| *s == sys && r.rate == rate)
                .map(|(_, r)| r)
        };
        let Some(r) = get(System::Relay) else {
            continue;
        };
        // Without a Debezium run (--steady-systems relay), its cells stay empty.
        let empty = SteadyResult {
            rate,
            achieved: f64::NAN,
            written: 0,
            check: Check::default(),
            cpu_pct: f64::NAN,
            peak_rss_kb: 0,
            relay_histograms: None,
            broker_pauses: None,
        };
        let d = get(System::Debezium).unwrap_or(&empty);
        relay_max_rss = relay_max_rss.max(r.peak_rss_kb);
        let lat = |x: &SteadyResult| {
            let l = &x.check.latencies_ms;
            let v = format!(
                "{} / {} / {}",
                percentile(l, 0.50),
                percentile(l, 0.99),
                percentile(l, 1.0)
            );
            if x.check.ok() {
                v
            } else {
                format!("FAILED ({v})")
            }
        };
        writeln!(
            s,
            "| {rate}/s: achieved write rate (events) | – | {:.0} ({}) | {:.0} ({}) | |",
            r.achieved, r.written, d.achieved, d.written
        )
        .unwrap();
        writeln!(
            s,
            "| {rate}/s: end-to-end latency ms p50 / p99 / max | – | {} | {} | |",
            lat(r),
            lat(d)
        )
        .unwrap();
        writeln!(
            s,
            "| {rate}/s: CPU % of one core / peak RSS MiB | – | {:.0}% / {:.1} | {:.0}% / {:.1} | |",
            r.cpu_pct,
            mib(r.peak_rss_kb),
            d.cpu_pct,
            mib(d.peak_rss_kb)
        )
        .unwrap();
        if let Some(h) = &r.relay_histograms {
            writeln!(
                s,
                "| {rate}/s: relay's own histograms p50 / p99 | – | {h} | | |"
            )
            .unwrap();
        }
        writeln!(
            s,
            "| {rate}/s: broker JVM pauses ≥ 1 ms: count, total / max ms | – | {} | {} | |",
            r.broker_pauses.as_deref().unwrap_or("–"),
            d.broker_pauses.as_deref().unwrap_or("–")
        )
        .unwrap();
        writeln!(
            s,
            "| {rate}/s: output check | – | {} | {} | |",
            r.check.verdict(),
            d.check.verdict()
        )
        .unwrap();
        if rate == 5000 {
            let p99: i64 = percentile(&r.check.latencies_ms, 0.99)
                .parse()
                .unwrap_or(i64::MAX);
            targets.push((
                "p99 end-to-end latency ≤ 20 ms at 5k events/s".into(),
                format!("{p99} ms"),
                p99 <= 20 && r.check.ok(),
            ));
        }
    }
    if relay_max_rss > 0 {
        targets.push((
            "relay peak RSS ≤ 64 MB (all runs)".into(),
            format!("{:.1} MiB", mib(relay_max_rss)),
            relay_max_rss * 1024 <= 64 * 1000 * 1000,
        ));
    }
    if let Some(d) = drain {
        writeln!(
            s,
            "\nDrain: {} events, {} aggregates, {} rows per transaction, average payload {:.0} bytes; each reader from its own slot created before the backlog, one after another; walsenders with logical_decoding_work_mem={}.",
            args.backlog.events, args.backlog.aggregates, args.backlog.txn_rows, d.avg_payload, args.logical_decoding_work_mem
        )
        .unwrap();
    }
    if !steady.is_empty() {
        writeln!(
            s,
            "Steady state: {} s per rate, {} paced writer connections, single-row autocommit inserts; relay runs first, then Debezium, each from a fresh slot. Debezium poll.interval.ms={}, max.batch.size={}. Relay extra Kafka properties: {}.",
            args.steady_secs,
            args.writers,
            args.debezium_poll_interval_ms,
            args.debezium_max_batch_size,
            if args.relay_kafka_properties.is_empty() {
                "none (linger.ms=5 default)".to_string()
            } else {
                args.relay_kafka_properties.join(", ")
            }
        )
        .unwrap();
    }
    if !targets.is_empty() {
        writeln!(s, "\n| relay target | measured | met |").unwrap();
        writeln!(s, "|---|---:|---|").unwrap();
        for (t, v, ok) in &targets {
            writeln!(s, "| {t} | {v} | {} |", if *ok { "yes" } else { "**no**" }).unwrap();
        }
    }
    s
}

const SECTION: &str = "## Relay vs Debezium";
const RESULTS_BEGIN: &str = "<!-- compare.rs results: begin -->";
const RESULTS_END: &str = "<!-- compare.rs results: end -->";

/// Replaces the results block inside `## Relay vs Debezium` (creating the section, or the
/// block at the section's end, if missing). Other sections are left alone.
fn write_section(doc: &Path, report: &str) {
    let text = std::fs::read_to_string(doc).unwrap_or_default();
    let block = format!("{RESULTS_BEGIN}\n{report}{RESULTS_END}\n");
    let new = if let (Some(b), Some(e)) = (text.find(RESULTS_BEGIN), text.find(RESULTS_END)) {
        format!(
            "{}{block}{}",
            &text[..b],
            &text[e + RESULTS_END.len() + 1..]
        )
    } else if let Some(start) = text.find(SECTION) {
        let after = start + SECTION.len();
        let end = text[after..]
            .find("\n## ")
            .map(|i| after + i + 1)
            .unwrap_or(text.len());
        let mut head = text[..end].trim_end().to_string();
        head.push_str("\n\n");
        format!("{head}{block}\n{}", &text[end..])
    } else {
        let mut head = text.trim_end().to_string();
        if !head.is_empty() {
            head.push_str("\n\n");
        }
        format!("{head}{SECTION}\n\n{block}")
    };
    std::fs::write(doc, new).unwrap();
}

fn usage(pid: u32) -> ProcessUsage {
    ProcessUsage::of(pid).unwrap_or_else(|e| panic!("/proc/{pid}: {e}"))
}
