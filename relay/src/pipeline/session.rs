//! One replication session: connect, prepare, stream, and end cleanly or with an error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_connectors::{OutboxEvent, Publisher};
use outbox_pgoutput::{
    decode, pg_timestamp_to_unix_micros, DecodeContext, LogicalReplicationMessage as M, Lsn,
};
use outbox_pgwire::{connect_sql, ReplicationClient, ReplicationMessage};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::ack::{unix_now_us, AckItem, Acker};
use super::budget::Budget;
use super::{status, Progress};
use crate::config::{Config, InvalidEventPolicy};
use crate::error::RelayError;
use crate::outbox::{Mapped, Mapper, Router, TxContext};
use crate::source::{heartbeat, setup};
use crate::telemetry::{Health, Metrics};

/// Everything a session shares with the process.
pub struct SessionContext {
    pub config: Arc<Config>,
    pub metrics: Metrics,
    pub health: Arc<Health>,
}

/// Batches queued for acknowledgement at most; the byte budget is the real bound.
const ACK_QUEUE: usize = 4096;

pub async fn run_session(
    ctx: &SessionContext,
    publisher: Arc<dyn Publisher>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), RelayError> {
    let config = &ctx.config;
    let src = &config.source;
    let opts = src.connect_options()?;

    // Ordinary SQL: checks, publication, slot inspection, heartbeats.
    let (sql, sql_conn) = connect_sql(&opts).await?;
    let _sql_guard = AbortOnDrop(sql_conn);
    setup::check_wal_level(&sql).await?;
    for table in &config.outbox.tables {
        setup::check_table(&sql, table).await?;
    }
    let note = setup::ensure_publication(&sql, config, false).await?;
    info!("{note}");
    let slot = setup::inspect_slot(&sql, &src.slot).await?;

    let mut repl = ReplicationClient::connect(&opts).await?;
    let system = repl.identify_system().await?;
    match slot {
        Some(info) => {
            info!("{}", setup::verify_slot(&info, &src.slot, &src.database)?);
        }
        None if src.create_slot => {
            let created = repl.create_logical_slot(&src.slot, "pgoutput").await?;
            info!(slot = %src.slot, consistent_point = %created.consistent_point, "created replication slot");
        }
        None => {
            return Err(RelayError::Setup(format!(
                "replication slot {:?} does not exist and source.create_slot is false; create it with SELECT pg_create_logical_replication_slot('{}', 'pgoutput')",
                src.slot, src.slot
            )))
        }
    }

    let proto = src.proto_version.to_string();
    let publications = setup::quote_ident(&src.publication);
    let options = [
        ("proto_version", proto.as_str()),
        ("publication_names", publications.as_str()),
        ("messages", "true"),
    ];
    let (mut stream, status_sender) = repl
        .start_logical_replication(&src.slot, Lsn::ZERO, &options)
        .await?;
    info!(slot = %src.slot, timeline = system.timeline, server_lsn = %system.xlogpos, "replicating");
    ctx.health.set_replicating(true);
    ctx.metrics.replicating.set(1);

    let progress = Arc::new(Progress::default());
    let reply_now = Arc::new(Notify::new());
    let (stop_status, stop_rx) = oneshot::channel();
    let status_task = tokio::spawn(status::run(
        status_sender,
        progress.clone(),
        ctx.metrics.clone(),
        reply_now.clone(),
        stop_rx,
        Duration::from_millis(src.status_interval_ms),
    ));

    let (ack_tx, ack_rx) = mpsc::channel(ACK_QUEUE);
    let router = {
        let p = publisher.clone();
        Router::new(
            &config.outbox.route,
            Arc::new(move |d: &str| p.validate_destination(d)),
        )
        .map_err(|e| RelayError::Config(crate::config::ConfigError(e)))?
    };
    let mapper = Mapper::new(config.outbox.clone(), router);
    publisher
        .validate_destination(&mapper.dead_letter_destination())
        .map_err(|e| {
            RelayError::Config(crate::config::ConfigError(format!(
                "outbox.dead_letter_destination: {e}"
            )))
        })?;
    let mut acker_task = tokio::spawn(
        Acker {
            publisher: publisher.clone(),
            progress: progress.clone(),
            metrics: ctx.metrics.clone(),
            policy: config.outbox.on_invalid,
            dead_letter: mapper.dead_letter_destination(),
        }
        .run(ack_rx),
    );
    let heartbeat_task = (src.heartbeat_interval_ms > 0).then(|| {
        let metrics = ctx.metrics.clone();
        let interval = Duration::from_millis(src.heartbeat_interval_ms);
        let sql = sql;
        AbortOnDrop(tokio::spawn(async move {
            heartbeat::run(&sql, interval, metrics).await
        }))
    });

    let mut reader = Reader {
        publisher: publisher.clone(),
        metrics: ctx.metrics.clone(),
        mapper,
        policy: config.outbox.on_invalid,
        budget: Budget::new(config.pipeline.inflight_bytes),
        max_batch: config.pipeline.max_batch_events,
        ack_tx,
        batch: Batch::default(),
        tx: None,
        last_mark: Lsn::ZERO,
        shutdown: shutdown.clone(),
    };

    // The read loop. It ends on shutdown, on an error, or when the acker fails.
    let outcome: Result<(), RelayError> = loop {
        let msg = tokio::select! {
            biased;
            _ = shutdown.changed() => break Ok(()),
            acked = &mut acker_task => break Err(acker_result(acked).err().unwrap_or_else(|| RelayError::StreamEnded("the acknowledgement queue closed".into()))),
            msg = stream.next() => msg,
        };
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => {
                break Err(RelayError::StreamEnded(
                    "the server ended the replication stream".into(),
                ))
            }
            Err(e) => break Err(e.into()),
        };
        let step = match msg {
            ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                data,
                ..
            } => {
                progress.note_received(wal_start);
                progress.note_server_wal_end(wal_end);
                ctx.metrics.replication_bytes.inc_by(data.len() as u64);
                match decode(&data, DecodeContext::TOP_LEVEL) {
                    Ok(m) => reader.on_message(m).await,
                    Err(e) => Err(e.into()),
                }
            }
            ReplicationMessage::PrimaryKeepalive {
                wal_end,
                reply_requested,
                ..
            } => {
                progress.note_server_wal_end(wal_end);
                if reply_requested {
                    reply_now.notify_one();
                }
                reader.on_idle_position(wal_end).await
            }
        };
        match step {
            Ok(true) => {}
            Ok(false) => break Ok(()), // shutdown while waiting for budget
            Err(e) => break Err(e),
        }
    };
    ctx.health.set_replicating(false);
    ctx.metrics.replicating.set(0);
    drop(heartbeat_task);

    // Drain: events of a transaction whose Commit was not read are dropped here and not
    // acknowledged; they are read again by the next session.
    let Reader { ack_tx, batch, .. } = reader;
    drop(batch);
    drop(ack_tx);
    let drain_timeout = Duration::from_millis(config.pipeline.shutdown_timeout_ms);
    let drained = if acker_task.is_finished() || outcome.is_err() {
        // On error the acker's own result (if any) is secondary; stop it.
        acker_task.abort();
        Ok(())
    } else {
        match tokio::time::timeout(drain_timeout, &mut acker_task).await {
            Ok(r) => acker_result(r),
            Err(_) => {
                acker_task.abort();
                warn!(
                    timeout_ms = config.pipeline.shutdown_timeout_ms,
                    "in-flight events were not all acknowledged in time; they will be replayed"
                );
                Ok(())
            }
        }
    };
    if outcome.is_ok() {
        if let Err(e) = publisher.flush(Duration::from_secs(5)).await {
            warn!(error = %e, "producer flush at shutdown");
        }
    }
    // Final status update with the final watermark, then CopyDone.
    let _ = stop_status.send(());
    match tokio::time::timeout(Duration::from_secs(5), status_task).await {
        Ok(Ok(Ok(()))) => info!(flush = %progress.flushed(), "final status sent"),
        Ok(Ok(Err(e))) if outcome.is_ok() => warn!(error = %e, "final status update failed"),
        _ => {}
    }
    outcome.and(drained)
}

