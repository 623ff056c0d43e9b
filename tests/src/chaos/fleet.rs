//! The relay processes of a chaos run: one, or two replicas with `ha.enabled` (the leader
//! is the one reporting `outbox_relay_leader 1`). A process that exits on its own (a
//! leader that lost its lease exits 3) is recorded and started again, as a supervisor
//! (Kubernetes) would. Peak RSS and in-process session restarts are sampled from each
//! process before it goes.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::relay::{http_get, metric_sum, Relay, RelaySetup};

pub struct Fleet {
    setup: RelaySetup,
    stems: Vec<String>,
    relays: Vec<Relay>,
    /// Processes started, the first ones included.
    pub starts: u64,
    /// Exits the suite did not cause: (replica, status).
    pub self_exits: Vec<(usize, String)>,
    pub peak_rss_kb: u64,
    /// `outbox_relay_restarts_total` of processes gone, plus the last sample of the live.
    restarts_gone: f64,
    restarts_live: Vec<f64>,
}

impl Fleet {
    pub fn start(setup: RelaySetup, replicas: usize) -> Fleet {
        let stems: Vec<String> = (0..replicas)
            .map(|i| format!("{}-r{i}", setup.name))
            .collect();
        let relays: Vec<Relay> = stems
            .iter()
            .map(|s| Relay::start_replica(&setup, s))
            .collect();
        Fleet {
            setup,
            starts: replicas as u64,
            stems,
            relays,
            self_exits: Vec::new(),
            peak_rss_kb: 0,
            restarts_gone: 0.0,
            restarts_live: vec![0.0; replicas],
        }
    }

    pub fn len(&self) -> usize {
        self.relays.len()
    }

    pub fn is_empty(&self) -> bool {
        self.relays.is_empty()
    }

    pub fn relay(&self, i: usize) -> &Relay {
        &self.relays[i]
    }

    fn metrics(&self, i: usize) -> Option<String> {
        http_get(self.relays[i].metrics_port, "/metrics").map(|(_, m)| m)
    }

    /// The replica that streams: with one replica, it; with two, the one leading.
    pub fn leader(&self) -> Option<usize> {
        if self.relays.len() == 1 {
            return Some(0);
        }
        (0..self.relays.len()).find(|&i| {
            self.metrics(i)
                .is_some_and(|m| metric_sum(&m, "outbox_relay_leader", &[]) == 1.0)
        })
    }

    /// Samples peak RSS and session restarts of every live process.
    pub fn sample(&mut self) {
        for i in 0..self.relays.len() {
            if let Some(kb) = self.relays[i].peak_rss_kb() {
                self.peak_rss_kb = self.peak_rss_kb.max(kb);
            }
            if let Some(m) = self.metrics(i) {
                self.restarts_live[i] = metric_sum(&m, "outbox_relay_restarts_total", &[]);
            }
        }
    }

    /// In-process session restarts over every process so far.
    pub fn session_restarts(&self) -> f64 {
        self.restarts_gone + self.restarts_live.iter().sum::<f64>()
    }

    fn gone(&mut self, i: usize) {
        self.restarts_gone += self.restarts_live[i];
        self.restarts_live[i] = 0.0;
    }

    pub fn kill(&mut self, i: usize) {
        self.sample();
        self.relays[i].kill9();
        self.gone(i);
    }

    pub fn freeze(&mut self, i: usize) {
        self.sample();
        self.relays[i].freeze();
    }

    pub fn thaw(&mut self, i: usize) {
        self.relays[i].thaw();
    }

    /// Starts replica `i` again (after a kill, or an exit of its own).
    pub fn respawn(&mut self, i: usize) {
        self.relays[i] = Relay::start_replica(&self.setup, &self.stems[i]);
        self.starts += 1;
    }

    /// Starts again every replica that exited on its own, noting how it exited.
    pub fn reap(&mut self) -> Vec<(usize, ExitStatus)> {
        let mut out = Vec::new();
        for i in 0..self.relays.len() {
            if let Some(status) = self.relays[i].try_wait() {
                self.gone(i);
                self.self_exits.push((i, status.to_string()));
                out.push((i, status));
                self.respawn(i);
            }
        }
        out
    }

    /// Events published by the live processes.
    pub fn published(&self) -> f64 {
        (0..self.relays.len())
            .filter_map(|i| self.metrics(i))
            .map(|m| metric_sum(&m, "outbox_relay_events_published_total", &[]))
            .sum()
    }

    /// Waits until the leader replicates and publishes again: its published count grows
    /// past what it was when first seen leading. Starts again replicas that exit meanwhile.
    /// The time it took, or None after `timeout`.
    pub fn wait_recovered(&mut self, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut base: Option<(u32, f64)> = None;
        while start.elapsed() < timeout {
            self.reap();
            if let Some(i) = self.leader() {
                if let Some(m) = self.metrics(i) {
                    let replicating = metric_sum(&m, "outbox_relay_replicating", &[]) == 1.0;
                    let published = metric_sum(&m, "outbox_relay_events_published_total", &[]);
                    let pid = self.relays[i].pid();
                    match base {
                        Some((p, b)) if p == pid => {
                            if replicating && published > b {
                                return Some(start.elapsed());
                            }
                        }
                        _ => base = Some((pid, published)),
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Waits until the leader streams (`outbox_relay_replicating` 1).
    pub fn wait_streaming(&mut self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if !self.reap().is_empty() {
                return Err(format!("a relay exited at start:\n{}", self.log_tails()));
            }
            let streaming = self
                .leader()
                .and_then(|i| self.metrics(i))
                .is_some_and(|m| metric_sum(&m, "outbox_relay_replicating", &[]) == 1.0);
            if streaming {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "no relay streaming after {timeout:?}:\n{}",
            self.log_tails()
        ))
    }

    /// SIGTERM to every replica; their exit statuses.
    pub fn terminate(&mut self) -> Vec<String> {
        self.sample();
        let mut out = Vec::new();
        for r in &mut self.relays {
            if r.try_wait().is_none() {
                out.push(r.terminate(Duration::from_secs(60)).to_string());
            }
        }
        out
    }

    pub fn log_tails(&self) -> String {
        self.relays
            .iter()
            .map(|r| format!("== {}\n{}", r.log.display(), r.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
