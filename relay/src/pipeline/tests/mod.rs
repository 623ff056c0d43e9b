//! In-process tests of the at-least-once core: a [`Flow`] driven by encoded pgoutput
//! frames and a [`ScriptedPublisher`] whose deliveries each test resolves by hand. No
//! database, no broker: these pin the acknowledgement rules (what the flush watermark may
//! pass, and when) and the outcome of every kind of failure.

mod acknowledgement;
mod diversion;
mod outcomes;
mod pacing;
mod parking;
mod replay;
mod settle;
mod supervisor;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use outbox_connectors::testing::ScriptedPublisher;
use outbox_connectors::Publisher;
use outbox_pgoutput::encode::encode;
use outbox_pgoutput::{
    Begin, Column, Commit, Insert, LogicalMessage, LogicalReplicationMessage as M, Lsn, Relation,
    ReplicaIdentity, TupleData, TupleValue,
};
use outbox_pgwire::ReplicationMessage;
use tokio::sync::watch;

use super::diversion::Diversion;
use super::flow::{Flow, FlowMemory, FlowSettings, FlowState};
use super::Progress;
use crate::config::{InvalidEventPolicy, MessagesConfig, OutboxConfig};
use crate::error::RelayError;
use crate::outbox::{Mapper, Router};
use crate::state::{ParkRequest, ParkStore, Parking};
use crate::telemetry::Metrics;

pub const PREFIX: &str = "outbox-test";
const REL_ID: u32 = 7;
/// Type oids of the outbox table's columns (uuid, varchar, jsonb).
const UUID: u32 = 2950;
const VARCHAR: u32 = 1043;
const JSONB: u32 = 3802;

/// A flow over a scripted publisher, and the pgoutput frames to feed it.
pub struct Harness {
    pub flow: Flow,
    pub parking: Option<Arc<Parking>>,
    pub publisher: ScriptedPublisher,
    pub progress: Arc<Progress>,
    pub metrics: Metrics,
    pub shutdown: std::sync::Arc<watch::Sender<bool>>,
    /// The next WAL position handed out by [`Harness::tx`].
    next_lsn: u64,
    ids: u64,
}

/// Settings a test may change before starting the flow.
pub struct Setup {
    pub policy: InvalidEventPolicy,
    pub inflight_bytes: usize,
    pub max_batch_events: usize,
    pub resume_at: Lsn,
    /// The recorded progress: replayed transactions committed before it are skipped.
    pub skip_before: Lsn,
    /// Shared with an earlier harness to model a session restart in the same process.
    pub memory: FlowMemory,
    /// A parking table in memory (for `on_invalid: park`).
    pub parked: Option<MemoryParkStore>,
    /// `circuit_breaker.on_open: park` (needs `parked`); the test updates it from the
    /// scripted publisher's circuits.
    pub diversion: Option<Arc<Diversion>>,
    /// `pipeline.destination_share` below 1.
    pub bulkhead: Option<Arc<super::bulkhead::Bulkhead>>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            policy: InvalidEventPolicy::DeadLetter,
            inflight_bytes: 1 << 20,
            max_batch_events: 1000,
            resume_at: Lsn(0x1000),
            skip_before: Lsn(0x1000),
            memory: FlowMemory::default(),
            parked: None,
            diversion: None,
            bulkhead: None,
        }
    }
}

/// One event of a scripted transaction: an outbox row, or a logical message.
pub enum Change {
    Row {
        aggregate_id: Option<&'static str>,
    },
    /// A row of a known aggregate that is invalid (its `type` is NULL).
    InvalidRow {
        aggregate_id: &'static str,
    },
    Message {
        transactional: bool,
    },
    /// A row of another aggregate type (so another destination).
    TypedRow {
        aggregate_type: &'static str,
        aggregate_id: &'static str,
    },
}

pub fn row(aggregate_id: &'static str) -> Change {
    Change::Row {
        aggregate_id: Some(aggregate_id),
    }
}

