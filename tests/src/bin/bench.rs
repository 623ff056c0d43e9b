//! Drain benchmark: a backlog of outbox events written before the readers start, then
//! drained by `pg_recvlogical` (pgoutput to /dev/null: the source's ceiling), the relay
//! with the null sink, and the relay with Kafka, each from its own slot.
//!
//! With `--park-redrive`, also the cost of an outage with `circuit_breaker.on_open: park`:
//! the relay drains the backlog into the parking table while Kafka is unreachable, then a
//! relay that reaches Kafka redrives it (the redriver, as after a circuit closes).
//!
//! Run it with `tests/bench.sh` (which builds in release mode and starts the services).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use outbox_relay_tests::backlog::BacklogArgs;
use outbox_relay_tests::process::ProcessUsage;
use outbox_relay_tests::relay::{http_get, metric_sum};
use outbox_relay_tests::{backlog, cgroup, env, pg};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    backlog: BacklogArgs,
    /// The relay binary (release build).
    #[arg(long)]
    relay_bin: PathBuf,
    /// `pipeline.inflight_bytes` for the relay runs.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    inflight_bytes: usize,
    #[arg(long)]
    skip_kafka: bool,
    /// Also measure parking (Kafka unreachable, on_open: park) and redrive throughput.
    #[arg(long)]
    park_redrive: bool,
    /// A last run of the relay with this sink (`null` or `kafka`) and
    /// `outbox.cleanup: delete_published`, from a slot of its own: the cost of the
    /// cleanup, and how long until the table is empty.
    #[arg(long)]
    cleanup: Option<String>,
    /// Also drain with `sink.kafka.exactly_once` (Kafka transactions), from a slot of its
    /// own: the cost of the guarantee next to the at-least-once Kafka run.
    #[arg(long)]
    exactly_once: bool,
    /// CPU limits (e.g. `0.25,0.5`): the null and Kafka drains again inside a cgroup with
    /// that CPU quota, as a sidecar with a CPU limit runs (cgroup v2 `cpu.max`, or v1
    /// `cpu.cfs_quota_us`), each from a slot of its own.
    #[arg(long, value_delimiter = ',')]
    cpu_limits: Vec<f64>,
    /// Also drain with the null sink under `valgrind --tool=callgrind`, from a slot of
    /// its own: instructions per event (repeatable where wall and CPU time are noisy),
    /// and the functions that spend them, written to this directory
    /// (`callgrind.out`, `annotate.txt`).
    #[arg(long)]
    callgrind: Option<PathBuf>,
    /// Also drain with the null sink and `source.shards: N` (N slots and publications
    /// split by a hash of the aggregate id, created before the backlog): N walsenders
    /// side by side (docs/scaling.md).
    #[arg(long)]
    shards: Option<u32>,
}

#[derive(Debug)]
struct Run {
    name: String,
    wall: f64,
    cpu: f64,
    /// Of `cpu`, the kernel's (system time).
    system_cpu: f64,
    /// CPU seconds of the walsender(s) serving the run (read just before the reader
    /// stopped), when measured.
    walsender_cpu: Option<f64>,
    peak_rss_kb: u64,
    /// With the cleanup: seconds from the start until the outbox table was empty.
    emptied: Option<f64>,
}