fn acker_result(
    r: Result<Result<(), RelayError>, tokio::task::JoinError>,
) -> Result<(), RelayError> {
    match r {
        Ok(r) => r,
        Err(e) if e.is_cancelled() => Ok(()),
        Err(e) => Err(RelayError::Protocol(format!(
            "the acknowledgement task panicked: {e}"
        ))),
    }
}

/// Aborts a background task when the session ends, however it ends.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Default)]
struct Batch {
    events: Vec<OutboxEvent>,
    bytes: usize,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Decoded messages → mapped events → batches in commit order.
struct Reader {
    publisher: Arc<dyn Publisher>,
    metrics: Metrics,
    mapper: Mapper,
    policy: InvalidEventPolicy,
    budget: Budget,
    max_batch: usize,
    ack_tx: mpsc::Sender<AckItem>,
    batch: Batch,
    /// The open transaction, between Begin and Commit.
    tx: Option<TxContext>,
    last_mark: Lsn,
    shutdown: watch::Receiver<bool>,
}

impl Reader {
    /// Returns `Ok(false)` when shutdown was requested while waiting.
    async fn on_message(&mut self, msg: M) -> Result<bool, RelayError> {
        match msg {
            M::Begin(b) => {
                self.tx = Some(TxContext {
                    commit_lsn: b.final_lsn,
                    commit_time_us: pg_timestamp_to_unix_micros(b.commit_ts),
                });
            }
            M::Commit(c) => {
                if self.tx.take().is_none() {
                    return Err(RelayError::Protocol(format!(
                        "Commit {} without Begin",
                        c.commit_lsn
                    )));
                }
                self.metrics.transactions.inc();
                // pgoutput only sends committed transactions (aborted subtransactions
                // are already left out), so the batch may already be partly in flight;
                // the watermark moves past this commit only when all of it is durable.
                return self.dispatch(Some(c.end_lsn)).await.map(|_| true);
            }
            M::Relation(r) => self.mapper.on_relation(&r)?,
            M::Insert(i) => {
                let tx = self.open_tx("Insert")?;
                let mapped = self.mapper.map_insert(&i, &tx)?;
                return self.on_mapped(mapped).await;
            }
            M::Message(m) => {
                let tx = if m.transactional {
                    self.open_tx("Message")?
                } else {
                    TxContext {
                        commit_lsn: m.lsn,
                        commit_time_us: unix_now_us(),
                    }
                };
                let mapped = self.mapper.map_message(&m, &tx);
                let go_on = self.on_mapped(mapped).await?;
                if !m.transactional && self.tx.is_none() {
                    // A non-transactional message stands alone: once it (if it was an
                    // event) is durable, its position is done.
                    self.dispatch(Some(m.lsn)).await?;
                }
                return Ok(go_on);
            }
            M::Update(_) => self
                .metrics
                .ignored_changes
                .with_label_values(&["update"])
                .inc(),
            M::Delete(_) => self
                .metrics
                .ignored_changes
                .with_label_values(&["delete"])
                .inc(),
            M::Truncate(_) => self
                .metrics
                .ignored_changes
                .with_label_values(&["truncate"])
                .inc(),
            M::Origin(_) | M::Type(_) => {}
            M::StreamStart(_) | M::StreamStop | M::StreamCommit(_) | M::StreamAbort(_) => {
                return Err(RelayError::Protocol(format!(
                    "received {} although streaming of in-progress transactions was not requested",
                    msg.name()
                )))
            }
        }
        Ok(true)
    }

