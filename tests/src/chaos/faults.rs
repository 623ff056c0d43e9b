//! Injecting the scheduled faults, one after another, at their times into the load; and
//! for each, the replay window the checker explains duplicates with: from what the relay
//! had durably delivered before the fault (the slot's confirmed flush and the relay's
//! progress record; after a relay SIGKILL, read once its walsender is gone; for a server
//! restart the record alone, since the slot may come back older) to the end of WAL once the
//! relay has recovered.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_postgres::NoTls;

use super::check::Window;
use super::fleet::Fleet;
use super::schedule::{Fault, Kind, Side};
use super::services::{self, PG_PROXY, SINK_PROXY};
use super::watch::LsnWatch;
use crate::toxiproxy::{Toxiproxy, STREAMS};

pub struct Driver {
    pub fleet: Fleet,
    pub toxi: Toxiproxy,
    pub watch: Arc<Mutex<LsnWatch>>,
    pub conn: String,
    pub slot: String,
    pub rt: tokio::runtime::Handle,
    /// How long to wait for the relay to publish again after a fault.
    pub recovery_timeout: Duration,
}

/// What happened to one fault.
#[derive(Debug, Clone)]
pub struct Done {
    pub fault: Fault,
    pub started_s: f64,
    pub took_ms: u64,
    /// Time from the end of the fault to the relay publishing again; None if it did not
    /// within the timeout.
    pub recovered_ms: Option<u64>,
    pub window: Window,
    pub error: Option<String>,
}

impl Done {
    pub fn to_json(&self) -> Value {
        let mut v = self.fault.to_json();
        v["started_s"] = json!((self.started_s * 10.0).round() / 10.0);
        v["took_ms"] = json!(self.took_ms);
        v["recovered_ms"] = json!(self.recovered_ms);
        v["replay_window"] = json!(format!("{:X}..{:X}", self.window.from, self.window.to));
        if let Some(e) = &self.error {
            v["error"] = json!(e);
        }
        v
    }
}

