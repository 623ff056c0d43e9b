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

mod drain;
mod kafka;
mod processes;
mod report;
mod steady;

use crate::drain::{drain_phase, DrainReport};
use crate::report::{render_report, write_section};
use crate::steady::steady_phase;
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
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) backlog: BacklogArgs,
    /// Steady-state rates, events/s.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    pub(crate) rates: Vec<u32>,
    /// Seconds of writing per steady-state rate.
    #[arg(long, default_value_t = 60)]
    pub(crate) steady_secs: u64,
    /// Writer connections in the steady state (each owns a share of the aggregates).
    #[arg(long, default_value_t = 4)]
    pub(crate) writers: usize,
    #[arg(long)]
    pub(crate) skip_drain: bool,
    #[arg(long)]
    pub(crate) skip_steady: bool,
    /// logical_decoding_work_mem for the run's walsenders (PostgreSQL's default; the
    /// project cluster's own 64kB makes the backlog spill to disk).
    #[arg(long, default_value = "64MB")]
    pub(crate) logical_decoding_work_mem: String,
    /// Systems in the steady state (`relay`, `relay-eo` = the relay with
    /// `sink.kafka.exactly_once`, `debezium`).
    #[arg(long, value_delimiter = ',', default_value = "relay,debezium")]
    pub(crate) steady_systems: Vec<String>,
    /// The relay binary (release build).
    #[arg(long)]
    pub(crate) relay_bin: PathBuf,
    /// Run the relay in the steady state inside a cgroup with this CPU quota (e.g. 0.25),
    /// as a sidecar with a CPU limit runs.
    #[arg(long)]
    pub(crate) relay_cpu_limit: Option<f64>,
    /// Extra active slots on the same publication during each steady-state run, each
    /// streamed by a `pg_recvlogical` to /dev/null: other walsenders decoding the same WAL.
    #[arg(long, default_value_t = 0)]
    pub(crate) extra_slots: usize,
    /// `sink.kafka.transaction_interval_ms` for `relay-eo` (the relay's default if unset).
    #[arg(long)]
    pub(crate) relay_transaction_interval_ms: Option<u64>,
    /// Extra librdkafka properties for the relay (`key=value`, repeatable), e.g. linger.ms=0.
    #[arg(long = "relay-kafka-property")]
    pub(crate) relay_kafka_properties: Vec<String>,
    /// Directory with Kafka Connect + Debezium jars.
    #[arg(long)]
    pub(crate) debezium_libs: PathBuf,
    /// tests/debezium: worker.properties, connector.properties, connect-log4j2.xml.
    #[arg(long)]
    pub(crate) debezium_dir: PathBuf,
    #[arg(long, default_value = "unknown")]
    pub(crate) debezium_version: String,
    #[arg(long, default_value = "java")]
    pub(crate) java: String,
    #[arg(long, default_value = "1g")]
    pub(crate) jvm_heap: String,
    /// Debezium's `poll.interval.ms` (its default is 500).
    #[arg(long, default_value_t = 500)]
    pub(crate) debezium_poll_interval_ms: u64,
    /// Debezium's `max.batch.size` (its default is 2048).
    #[arg(long, default_value_t = 2048)]
    pub(crate) debezium_max_batch_size: u64,
    /// Debezium's `max.queue.size` (its default is 8192).
    #[arg(long, default_value_t = 8192)]
    pub(crate) debezium_max_queue_size: u64,
    /// Kafka broker version.
    #[arg(long, default_value = "unknown")]
    pub(crate) kafka_version: String,
    /// connect-runtime version Debezium runs in.
    #[arg(long, default_value = "unknown")]
    pub(crate) connect_version: String,
    #[arg(long, default_value = "unknown")]
    pub(crate) relay_commit: String,
    /// The command line to print in the report.
    #[arg(long, default_value = "tests/compare.sh")]
    pub(crate) command: String,
    /// Write the report into this markdown file, section `## Relay vs Debezium`.
    #[arg(long)]
    pub(crate) doc: Option<PathBuf>,
}

/// Resource use of one reader process over one measured run.
#[derive(Debug, Default, Clone)]
pub(crate) struct Usage {
    pub(crate) wall: f64,
    pub(crate) cpu: f64,
    pub(crate) peak_rss_kb: u64,
    /// Process start → first event in Kafka (Kafka readers only).
    pub(crate) first_event: Option<f64>,
}

/// What a Kafka output check found.
#[derive(Debug, Default, Clone)]
pub(crate) struct Check {
    pub(crate) records: usize,
    pub(crate) missing: usize,
    pub(crate) missing_ids: usize,
    pub(crate) duplicates: usize,
    pub(crate) reordered: usize,
    pub(crate) wrong_key: usize,
    /// Payloads whose bytes differ from the relay's for the same event (drain only).
    pub(crate) payload_diff: Option<usize>,
    pub(crate) latencies_ms: Vec<i64>,
}

impl Check {
    pub(crate) fn ok(&self) -> bool {
        self.missing == 0 && self.missing_ids == 0 && self.reordered == 0 && self.wrong_key == 0
    }
    pub(crate) fn verdict(&self) -> String {
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
pub(crate) struct SteadyResult {
    pub(crate) rate: u32,
    pub(crate) achieved: f64,
    pub(crate) written: usize,
    pub(crate) check: Check,
    pub(crate) cpu_pct: f64,
    pub(crate) peak_rss_kb: u64,
    /// The relay's own histograms over the run (p50 / p99 bucket bounds, ms):
    /// commit → broker ack, and batch handed to the producer → acked.
    pub(crate) relay_histograms: Option<String>,
    /// The broker's stop-the-world pauses while the run was measured.
    pub(crate) broker_pauses: Option<String>,
    /// Insert → received by a live `read_committed` consumer, ms, sorted: when a
    /// consumer can see the event (for exactly-once, after the Kafka transaction commits,
    /// which the broker's append time does not show).
    pub(crate) visible_ms: Vec<i64>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum System {
    Relay,
    RelayExactlyOnce,
    Debezium,
}

impl System {
    pub(crate) fn label(self) -> &'static str {
        match self {
            System::Relay => "outbox-relay",
            System::RelayExactlyOnce => "outbox-relay (exactly-once)",
            System::Debezium => "Debezium",
        }
    }

    /// The name `--steady-systems` takes, and the slot and topic tag.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            System::Relay => "relay",
            System::RelayExactlyOnce => "relay-eo",
            System::Debezium => "debezium",
        }
    }
}

pub(crate) const PARTITIONS: i32 = 3;

#[tokio::main]
pub(crate) async fn main() {
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