impl Harness {
    pub async fn start(setup: Setup) -> Harness {
        let publisher = ScriptedPublisher::new();
        let mut config = OutboxConfig {
            on_invalid: setup.policy,
            ..OutboxConfig::default()
        };
        config.messages = Some(MessagesConfig {
            prefix: PREFIX.into(),
        });
        let p = publisher.clone();
        let router = Router::new(
            &config.route,
            Arc::new(move |d: &str| p.validate_destination(d)),
        )
        .unwrap();
        let mapper = Mapper::new(config, router);
        let progress = Arc::new(Progress::default());
        progress.advance_flushed(setup.resume_at.max(setup.skip_before));
        let metrics = Metrics::new();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let parking = match setup.parked.clone() {
            Some(store) => Some(Arc::new(
                Parking::with_store(Box::new(store)).await.unwrap(),
            )),
            None => None,
        };
        let flow = Flow::start(
            Arc::new(publisher.clone()),
            mapper,
            progress.clone(),
            metrics.clone(),
            FlowSettings {
                policy: setup.policy,
                inflight_bytes: setup.inflight_bytes,
                max_batch_events: setup.max_batch_events,
                skip_before: setup.skip_before,
            },
            FlowState {
                memory: setup.memory,
                parking: parking.clone(),
                diversion: setup.diversion.clone(),
                bulkhead: setup.bulkhead.clone(),
                cleanup: None,
            },
            shutdown_rx,
        );
        let mut h = Harness {
            parking,
            flow,
            publisher,
            progress,
            metrics,
            shutdown: Arc::new(shutdown),
            next_lsn: setup.resume_at.0 + 0x100,
            ids: 0,
        };
        h.feed(M::Relation(relation())).await.unwrap();
        h
    }

    /// Feeds one pgoutput message as XLogData at the current position.
    pub async fn feed(&mut self, msg: M) -> Result<bool, RelayError> {
        let at = Lsn(self.next_lsn);
        self.flow
            .on_message(ReplicationMessage::XLogData {
                wal_start: at,
                wal_end: at,
                server_time: 0,
                data: encode(&msg).expect("encodable"),
            })
            .await
    }

    /// A keepalive reporting `wal_end`.
    pub async fn keepalive(&mut self, wal_end: Lsn) -> Result<bool, RelayError> {
        self.flow
            .on_message(ReplicationMessage::PrimaryKeepalive {
                wal_end,
                server_time: 0,
                reply_requested: false,
            })
            .await
    }

    /// Feeds Begin, the changes, and Commit of one transaction; returns its commit end
    /// LSN (what the watermark may pass once all its events are durable).
    pub async fn tx(&mut self, changes: &[Change]) -> Result<Lsn, RelayError> {
        let commit_lsn = Lsn(self.next_lsn + 0x80);
        let end_lsn = Lsn(self.next_lsn + 0x88);
        self.feed(M::Begin(Begin {
            final_lsn: commit_lsn,
            commit_ts: 0,
            xid: 1,
        }))
        .await?;
        for change in changes {
            self.next_lsn += 0x10;
            let msg = match change {
                Change::Row { aggregate_id } => self.insert("Order", *aggregate_id, true),
                Change::InvalidRow { aggregate_id } => {
                    self.insert("Order", Some(aggregate_id), false)
                }
                Change::TypedRow {
                    aggregate_type,
                    aggregate_id,
                } => self.insert(aggregate_type, Some(aggregate_id), true),
                Change::Message { transactional } => self.message(*transactional, "agg-m"),
            };
            self.feed(msg).await?;
        }
        self.next_lsn = end_lsn.0 + 0x100;
        self.feed(M::Commit(Commit {
            flags: 0,
            commit_lsn,
            end_lsn,
            commit_ts: 0,
        }))
        .await?;
        Ok(end_lsn)
    }

    pub fn next_id(&mut self) -> String {
        self.ids += 1;
        format!("00000000-0000-0000-0000-{:012}", self.ids)
    }

