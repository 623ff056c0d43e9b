//! The processes under measurement: the relay, Kafka Connect with Debezium, and what the
//! broker's JVM did meanwhile.

use super::*;

/// A reader process (relay or Kafka Connect) under measurement.
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) started: Instant,
    pub(crate) metrics_port: Option<u16>,
    pub(crate) log: PathBuf,
    pub(crate) cleanup: Vec<PathBuf>,
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
    pub(crate) fn assert_alive(&mut self) {
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
    pub(crate) fn stop(&mut self) {
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

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The broker JVM's collector and heap, from its command line (`deploy/local/kafka.sh`).
pub(crate) fn broker_jvm() -> String {
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
pub(crate) fn broker_gc_log() -> PathBuf {
    let run = std::env::var("OUTBOX_RELAY_RUN").unwrap_or_else(|_| "/tmp/outbox-relay".into());
    Path::new(&run).join("kafka/logs/gc.log")
}

pub(crate) fn gc_log_len() -> Option<u64> {
    std::fs::metadata(broker_gc_log()).ok().map(|m| m.len())
}

/// The broker's stop-the-world pauses (every safepoint: GC and the others) logged since
/// offset `from` of its GC log: "count, total / max ms" over pauses of at least 1 ms.
/// Every produce request in flight waits out such a pause, so they are the first thing
/// to look at when a latency tail appears. None if the log is missing or was rotated.
pub(crate) fn broker_pauses(from: Option<u64>) -> Option<String> {
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

pub(crate) fn work_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("outbox-relay-compare");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) fn start_relay(
    args: &Args,
    slot: &str,
    publication: &str,
    table: &str,
    prefix: &str,
    exactly_once: bool,
) -> Proc {
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
    if exactly_once {
        props.insert_str(0, "    exactly_once: true\n");
        if let Some(ms) = args.relay_transaction_interval_ms {
            props.insert_str(0, &format!("    transaction_interval_ms: {ms}\n"));
        }
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
    let run_args = ["--config".as_ref(), path.as_os_str(), "run".as_ref()];
    let mut command = match args.relay_cpu_limit {
        Some(limit) => outbox_relay_tests::cgroup::limited(limit, &args.relay_bin, &run_args),
        None => {
            let mut c = Command::new(&args.relay_bin);
            c.args(run_args);
            c
        }
    };
    let child = command
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

/// `pg_recvlogical` streaming `slot` (pgoutput, `publication`) to /dev/null until killed:
/// another active slot decoding the same WAL, as real databases often carry.
pub(crate) fn start_recvlogical(slot: &str, publication: &str) -> Child {
    let bin = outbox_relay_tests::pg::recvlogical_binary();
    Command::new(bin)
        .args(["-h", &env::pg_host(), "-p", &env::pg_port().to_string()])
        .args(["-U", &env::pg_user(), "-d", &env::pg_database()])
        .args(["--slot", slot, "--start", "-f", "/dev/null"])
        .args(["-o", "proto_version=1", "-o"])
        .arg(format!("publication_names={publication}"))
        .env("PGPASSWORD", env::pg_password())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pg_recvlogical")
}

pub(crate) fn render(template: &Path, vars: &[(&str, String)]) -> String {
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
pub(crate) fn start_debezium(
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
pub(crate) fn debezium_message_topic(slot: &str) -> String {
    format!("{}.message", slot.replace('_', "-"))
}

pub(crate) fn usage(pid: u32) -> ProcessUsage {
    ProcessUsage::of(pid).unwrap_or_else(|e| panic!("/proc/{pid}: {e}"))
}
