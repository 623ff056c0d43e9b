//! One replication session: connect, prepare, stream, and end cleanly or with an error.

use std::sync::Arc;
use std::time::Duration;

use outbox_connectors::Publisher;
use outbox_pgoutput::{decode, DecodeContext, Lsn};
use outbox_pgwire::{connect_sql, ReplicationClient, ReplicationMessage};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::ack::Acker;
use super::budget::Budget;
use super::reader::{Batch, Reader};
use super::{status, Progress};
use crate::config::Config;
use crate::error::RelayError;
use crate::outbox::{Mapper, Router};
use crate::source::{heartbeat, setup, wal_position};
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
    // Where the slot resumes is already acknowledged: start the watermark there, so lag
    // and the status updates are meaningful before the first event is durable.
    let resume_at = match slot {
        Some(info) => {
            info!("{}", setup::verify_slot(&info, &src.slot, &src.database)?);
            info.confirmed_flush.unwrap_or(Lsn::ZERO)
        }
        None if src.create_slot => {
            let created = repl.create_logical_slot(&src.slot, "pgoutput").await?;
            info!(slot = %src.slot, consistent_point = %created.consistent_point, "created replication slot");
            created.consistent_point
        }
        None => {
            return Err(RelayError::Setup(format!(
                "replication slot {:?} does not exist and source.create_slot is false; create it with SELECT pg_create_logical_replication_slot('{}', 'pgoutput')",
                src.slot, src.slot
            )))
        }
    };

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
    progress.advance_flushed(resume_at);
    progress.note_received(resume_at);
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
    let sql = Arc::new(sql);
    let heartbeat_task = (src.heartbeat_interval_ms > 0).then(|| {
        let interval = Duration::from_millis(src.heartbeat_interval_ms);
        AbortOnDrop(tokio::spawn(heartbeat::run(
            sql.clone(),
            interval,
            ctx.metrics.clone(),
        )))
    });
    let wal_position_task = AbortOnDrop(tokio::spawn(wal_position::run(
        sql.clone(),
        progress.clone(),
        Duration::from_millis(src.status_interval_ms),
    )));

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
    drop(wal_position_task);

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
