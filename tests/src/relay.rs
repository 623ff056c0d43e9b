//! Running the relay binary as a child process, as an operator would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::env;
use crate::process::ProcessUsage;

/// Settings that differ between tests; everything else is the harness default.
#[derive(Debug, Clone)]
pub struct RelaySetup {
    pub name: String,
    pub tables: Vec<String>,
    pub topic_prefix: String,
    pub inflight_bytes: usize,
    /// `validate_json` on every outbox table.
    pub validate_json: bool,
    /// Extra YAML for every entry of `outbox.tables` (indented by six spaces).
    pub table_extra: String,
    /// Extra YAML appended under `outbox:` (indented by the caller).
    pub outbox_extra: String,
    /// Extra top-level YAML.
    pub extra: String,
    /// Replaces the `sink:` section (YAML, indented by two spaces) and the route
    /// template, for sinks other than the local Kafka.
    pub sink_yaml: Option<String>,
    pub route_template: Option<String>,
    /// Dead-letter destination, when not `<prefix>.dead-letter`.
    pub dead_letter: Option<String>,
    /// Environment for the relay process (`RELAY__…` overrides).
    pub env: Vec<(String, String)>,
    /// Soft and hard `RLIMIT_NOFILE` for the relay process (set through prlimit(1)).
    pub open_files_limit: Option<u64>,
}

impl RelaySetup {
    pub fn new(name: &str, table: &str) -> Self {
        RelaySetup {
            name: name.to_string(),
            tables: vec![table.to_string()],
            topic_prefix: name.replace('_', "-"),
            inflight_bytes: 4 * 1024 * 1024,
            validate_json: false,
            table_extra: String::new(),
            outbox_extra: String::new(),
            extra: String::new(),
            env: Vec::new(),
            sink_yaml: None,
            route_template: None,
            dead_letter: None,
            open_files_limit: None,
        }
    }

    pub fn with_env(mut self, pairs: &[(&str, &str)]) -> Self {
        self.env
            .extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    pub fn slot(&self) -> String {
        self.name.clone()
    }
    pub fn publication(&self) -> String {
        self.name.clone()
    }
    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| format!("{}.dead-letter", self.topic_prefix))
    }

    pub fn yaml(&self, metrics_port: u16) -> String {
        let mut tables: String = self
            .tables
            .iter()
            .map(|t| {
                format!(
                    "    - table: public.{t}\n      validate_json: {}\n{}",
                    self.validate_json, self.table_extra
                )
            })
            .collect();
        if !tables.is_empty() {
            tables.insert_str(0, "  tables:\n");
        }
        format!(
            "source:
  host: {host}
  port: {port}
  database: {db}
  user: {user}
  password: {password}
  sslmode: disable
  slot: {slot}
  publication: {publication}
  status_interval_ms: 200
  heartbeat_interval_ms: 1000
outbox:
{tables}  route:
    template: \"{template}\"
  commit_lsn_header: true
  dead_letter_destination: {dlq}
{outbox_extra}sink:
{sink}pipeline:
  inflight_bytes: {inflight}
  restart_backoff_ms: 200
telemetry:
  listen: 127.0.0.1:{metrics_port}
  log_level: info
{extra}",
            host = env::pg_host(),
            port = env::pg_port(),
            db = env::pg_database(),
            user = env::pg_user(),
            password = env::pg_password(),
            slot = self.slot(),
            publication = self.publication(),
            dlq = self.dead_letter_topic(),
            outbox_extra = self.outbox_extra,
            sink = self.sink_yaml.clone().unwrap_or_else(|| format!(
                "  kind: kafka\n  kafka:\n    brokers: {}\n",
                env::kafka_bootstrap()
            )),
            template = self
                .route_template
                .clone()
                .unwrap_or_else(|| format!("{}.{{aggregatetype}}", self.topic_prefix)),
            inflight = self.inflight_bytes,
            extra = self.extra,
        )
    }
}