    fn open_tx(&self, what: &str) -> Result<TxContext, RelayError> {
        self.tx
            .ok_or_else(|| RelayError::Protocol(format!("{what} outside a transaction")))
    }

    /// A keepalive outside a transaction: everything before `lsn` has been sent to us, so
    /// once what we hold is durable, `lsn` is a safe flush position. This is what lets
    /// the slot advance when nothing the publication covers is being written.
    async fn on_idle_position(&mut self, lsn: Lsn) -> Result<bool, RelayError> {
        if self.tx.is_none() && self.batch.events.is_empty() && lsn > self.last_mark {
            self.send(AckItem::mark(lsn)).await?;
            self.last_mark = lsn;
        }
        Ok(true)
    }

    async fn on_mapped(&mut self, mapped: Mapped) -> Result<bool, RelayError> {
        match mapped {
            Mapped::Event(e) => self.push(e).await,
            Mapped::NotOutbox => Ok(true),
            Mapped::Invalid(inv) => {
                self.metrics
                    .invalid_events
                    .with_label_values(&[inv.reason.label()])
                    .inc();
                warn!(source = %inv.source, event_id = ?inv.id, commit_lsn = %inv.tx.commit_lsn, reason = inv.reason.label(), error = %inv.message, "invalid outbox event");
                match self.policy {
                    InvalidEventPolicy::Halt => Err(RelayError::Halted(format!(
                        "{} (source {}, commit {}, id {:?})",
                        inv.message, inv.source, inv.tx.commit_lsn, inv.id
                    ))),
                    InvalidEventPolicy::DeadLetter => {
                        let dl = self.mapper.dead_letter(&inv);
                        self.push(dl).await
                    }
                }
            }
        }
    }