const PUBLICATION: &str = "bench_pub";
const TABLE: &str = "bench_outbox";
const SLOTS: [&str; 6] = [
    "bench_recvlogical",
    "bench_null",
    "bench_kafka",
    "bench_park",
    "bench_cleanup",
    "bench_kafka_eos",
];

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = pg::connect().await;
    let limited: Vec<(f64, String, String)> = args
        .cpu_limits
        .iter()
        .map(|l| {
            let n = (l * 100.0).round() as u32;
            (
                *l,
                format!("bench_null_cpu{n}"),
                format!("bench_kafka_cpu{n}"),
            )
        })
        .collect();
    let mut all_slots: Vec<&str> = SLOTS.to_vec();
    if args.callgrind.is_some() {
        all_slots.push(CALLGRIND_SLOT);
    }
    for (_, null, kafka) in &limited {
        all_slots.push(null);
        all_slots.push(kafka);
    }
    for slot in &all_slots {
        let _ = client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await;
    }
    client
        .batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {PUBLICATION};
             DROP TABLE IF EXISTS {TABLE};
             CREATE TABLE {TABLE} (
               id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
               aggregatetype varchar(255) NOT NULL, aggregateid varchar(255) NOT NULL,
               type varchar(255) NOT NULL, payload jsonb,
               timestamp timestamptz NOT NULL DEFAULT now(), tracingspancontext varchar(512));
             CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLE} WITH (publish = 'insert');"
        ))
        .await
        .expect("bench schema");
    backlog::define_fill(&client, "bench_fill", TABLE).await;
    backlog::create_slots(&client, &all_slots).await;
    if let Some(n) = args.shards {
        drop_sharded(&client, n).await;
        prepare_sharded(&args, n);
    }
    let t = Instant::now();
    args.backlog.write(&client, "bench_fill", "bench").await;
    let end_lsn: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let avg_payload: f64 = client
        .query_one(
            &format!("SELECT avg(octet_length(payload::text))::float8 FROM {TABLE}"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    eprintln!("bench: backlog written in {:.1}s, end LSN {end_lsn}, average payload {avg_payload:.0} bytes", t.elapsed().as_secs_f64());

    let mut runs = vec![recvlogical(&end_lsn)];
    eprintln!("bench: {runs:?}");
    runs.push(relay(&args, "null", SLOTS[1], false, None).await);
    eprintln!("bench: {:?}", runs.last().unwrap());
    if !args.skip_kafka {
        runs.push(relay(&args, "kafka", SLOTS[2], false, None).await);
        eprintln!("bench: {:?}", runs.last().unwrap());
    }

    if args.exactly_once {
        runs.push(relay(&args, "kafka-eos", SLOTS[5], false, None).await);
        eprintln!("bench: {:?}", runs.last().unwrap());
    }
    if let Some(n) = args.shards {
        runs.push(sharded(&args, n).await);
        eprintln!("bench: {:?}", runs.last().unwrap());
    }
    let instructions = args.callgrind.as_ref().map(|dir| callgrind(&args, dir));
    for (limit, null, kafka) in &limited {
        runs.push(relay(&args, "null", null, false, Some(*limit)).await);
        eprintln!("bench: {:?}", runs.last().unwrap());
        if !args.skip_kafka {
            runs.push(relay(&args, "kafka", kafka, false, Some(*limit)).await);
            eprintln!("bench: {:?}", runs.last().unwrap());
        }
    }

    if args.park_redrive {
        let (park, redrive) = park_redrive(&args, &client, SLOTS[3]).await;
        runs.push(park);
        runs.push(redrive);
    }
    // Last: it deletes the rows.
    if let Some(sink) = &args.cleanup {
        runs.push(relay(&args, sink, SLOTS[4], true, None).await);
        eprintln!("bench: {:?}", runs.last().unwrap());
    }

    let ceiling = args.backlog.events as f64 / runs[0].wall;
    println!("| reader | events/s | % of pg_recvlogical | wall s | CPU s | CPU s per 1M events | of which system | peak RSS MiB | walsender CPU s per 1M events |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &runs {
        let rate = args.backlog.events as f64 / r.wall;
        println!(
            "| {} | {:.0} | {:.0}% | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {} |",
            r.name,
            rate,
            100.0 * rate / ceiling,
            r.wall,
            r.cpu,
            r.cpu * 1e6 / args.backlog.events as f64,
            r.system_cpu * 1e6 / args.backlog.events as f64,
            r.peak_rss_kb as f64 / 1024.0,
            r.walsender_cpu
                .map(|c| format!("{:.2}", c * 1e6 / args.backlog.events as f64))
                .unwrap_or_else(|| "–".into())
        );
    }
    for r in &runs {
        if let Some(secs) = r.emptied {
            println!(
                "\n{}: table empty {secs:.2} s after the start (CPU s include the deletes)",
                r.name
            );
        }
    }
    if let Some(ir) = instructions {
        println!(
            "\noutbox-relay → null under callgrind: {ir} instructions, {:.0} per event (start-up and shutdown included)",
            ir as f64 / args.backlog.events as f64
        );
    }
    println!("\n{} events, {} aggregates, {} rows per transaction, average payload {avg_payload:.0} bytes", args.backlog.events, args.backlog.aggregates, args.backlog.txn_rows);

    for slot in &all_slots {
        let _ = client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await;
    }
    if let Some(n) = args.shards {
        drop_sharded(&client, n).await;
    }
    let _ = client
        .batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {PUBLICATION}; DROP TABLE IF EXISTS {TABLE}"
        ))
        .await;
}