    fn insert(&mut self, aggregate_type: &str, aggregate_id: Option<&str>, valid: bool) -> M {
        let id = self.next_id();
        let text = |s: &str| TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()));
        M::Insert(Insert {
            xid: None,
            rel_id: REL_ID,
            new: TupleData(vec![
                text(&id),
                text(aggregate_type),
                aggregate_id.map_or(TupleValue::Null, text),
                if valid {
                    text("OrderPlaced")
                } else {
                    TupleValue::Null
                },
                text(&format!(r#"{{"id":"{id}"}}"#)),
            ]),
        })
    }

    /// A logical message with the outbox prefix, carrying one event.
    pub fn message(&mut self, transactional: bool, aggregate_id: &str) -> M {
        let id = self.next_id();
        M::Message(LogicalMessage {
            xid: None,
            transactional,
            lsn: Lsn(self.next_lsn),
            prefix: PREFIX.into(),
            content: Bytes::from(format!(
                r#"{{"id":"{id}","aggregatetype":"Order","aggregateid":"{aggregate_id}","type":"OrderPlaced","payload":{{"n":1}}}}"#
            )),
        })
    }

    /// Feeds a standalone (non-transactional) message at the current position.
    pub async fn standalone_message(&mut self, aggregate_id: &str) -> Result<Lsn, RelayError> {
        self.next_lsn += 0x10;
        let at = Lsn(self.next_lsn);
        let msg = self.message(false, aggregate_id);
        self.feed(msg).await?;
        Ok(at)
    }

    pub fn flushed(&self) -> Lsn {
        self.progress.flushed()
    }

    /// Gives the acker time to act on what was resolved.
    pub async fn settle(&self) {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics, name, labels)
    }
}

/// The value of one series of the registry (the sum over series matching `labels`; 0
/// when absent), read from the text exposition a scrape would see.
pub fn metric_value(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus::Encoder;
    let mut text = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&metrics.registry.gather(), &mut text)
        .unwrap();
    let full = format!("outbox_relay_{name}");
    String::from_utf8(text)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let wanted = metric == full
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            wanted.then(|| value.parse::<f64>().unwrap())
        })
        .sum()
}

fn relation() -> Relation {
    let col = |name: &str, type_oid| Column {
        flags: 0,
        name: name.into(),
        type_oid,
        type_modifier: -1,
    };
    Relation {
        xid: None,
        rel_id: REL_ID,
        namespace: "public".into(),
        name: "outbox".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            col("id", UUID),
            col("aggregatetype", VARCHAR),
            col("aggregateid", VARCHAR),
            col("type", VARCHAR),
            col("payload", JSONB),
        ],
    }
}

/// A parking table in memory; clones share it. Writes can be held back with a gate.
#[derive(Clone, Default)]
pub struct MemoryParkStore {
    rows: Arc<std::sync::Mutex<Vec<ParkRequest>>>,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl MemoryParkStore {
    /// (aggregate id, event id, reason) of every parked event, in commit order.
    pub fn rows(&self) -> Vec<(String, String, String)> {
        let mut rows = self.rows.lock().unwrap().clone();
        rows.sort_by_key(|r| (r.event.commit_lsn, r.event.seq));
        rows.into_iter()
            .map(|r| (r.event.aggregate_id.into(), r.event.id.into(), r.reason))
            .collect()
    }

    /// Removes an aggregate's rows (what a redrive or discard does).
    pub fn remove_aggregate(&self, aggregate_id: &str) {
        self.rows
            .lock()
            .unwrap()
            .retain(|r| r.event.aggregate_id != aggregate_id);
    }

    /// Holds writes back until the guard is dropped.
    pub async fn hold(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.gate.clone().lock_owned().await
    }
}

#[async_trait::async_trait]
impl ParkStore for MemoryParkStore {
    async fn write(&self, requests: &[ParkRequest]) -> Result<(), RelayError> {
        let _open = self.gate.lock().await;
        let mut rows = self.rows.lock().unwrap();
        for r in requests {
            let key = (r.event.commit_lsn, r.event.seq);
            if !rows
                .iter()
                .any(|x| (x.event.commit_lsn, x.event.seq) == key)
            {
                rows.push(r.clone());
            }
        }
        Ok(())
    }

    async fn summary(&self) -> Result<Vec<(String, String, i64, f64)>, RelayError> {
        let rows = self.rows.lock().unwrap();
        let mut out: Vec<(String, String, i64, f64)> = Vec::new();
        for r in rows.iter() {
            match out
                .iter_mut()
                .find(|(a, d, _, _)| *a == r.event.aggregate_id && **d == *r.event.destination)
            {
                Some(entry) => entry.2 += 1,
                None => out.push((
                    r.event.aggregate_id.to_string(),
                    r.event.destination.to_string(),
                    1,
                    0.0,
                )),
            }
        }
        Ok(out)
    }
}