/// A running relay. Killed on drop.
pub struct Relay {
    child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
    pub config: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Relay {
    pub fn start(setup: &RelaySetup) -> Relay {
        Self::start_with_args(setup, &["run"])
    }

    pub fn start_with_args(setup: &RelaySetup, args: &[&str]) -> Relay {
        Self::start_as(setup, &setup.name, args)
    }

    /// One of several replicas of the same setup (same slot): its own config and log
    /// files, named `stem`.
    pub fn start_replica(setup: &RelaySetup, stem: &str) -> Relay {
        Self::start_as(setup, stem, &["run"])
    }

    fn start_as(setup: &RelaySetup, stem: &str, args: &[&str]) -> Relay {
        let metrics_port = free_port();
        let dir = std::env::temp_dir().join("outbox-relay-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join(format!("{stem}.yaml"));
        std::fs::write(&config, setup.yaml(metrics_port)).unwrap();
        let log = dir.join(format!("{stem}.log"));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        // prlimit sets the limit and then execs the relay: the child's pid is the relay's.
        let mut command = match setup.open_files_limit {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}"))
                    .arg("--")
                    .arg(env::relay_bin());
                c
            }
            None => Command::new(env::relay_bin()),
        };
        let child = command
            .arg("--config")
            .arg(&config)
            .args(args)
            .envs(setup.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn outbox-relay");
        Relay {
            child,
            metrics_port,
            log,
            config,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for `/readyz` to answer 200.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.try_wait() {
                panic!(
                    "relay exited with {status} before becoming ready; log:\n{}",
                    self.log_tail()
                );
            }
            if let Some((200, _)) = http_get(self.metrics_port, "/readyz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "relay not ready after {timeout:?}; log:\n{}",
            self.log_tail()
        );
    }

    /// After a destination outage: waits until every circuit is closed and the parking
    /// table is empty (the redriver sent everything), then asserts that the circuits
    /// whose labels include `labels` went through open, half-open and closed.
    pub async fn wait_recovered(&self, timeout: Duration, labels: &[&str]) {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.metrics();
            let parked = metric_sum(&m, "outbox_relay_parked_events", &[]);
            let state = metric_sum(&m, "outbox_relay_circuit_state", &[]);
            if parked == 0.0 && state == 0.0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "parked {parked}, circuit state {state}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let m = self.metrics();
        for state in ["open", "half_open", "closed"] {
            let label = format!("state=\"{state}\"");
            let mut all = labels.to_vec();
            all.push(&label);
            assert!(
                metric_sum(&m, "outbox_relay_circuit_transitions_total", &all) >= 1.0,
                "no transition to {state}: {m}"
            );
        }
    }

    /// Waits for the replication stream to be open (`outbox_relay_replicating` 1), for a
    /// relay that may not become ready (its broker is unreachable).
    pub fn wait_replicating(&mut self, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.try_wait() {
                panic!(
                    "relay exited with {status} before replicating; log:\n{}",
                    self.log_tail()
                );
            }
            if http_get(self.metrics_port, "/metrics")
                .is_some_and(|(_, m)| metric_sum(&m, "outbox_relay_replicating", &[]) == 1.0)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "relay did not start replicating within {timeout:?}; log:\n{}",
            self.log_tail()
        );
    }

    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The value of one series (`name{labels}` exactly as exposed, or a bare name).
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.metrics(), series)
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// SIGSTOP / SIGCONT: a frozen process whose sockets stay open.
    pub fn freeze(&self) {
        unsafe_kill(self.child.id(), 19);
    }
    pub fn thaw(&self) {
        unsafe_kill(self.child.id(), 18);
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        unsafe_kill(self.child.id(), 15);
        self.wait(timeout)
    }

    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.try_wait() {
                return s;
            }
            if start.elapsed() > timeout {
                self.kill9();
                panic!(
                    "relay did not exit within {timeout:?}; log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Peak resident memory of the process so far, in kB (`VmHWM`).
    pub fn peak_rss_kb(&self) -> Option<u64> {
        ProcessUsage::of(self.child.id())
            .ok()
            .map(|u| u.peak_rss_kb)
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            self.kill9();
        }
    }
}

fn unsafe_kill(pid: u32, sig: i32) {
    // No libc dependency for one call: the kill(1) utility is on every Linux.
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// A tiny HTTP GET for the relay's telemetry endpoints.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Finds `series` in a Prometheus text exposition.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

/// Sum of every series of a metric whose labels contain all of `labels` (`k="v"`).
pub fn metric_sum(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            let (base, rest) = name.split_once('{').unwrap_or((name, ""));
            (base == metric && labels.iter().all(|lab| rest.contains(lab)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}