impl Driver {
    fn query_u64(&self, sql: &str) -> Option<u64> {
        let (conn, slot, sql) = (self.conn.clone(), self.slot.clone(), sql.to_string());
        self.rt.block_on(async move {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(120) {
                if let Ok((c, connection)) = tokio_postgres::connect(&conn, NoTls).await {
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                        if sql.contains("$1") {
                            vec![&slot]
                        } else {
                            vec![]
                        };
                    if let Ok(row) = c.query_opt(&sql, &params).await {
                        return row
                            .and_then(|r| r.get::<_, Option<i64>>(0))
                            .map(|v| v as u64);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            None
        })
    }

    fn wal_end(&self) -> u64 {
        self.query_u64("SELECT (pg_current_wal_insert_lsn() - '0/0')::int8")
            .unwrap_or(u64::MAX)
    }

    /// After a SIGKILL of the only relay: its delivered position, once its walsender is gone
    /// (nothing moves it until the next process starts).
    fn delivered_when_inactive(&self) -> u64 {
        for _ in 0..100 {
            let active = self.query_u64(
                "SELECT active::int::int8 FROM pg_replication_slots WHERE slot_name = $1",
            );
            if active != Some(1) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let flush = self
            .query_u64("SELECT (confirmed_flush_lsn - '0/0')::int8 FROM pg_replication_slots WHERE slot_name = $1")
            .unwrap_or(0);
        let record = self
            .query_u64(
                "SELECT (confirmed_lsn - '0/0')::int8 FROM outbox_relay.progress WHERE slot = $1",
            )
            .unwrap_or(0);
        flush.max(record)
    }

    fn hold(&mut self, ms: u64) {
        let until = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
    }

    fn proxy(side: Side) -> &'static str {
        match side {
            Side::Pg => PG_PROXY,
            Side::Sink => SINK_PROXY,
        }
    }

    fn toxic_both(&self, side: Side, kind: &str, attributes: Value) -> Result<(), String> {
        for stream in STREAMS {
            self.toxi.add_toxic(
                Self::proxy(side),
                &format!("{kind}_{stream}"),
                kind,
                stream,
                attributes.clone(),
            )?;
        }
        Ok(())
    }

    /// Runs one fault to its end (healed) and waits for the relay to recover.
    pub fn inject(&mut self, f: &Fault, t0: Instant) -> Done {
        let started = Instant::now();
        let started_ms = epoch_ms();
        let before = self.watch.lock().unwrap().clone();
        let mut from = before.delivered();
        let leader = self.fleet.leader().unwrap_or(0);
        let result: Result<(), String> = (|| {
            match f.kind {
                Kind::RelaySigkill | Kind::LeaderFailover => {
                    self.fleet.kill(leader);
                    if self.fleet.len() == 1 {
                        from = self.delivered_when_inactive();
                    }
                    self.hold(f.hold_ms);
                    self.fleet.respawn(leader);
                }
                Kind::RelaySigkillSinkDegraded => {
                    if f.param == 0 {
                        self.toxi.set_enabled(SINK_PROXY, false)?;
                    } else {
                        self.toxic_both(Side::Sink, "latency", json!({"latency": f.param}))?;
                    }
                    self.hold(f.hold_ms / 2);
                    self.fleet.kill(leader);
                    if self.fleet.len() == 1 {
                        from = self.delivered_when_inactive();
                    }
                    self.hold(f.hold_ms / 2);
                    self.toxi.heal(SINK_PROXY)?;
                    self.fleet.respawn(leader);
                }
                Kind::RelaySigstop => {
                    self.fleet.freeze(leader);
                    self.hold(f.hold_ms);
                    self.fleet.thaw(leader);
                }
                Kind::PgRestartImmediate | Kind::PgRestartFast => {
                    // The slot may come back older than confirmed; the record is durable.
                    from = before.record.unwrap_or(0);
                    let mode = if f.kind == Kind::PgRestartFast {
                        "fast"
                    } else {
                        "immediate"
                    };
                    services::restart_pg(mode)?;
                }
                Kind::KafkaSigkill => {
                    services::kill_kafka()?;
                    self.hold(f.hold_ms);
                    services::start_kafka()?;
                }
                Kind::AwsOutage => {
                    self.toxi.set_enabled(SINK_PROXY, false)?;
                    self.hold(f.hold_ms);
                    self.toxi.set_enabled(SINK_PROXY, true)?;
                }
                Kind::NetCut(side) => {
                    self.toxi.set_enabled(Self::proxy(side), false)?;
                    self.hold(f.hold_ms);
                    self.toxi.set_enabled(Self::proxy(side), true)?;
                }
                Kind::NetLatency(side) => {
                    self.toxic_both(
                        side,
                        "latency",
                        json!({"latency": f.param, "jitter": f.param / 2}),
                    )?;
                    self.hold(f.hold_ms);
                    self.toxi.heal(Self::proxy(side))?;
                }
                Kind::NetBandwidth(side) => {
                    self.toxic_both(side, "bandwidth", json!({"rate": f.param}))?;
                    self.hold(f.hold_ms);
                    self.toxi.heal(Self::proxy(side))?;
                }
                Kind::NetReset(side) => {
                    self.toxic_both(side, "reset_peer", json!({"timeout": 0}))?;
                    self.hold(f.hold_ms);
                    self.toxi.heal(Self::proxy(side))?;
                }
                Kind::NetSlicer(side) => {
                    self.toxic_both(
                        side,
                        "slicer",
                        json!({"average_size": f.param, "size_variation": f.param / 2, "delay": 200}),
                    )?;
                    self.hold(f.hold_ms);
                    self.toxi.heal(Self::proxy(side))?;
                }
                Kind::NetSlowClose(side) => {
                    self.toxic_both(side, "slow_close", json!({"delay": f.param}))?;
                    // The server closes the replication connection; the relay hears of it
                    // only after the delay.
                    self.query_u64(
                        "SELECT pg_terminate_backend(active_pid)::int::int8 FROM pg_replication_slots WHERE slot_name = $1",
                    );
                    self.hold(f.hold_ms);
                    self.toxi.heal(Self::proxy(side))?;
                }
                Kind::NetHalfOpen(side) => {
                    // Bytes in either direction are swallowed: each side sees a peer that
                    // is silent, without an error. The connections are dead for good then
                    // (closing them at the end is what their eventual timeout does), so no
                    // connection ever resumes with bytes missing in the middle, which TCP
                    // never does.
                    self.toxic_both(side, "timeout", json!({"timeout": 0}))?;
                    self.hold(f.hold_ms);
                    self.toxi.set_enabled(Self::proxy(side), false)?;
                    self.toxi.heal(Self::proxy(side))?;
                }
            }
            Ok(())
        })();
        let took = started.elapsed();
        self.fleet.reap();
        let recovered = self.fleet.wait_recovered(self.recovery_timeout);
        let to = self.wal_end();
        self.fleet.sample();
        Done {
            fault: f.clone(),
            started_s: (started - t0).as_secs_f64(),
            took_ms: took.as_millis() as u64,
            recovered_ms: recovered.map(|d| d.as_millis() as u64),
            window: Window {
                kind: f.kind.label(),
                from,
                to,
                started_ms,
            },
            error: result.err(),
        }
    }

    /// Runs the schedule; between faults, restarts replicas that exited and samples them.
    pub fn run(&mut self, schedule: &[Fault], t0: Instant, log: impl Fn(&Done)) -> Vec<Done> {
        let mut done = Vec::new();
        for f in schedule {
            let due = Instant::now() + Duration::from_secs_f64(f.gap);
            while Instant::now() < due {
                self.fleet.reap();
                self.fleet.sample();
                std::thread::sleep(Duration::from_millis(250).min(due - Instant::now()));
            }
            let d = self.inject(f, t0);
            log(&d);
            done.push(d);
        }
        done
    }
}

pub fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