    async fn push(&mut self, event: OutboxEvent) -> Result<bool, RelayError> {
        let cost = event.budget_bytes();
        let permit = match self.budget.try_take(cost) {
            Some(p) => p,
            None => {
                // Hand over what we hold first: its acknowledgement is what frees budget.
                self.dispatch(None).await?;
                let mut shutdown = self.shutdown.clone();
                tokio::select! {
                    p = self.budget.take(cost) => p,
                    _ = shutdown.changed() => return Ok(false),
                }
            }
        };
        match &mut self.batch.permit {
            Some(p) => p.merge(permit),
            slot => *slot = Some(permit),
        }
        self.batch.bytes += cost;
        self.batch.events.push(event);
        if self.batch.events.len() >= self.max_batch {
            self.dispatch(None).await?;
        }
        Ok(true)
    }

    /// Hands the batch to the publisher (in order) and queues its delivery; `watermark`
    /// is the position that becomes durable with it.
    async fn dispatch(&mut self, watermark: Option<Lsn>) -> Result<(), RelayError> {
        let batch = std::mem::take(&mut self.batch);
        if let Some(w) = watermark {
            self.last_mark = self.last_mark.max(w);
        }
        if batch.events.is_empty() {
            if let Some(w) = watermark {
                self.send(AckItem::mark(w)).await?;
            }
            return Ok(());
        }
        let events = batch.events.len();
        self.metrics.inflight_events.add(events as i64);
        self.metrics.inflight_bytes.add(batch.bytes as i64);
        let accepted_at = Instant::now();
        let delivery = self.publisher.accept(batch.events).await?;
        self.send(AckItem {
            delivery: Some(delivery),
            accepted_at,
            events,
            bytes: batch.bytes,
            permit: batch.permit,
            watermark,
        })
        .await
    }

    async fn send(&self, item: AckItem) -> Result<(), RelayError> {
        self.ack_tx
            .send(item)
            .await
            .map_err(|_| RelayError::StreamEnded("the acknowledgement task stopped".into()))
    }
}