/// `pg_recvlogical` to /dev/null until the end of the backlog, under GNU time.
fn recvlogical(end_lsn: &str) -> Run {
    let bin = outbox_relay_tests::pg::recvlogical_binary();
    let out = std::env::temp_dir().join("bench-recvlogical.time");
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
            SLOTS[0],
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
            &format!("publication_names={PUBLICATION}"),
        ])
        .env("PGPASSWORD", env::pg_password())
        .status()
        .expect("run pg_recvlogical");
    let wall = started.elapsed().as_secs_f64();
    assert!(status.success(), "pg_recvlogical failed: {status}");
    let text = std::fs::read_to_string(&out).unwrap();
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    Run {
        name: "pg_recvlogical (pgoutput → /dev/null)".into(),
        wall,
        cpu: f[1] + f[2],
        system_cpu: f[2],
        peak_rss_kb: f[3] as u64,
        emptied: None,
        walsender_cpu: None,
    }
}

/// The relay on `slot` until it has published every event, measured from process start.
/// The relay's configuration for one run: `sink_yaml` under `sink:`.
fn relay_config(args: &Args, slot: &str, sink_yaml: &str, port: u16, cleanup: bool) -> String {
    format!(
        "source:\n  host: {}\n  port: {}\n  database: {}\n  user: {}\n  password: {}\n  sslmode: disable\n  slot: {slot}\n  publication: {PUBLICATION}\n  create_slot: false\n  create_publication: false\n  heartbeat_interval_ms: 0\noutbox:\n  tables:\n    - table: public.{TABLE}\n  route:\n    template: \"bench-{}.{{aggregatetype}}\"\n  cleanup: {}\nsink:\n{sink_yaml}pipeline:\n  inflight_bytes: {}\n  shutdown_timeout_ms: 1000\ntelemetry:\n  listen: 127.0.0.1:{port}\n  log_level: warn\n",
        env::pg_host(), env::pg_port(), env::pg_database(), env::pg_user(), env::pg_password(),
        std::process::id(), if cleanup { "delete_published" } else { "none" }, args.inflight_bytes,
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_relay(args: &Args, name: &str, config: String) -> std::process::Child {
    let path = std::env::temp_dir().join(format!("bench-{name}.yaml"));
    std::fs::write(&path, config).unwrap();
    Command::new(&args.relay_bin)
        .arg("--config")
        .arg(&path)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn relay")
}

/// The relay inside a CPU-limited cgroup from its first instruction: a shell enters the
/// cgroup and then execs the relay (same pid, so /proc accounting still applies).
fn spawn_limited(args: &Args, name: &str, config: String, limit: f64) -> std::process::Child {
    let path = std::env::temp_dir().join(format!("bench-{name}-cpu.yaml"));
    std::fs::write(&path, config).unwrap();
    cgroup::limited(
        limit,
        &args.relay_bin,
        &["--config".as_ref(), path.as_os_str(), "run".as_ref()],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::inherit())
    .spawn()
    .expect("spawn limited relay")
}

/// CPU seconds used so far by the walsenders serving `slots` (PostgreSQL runs on this
/// machine, so its backends' /proc entries are readable).
async fn walsender_cpu(slots: &[&str]) -> Option<f64> {
    let client = pg::connect().await;
    let names: Vec<String> = slots.iter().map(|s| s.to_string()).collect();
    let pids: Vec<i32> = client
        .query(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = ANY($1) AND active_pid IS NOT NULL",
            &[&names],
        )
        .await
        .ok()?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if pids.len() != slots.len() {
        return None;
    }
    pids.iter()
        .map(|&p| ProcessUsage::of(p as u32).ok().map(|u| u.cpu_seconds))
        .sum()
}

const SHARDED_SLOT: &str = "bench_sharded";
const SHARDED_PUBLICATION: &str = "bench_shpub";

fn sharded_config(n: u32, port: u16, create: bool) -> String {
    format!(
        "source:\n  host: {}\n  port: {}\n  database: {}\n  user: {}\n  password: {}\n  sslmode: disable\n  slot: {SHARDED_SLOT}\n  publication: {SHARDED_PUBLICATION}\n  shards: {n}\n  create_slot: {create}\n  create_publication: {create}\n  heartbeat_interval_ms: 0\noutbox:\n  tables:\n    - table: public.{TABLE}\n  route:\n    template: \"bench-{}.{{aggregatetype}}\"\nsink:\n  kind: \"null\"\npipeline:\n  shutdown_timeout_ms: 1000\ntelemetry:\n  listen: 127.0.0.1:{port}\n  log_level: warn\n",
        env::pg_host(), env::pg_port(), env::pg_database(), env::pg_user(), env::pg_password(),
        std::process::id(),
    )
}

fn shard_slots(n: u32) -> Vec<String> {
    (0..n).map(|i| format!("{SHARDED_SLOT}_{i}")).collect()
}

async fn drop_sharded(client: &tokio_postgres::Client, n: u32) {
    // The relay's record of a slot it used: without it, a re-created shard slot is a new
    // slot, not a lost one (the relay would rightly halt on the latter).
    let _ = client
        .execute(
            "DELETE FROM outbox_relay.progress WHERE slot LIKE $1",
            &[&format!("{SHARDED_SLOT}_%")],
        )
        .await;
    for i in 0..n {
        let _ = client
            .execute(
                "SELECT pg_drop_replication_slot($1)",
                &[&format!("{SHARDED_SLOT}_{i}")],
            )
            .await;
        let _ = client
            .batch_execute(&format!(
                "DROP PUBLICATION IF EXISTS {SHARDED_PUBLICATION}_{i}"
            ))
            .await;
    }
}

/// Creates the shards' slots and publications before the backlog: the relay with
/// `create_slot`/`create_publication` on an empty table, until it is ready.
fn prepare_sharded(args: &Args, n: u32) {
    let port = free_port();
    let mut child = spawn_relay(args, "sharded-setup", sharded_config(n, port, true));
    let started = Instant::now();
    wait_for(&mut child, started, "sharded setup", || {
        http_get(port, "/readyz").is_some_and(|(code, _)| code == 200)
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The backlog drained by `source.shards: n` into the null sink.
async fn sharded(args: &Args, n: u32) -> Run {
    let port = free_port();
    let started = Instant::now();
    let mut child = spawn_relay(args, "sharded", sharded_config(n, port, false));
    let pid = child.id();
    let wall = wait_for(&mut child, started, "sharded", || {
        http_get(port, "/metrics").is_some_and(|(_, body)| {
            metric_sum(
                &body,
                "outbox_relay_events_published_total",
                &["result=\"ok\""],
            ) as usize
                >= args.backlog.events
        })
    });
    let usage = ProcessUsage::of(pid).expect("relay /proc");
    let slots = shard_slots(n);
    let slot_refs: Vec<&str> = slots.iter().map(String::as_str).collect();
    let walsender_cpu = walsender_cpu(&slot_refs).await;
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    Run {
        name: format!("outbox-relay → null, source.shards: {n}"),
        wall,
        cpu: usage.cpu_seconds,
        system_cpu: usage.system_seconds,
        walsender_cpu,
        peak_rss_kb: usage.peak_rss_kb,
        emptied: None,
    }
}

const CALLGRIND_SLOT: &str = "bench_callgrind";

/// The null-sink drain under callgrind: returns the instructions executed (every thread),
/// and leaves `callgrind.out` and the flat profile `annotate.txt` in `dir`.
fn callgrind(args: &Args, dir: &std::path::Path) -> u64 {
    std::fs::create_dir_all(dir).expect("callgrind directory");
    let out = dir.join("callgrind.out");
    let port = free_port();
    let config = relay_config(args, CALLGRIND_SLOT, "  kind: \"null\"\n", port, false);
    let path = std::env::temp_dir().join("bench-callgrind.yaml");
    std::fs::write(&path, config).unwrap();
    let started = Instant::now();
    let mut child = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--dump-instr=no")
        .arg(&args.relay_bin)
        .arg("--config")
        .arg(&path)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("valgrind (apt install valgrind)");
    // Scraping /metrics every 20 ms would put the scrapes themselves in the profile
    // (Registry::gather, ~370 instructions per event at this run's pace).
    let wall = wait_polling(
        &mut child,
        started,
        "callgrind",
        Duration::from_secs(2),
        || {
            http_get(port, "/metrics").is_some_and(|(_, body)| {
                metric_sum(
                    &body,
                    "outbox_relay_events_published_total",
                    &["result=\"ok\""],
                ) as usize
                    >= args.backlog.events
            })
        },
    );
    eprintln!("bench: callgrind drain took {wall:.0}s; stopping the relay");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let annotate = Command::new("callgrind_annotate")
        .arg("--inclusive=no")
        .arg("--threshold=99")
        .arg(&out)
        .output()
        .expect("callgrind_annotate");
    std::fs::write(dir.join("annotate.txt"), &annotate.stdout).unwrap();
    let text = std::fs::read_to_string(&out).expect("callgrind.out");
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals: ")
                .or_else(|| l.strip_prefix("summary: "))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("callgrind totals")
}

/// Parking while Kafka is unreachable, then the redrive once it is back.
async fn park_redrive(args: &Args, client: &tokio_postgres::Client, slot: &str) -> (Run, Run) {
    let _ = client
        .execute("DELETE FROM outbox_relay.parked WHERE slot = $1", &[&slot])
        .await;
    let breaker = "    circuit_breaker:\n      failure_threshold: 1\n      open_initial_ms: 60000\n      open_max_ms: 60000\n      on_open: park\n";
    // Nothing listens on port 1: every broker is down from the start.
    let port = free_port();
    let dead = format!("  kind: kafka\n  kafka:\n    brokers: 127.0.0.1:1\n{breaker}");
    let started = Instant::now();
    let mut child = spawn_relay(args, "park", relay_config(args, slot, &dead, port, false));
    let pid = child.id();
    let wall = wait_for(&mut child, started, "park", || {
        http_get(port, "/metrics").is_some_and(|(_, body)| {
            metric_sum(
                &body,
                "outbox_relay_events_published_total",
                &["result=\"parked\""],
            ) as usize
                >= args.backlog.events
        })
    });
    let usage = ProcessUsage::of(pid).expect("relay /proc");
    let _ = child.kill();
    let _ = child.wait();
    let park = Run {
        name: "outbox-relay → parking table (Kafka down, on_open: park)".into(),
        wall,
        cpu: usage.cpu_seconds,
        system_cpu: usage.system_seconds,
        peak_rss_kb: usage.peak_rss_kb,
        emptied: None,
        walsender_cpu: None,
    };

    let port = free_port();
    let live = format!(
        "  kind: kafka\n  kafka:\n    brokers: {}\n{breaker}",
        env::kafka_bootstrap()
    );
    let started = Instant::now();
    let mut child = spawn_relay(
        args,
        "redrive",
        relay_config(args, slot, &live, port, false),
    );
    let pid = child.id();
    let mut left = i64::MAX;
    let wall = loop {
        if left == 0 {
            break started.elapsed().as_secs_f64();
        }
        std::thread::sleep(Duration::from_millis(200));
        left = client
            .query_one(
                "SELECT count(*) FROM outbox_relay.parked WHERE slot = $1",
                &[&slot],
            )
            .await
            .unwrap()
            .get(0);
        if let Some(status) = child.try_wait().unwrap() {
            panic!("relay (redrive) exited early: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(1200),
            "redrive did not finish"
        );
    };
    let usage = ProcessUsage::of(pid).expect("relay /proc");
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    let redrive = Run {
        name: "outbox-relay redriver → Kafka (after the outage)".into(),
        wall,
        cpu: usage.cpu_seconds,
        system_cpu: usage.system_seconds,
        peak_rss_kb: usage.peak_rss_kb,
        emptied: None,
        walsender_cpu: None,
    };
    (park, redrive)
}

/// Polls `done` every 20 ms; the seconds since `started` when it holds.
fn wait_for(
    child: &mut std::process::Child,
    started: Instant,
    name: &str,
    done: impl FnMut() -> bool,
) -> f64 {
    wait_polling(child, started, name, Duration::from_millis(20), done)
}

/// As [`wait_for`], checking every `every`.
fn wait_polling(
    child: &mut std::process::Child,
    started: Instant,
    name: &str,
    every: Duration,
    mut done: impl FnMut() -> bool,
) -> f64 {
    loop {
        if done() {
            return started.elapsed().as_secs_f64();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("relay ({name}) exited early: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(1200),
            "relay ({name}) did not finish"
        );
        std::thread::sleep(every);
    }
}

async fn relay(args: &Args, sink: &str, slot: &str, cleanup: bool, cpu: Option<f64>) -> Run {
    let port = free_port();
    let sink_yaml = if sink == "kafka" {
        format!(
            "  kind: kafka\n  kafka:\n    brokers: {}\n",
            env::kafka_bootstrap()
        )
    } else if sink == "kafka-eos" {
        // Its own transactional id per run: the bench's topics and progress are new.
        format!(
            "  kind: kafka\n  kafka:\n    brokers: {}\n    exactly_once: true\n    transactional_id: bench-{}\n",
            env::kafka_bootstrap(),
            std::process::id()
        )
    } else {
        "  kind: \"null\"\n".to_string()
    };
    let started = Instant::now();
    let config = relay_config(args, slot, &sink_yaml, port, cleanup);
    let mut child = match cpu {
        None => spawn_relay(args, sink, config),
        Some(limit) => spawn_limited(args, sink, config, limit),
    };
    let pid = child.id();
    let wall = wait_for(&mut child, started, sink, || {
        http_get(port, "/metrics").is_some_and(|(_, body)| {
            metric_sum(
                &body,
                "outbox_relay_events_published_total",
                &["result=\"ok\""],
            ) as usize
                >= args.backlog.events
        })
    });
    let mut emptied = None;
    if cleanup {
        let client = pg::connect().await;
        loop {
            let left: i64 = client
                .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
                .await
                .unwrap()
                .get(0);
            if left == 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1200),
                "the cleanup did not empty the table"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        emptied = Some(started.elapsed().as_secs_f64());
    }
    let usage = ProcessUsage::of(pid).expect("relay /proc");
    let walsender_cpu = walsender_cpu(&[slot]).await;
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    Run {
        name: match (cleanup, cpu) {
            (true, _) => format!("outbox-relay → {sink}, cleanup: delete_published"),
            (false, Some(limit)) => format!("outbox-relay → {sink}, CPU limit {limit}"),
            (false, None) => format!("outbox-relay → {sink}"),
        },
        emptied,
        wall,
        cpu: usage.cpu_seconds,
        system_cpu: usage.system_seconds,
        peak_rss_kb: usage.peak_rss_kb,
        walsender_cpu,
    }
}
