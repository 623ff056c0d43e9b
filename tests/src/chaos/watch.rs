//! Samples the slot's `confirmed_flush_lsn` and the relay's progress record every 200 ms
//! for the whole run. Neither may ever move back while the server runs; across a server
//! restart the slot may come back at the position its last checkpoint saved (PostgreSQL
//! keeps the newest confirmation in memory only), which is counted apart, with how far
//! back it went. The latest sample also gives each fault its replay watermark.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio_postgres::NoTls;

#[derive(Debug, Default, Clone)]
pub struct LsnWatch {
    pub samples: u64,
    pub flush: Option<u64>,
    pub record: Option<u64>,
    /// `pg_postmaster_start_time()` of the sample: a change is a server restart.
    server_start: Option<String>,
    /// (from, to) of every decrease of the slot's confirmed flush while the server ran.
    pub flush_back_same_server: Vec<(u64, u64)>,
    /// The same across a server restart.
    pub flush_back_across_restart: Vec<(u64, u64)>,
    pub record_back: Vec<(u64, u64)>,
    pub server_restarts_seen: u64,
}

impl LsnWatch {
    /// What the relay had durably delivered at the latest sample: nothing at or below it is
    /// sent again by a session that starts later.
    pub fn delivered(&self) -> u64 {
        self.flush.unwrap_or(0).max(self.record.unwrap_or(0))
    }

    pub fn to_json(&self) -> Value {
        let hex = |v: &[(u64, u64)]| {
            v.iter()
                .take(10)
                .map(|(a, b)| format!("{a:X} -> {b:X}"))
                .collect::<Vec<_>>()
        };
        json!({
            "samples": self.samples,
            "confirmed_flush_decreases": self.flush_back_same_server.len(),
            "confirmed_flush_decreases_examples": hex(&self.flush_back_same_server),
            "confirmed_flush_back_after_server_restart": self.flush_back_across_restart.len(),
            "confirmed_flush_back_after_server_restart_max_bytes": self
                .flush_back_across_restart
                .iter()
                .map(|(a, b)| a - b)
                .max()
                .unwrap_or(0),
            "progress_record_decreases": self.record_back.len(),
            "progress_record_decreases_examples": hex(&self.record_back),
            "server_restarts_seen": self.server_restarts_seen,
        })
    }
}

pub struct Watcher {
    pub state: Arc<Mutex<LsnWatch>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    pub fn start(conn: String, slot: String) -> Watcher {
        let state = Arc::new(Mutex::new(LsnWatch::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !sp.load(Ordering::Relaxed) {
                let Ok((client, connection)) = tokio_postgres::connect(&conn, NoTls).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                while !sp.load(Ordering::Relaxed) {
                    let Ok(row) = client
                        .query_one(
                            "SELECT (SELECT (confirmed_flush_lsn - '0/0')::int8 FROM pg_replication_slots WHERE slot_name = $1),
                                    pg_postmaster_start_time()::text",
                            &[&slot],
                        )
                        .await
                    else {
                        break;
                    };
                    let flush: Option<i64> = row.get(0);
                    let start: String = row.get(1);
                    // The relay creates its state tables itself: absent at first.
                    let record: Option<i64> = client
                        .query_opt(
                            "SELECT (confirmed_lsn - '0/0')::int8 FROM outbox_relay.progress WHERE slot = $1",
                            &[&slot],
                        )
                        .await
                        .ok()
                        .flatten()
                        .map(|r| r.get(0));
                    note(
                        &st,
                        flush.map(|v| v as u64),
                        record.map(|v| v as u64),
                        start,
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        Watcher { state, stop, task }
    }

    pub fn latest(&self) -> LsnWatch {
        self.state.lock().unwrap().clone()
    }

    pub async fn stop(self) -> LsnWatch {
        let Watcher { state, stop, task } = self;
        stop.store(true, Ordering::Relaxed);
        let _ = task.await;
        let w = state.lock().unwrap().clone();
        w
    }
}

fn note(st: &Mutex<LsnWatch>, flush: Option<u64>, record: Option<u64>, start: String) {
    let mut w = st.lock().unwrap();
    w.samples += 1;
    let restarted = w.server_start.as_ref().is_some_and(|s| *s != start);
    if restarted {
        w.server_restarts_seen += 1;
    }
    if let (Some(prev), Some(now)) = (w.flush, flush) {
        if now < prev {
            if restarted {
                w.flush_back_across_restart.push((prev, now));
            } else {
                w.flush_back_same_server.push((prev, now));
            }
        }
    }
    if let (Some(prev), Some(now)) = (w.record, record) {
        if now < prev {
            w.record_back.push((prev, now));
        }
    }
    w.flush = flush.or(w.flush);
    w.record = record.or(w.record);
    w.server_start = Some(start);
}
