//! The at-least-once core of a session, without sockets: replication messages in, batches
//! to the publisher in commit order, the flush watermark out.
//!
//! A session owns the connections; the flow owns the reader (decode → map → batch →
//! `accept`) and the acker task (await deliveries in accept order → advance
//! [`Progress::flushed`]). Keeping the two apart from the sockets is what lets the
//! pipeline's tests drive it with encoded pgoutput frames and a scripted publisher.

use std::sync::Arc;
use std::time::Duration;

use outbox_connectors::Publisher;
use outbox_pgoutput::{decode, DecodeContext, LogicalReplicationMessage, Lsn};
use outbox_pgwire::ReplicationMessage;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::warn;

use super::ack::{unix_now_us, AckItem, Acker};
use super::budget::Budget;
use super::bulkhead::Bulkhead;
use super::cleanup::CleanupObserver;
use super::diversion::Diversion;
use super::pacing::{Pacing, ReadPace};
use super::reader::{Batch, Reader};
use super::rejections::Rejections;
use super::Progress;
use crate::config::InvalidEventPolicy;
use crate::error::RelayError;
use crate::outbox::Mapper;
use crate::state::Parking;
use crate::telemetry::Metrics;

/// Batches queued for acknowledgement at most; the byte budget is the real bound.
const ACK_QUEUE: usize = 4096;

/// What the flow needs besides the publisher and the mapper.
#[derive(Debug, Clone, Copy)]
pub struct FlowSettings {
    pub policy: InvalidEventPolicy,
    pub inflight_bytes: usize,
    pub max_batch_events: usize,
    /// Transactions committed before this position were already delivered (the
    /// recorded progress): a server replay of them is skipped.
    pub skip_before: Lsn,
}

/// What outlives a session: permanent rejections the next session must not resend.
#[derive(Default, Clone)]
pub struct FlowMemory {
    pub rejections: Arc<Rejections>,
}

/// What the flow keeps beyond its own batches: memory across sessions, and the
/// session's parking (when the state tables are usable).
#[derive(Default, Clone)]
pub struct FlowState {
    pub memory: FlowMemory,
    pub parking: Option<Arc<Parking>>,
    /// With `circuit_breaker.on_open: park` (which needs `parking`).
    pub diversion: Option<Arc<Diversion>>,
    /// With `pipeline.destination_share` below 1 (which needs `diversion`).
    pub bulkhead: Option<Arc<Bulkhead>>,
    /// Notes outbox rows for `outbox.cleanup` (see `cleanup.rs`).
    pub cleanup: Option<CleanupObserver>,
}

pub struct Flow {
    reader: Reader,
    acker: JoinHandle<Result<(), RelayError>>,
    /// The acker's handle was awaited to completion (it must not be polled again).
    acker_done: bool,
    progress: Arc<Progress>,
    metrics: Metrics,
    cleanup: Option<CleanupObserver>,
    pacing: Pacing,
    /// A new read gap for the stream, for the session to apply (see `pacing.rs`).
    read_pace: Option<ReadPace>,
}

impl Flow {
    /// Starts the acker. `progress` starts at the position the slot resumes from.
    pub fn start(
        publisher: Arc<dyn Publisher>,
        mapper: Mapper,
        progress: Arc<Progress>,
        metrics: Metrics,
        settings: FlowSettings,
        state: FlowState,
        shutdown: watch::Receiver<bool>,
    ) -> Flow {
        let (ack_tx, ack_rx) = mpsc::channel(ACK_QUEUE);
        let acker = tokio::spawn(
            Acker {
                publisher: publisher.clone(),
                progress: progress.clone(),
                metrics: metrics.clone(),
                policy: settings.policy,
                dead_letter: mapper.dead_letter_destination(),
                rejections: state.memory.rejections.clone(),
                parking: state.parking.clone(),
                diversion: state.diversion.clone(),
                bulkhead: state.bulkhead.clone(),
                log_limiter: std::sync::Mutex::new(outbox_connectors::policy::RateLimiter::new(
                    outbox_connectors::policy::LOG_WINDOW,
                )),
            }
            .run(ack_rx),
        );
        let committed = publisher.committed_position();
        let reader = Reader {
            committed,
            publisher,
            metrics: metrics.clone(),
            mapper,
            policy: settings.policy,
            budget: Budget::new(settings.inflight_bytes),
            max_batch: settings.max_batch_events,
            ack_tx,
            batch: Batch::default(),
            tx: None,
            last_mark: Lsn::ZERO,
            shutdown,
            skip_before: settings.skip_before,
            skipping: false,
            rejections: state.memory.rejections,
            parking: state.parking,
            diversion: state.diversion,
            bulkhead: state.bulkhead,
        };
        Flow {
            reader,
            acker,
            acker_done: false,
            progress,
            metrics,
            cleanup: state.cleanup,
            pacing: Pacing::default(),
            read_pace: None,
        }
    }

    /// The pace the stream should read at now, when it changed (see `pacing.rs`).
    pub fn take_read_pace(&mut self) -> Option<ReadPace> {
        self.read_pace.take()
    }

    /// Takes one message of the replication stream. `Ok(false)`: shutdown was requested
    /// while waiting for budget.
    pub async fn on_message(&mut self, msg: ReplicationMessage) -> Result<bool, RelayError> {
        let step = match msg {
            ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                data,
                ..
            } => {
                self.progress.note_received(wal_start);
                self.progress.note_server_wal_end(wal_end);
                self.metrics.replication_bytes.inc_by(data.len() as u64);
                match decode(&data, DecodeContext::TOP_LEVEL) {
                    Ok(m) => {
                        if let LogicalReplicationMessage::Begin(b) = &m {
                            if let Some(pace) = self.pacing.on_begin(b.commit_ts, unix_now_us()) {
                                self.read_pace = Some(pace);
                            }
                        }
                        if let Some(c) = &mut self.cleanup {
                            c.observe(&m);
                        }
                        self.reader.on_message(m).await
                    }
                    Err(e) => Err(e.into()),
                }
            }
            ReplicationMessage::PrimaryKeepalive { wal_end, .. } => {
                self.progress.note_server_wal_end(wal_end);
                if let Some(c) = &mut self.cleanup {
                    c.idle(wal_end);
                }
                self.reader.on_idle_position(wal_end).await
            }
        };
        match step {
            // The reader fails to queue when the acker has stopped; the acker's error
            // (a halt, a fatal sink error) is the cause and decides whether the relay
            // restarts, so it must not be replaced by "the queue closed".
            Err(e) if self.reader.ack_queue_closed() => {
                Err(self.acker_stopped().await.unwrap_or(e))
            }
            step => step,
        }
    }

    /// Takes a message that did not come from the stream (a snapshot's rows, shaped as
    /// pgoutput messages): the same mapping, batching and acknowledgement as streamed
    /// ones. `Ok(false)`: shutdown was requested while waiting for budget.
    pub(super) async fn on_decoded(
        &mut self,
        msg: LogicalReplicationMessage,
    ) -> Result<bool, RelayError> {
        match self.reader.on_message(msg).await {
            Err(e) if self.reader.ack_queue_closed() => {
                Err(self.acker_stopped().await.unwrap_or(e))
            }
            step => step,
        }
    }

    /// Waits until the acker has finished everything handed over so far (delivered,
    /// dead-lettered or parked). A marker holding a permit of its own goes through the
    /// acknowledgement queue; the acker drops the permit once it is done with it (or
    /// with the queue, when it stops).
    pub(super) async fn settle(&mut self) -> Result<(), RelayError> {
        let done = Arc::new(tokio::sync::Semaphore::new(1));
        let permit = done.clone().acquire_owned().await.expect("never closed");
        let mut marker = AckItem::mark(self.progress.flushed());
        marker.permit = Some(permit);
        if self.reader.ack_tx.send(marker).await.is_err() {
            return Err(self.acker_stopped().await.unwrap_or_else(|| {
                RelayError::StreamEnded("the acknowledgement queue closed".into())
            }));
        }
        let _ = done.acquire().await;
        if self.acker.is_finished() {
            return Err(self.acker_stopped().await.unwrap_or_else(|| {
                RelayError::StreamEnded("the acknowledgement queue closed".into())
            }));
        }
        Ok(())
    }

    /// Resolves when the acker stops before the reader is done: always an error (or
    /// `None` if it had already been reported).
    pub async fn acker_stopped(&mut self) -> Option<RelayError> {
        if self.acker_done {
            return None;
        }
        let result = (&mut self.acker).await;
        self.acker_done = true;
        Some(
            acker_result(result).err().unwrap_or_else(|| {
                RelayError::StreamEnded("the acknowledgement queue closed".into())
            }),
        )
    }

    /// Ends the flow. After a clean stop (`outcome` Ok) the acker gets `drain_timeout` to
    /// see in-flight events acknowledged; after an error it is stopped at once. Events of
    /// a transaction whose Commit was not read are dropped and not acknowledged; the next
    /// session reads them again.
    pub async fn finish(
        self,
        outcome: &Result<(), RelayError>,
        drain_timeout: Duration,
    ) -> Result<(), RelayError> {
        let Flow {
            reader,
            mut acker,
            acker_done,
            ..
        } = self;
        drop(reader);
        if acker_done || outcome.is_err() {
            acker.abort();
            return Ok(());
        }
        match tokio::time::timeout(drain_timeout, &mut acker).await {
            Ok(r) => acker_result(r),
            Err(_) => {
                acker.abort();
                warn!(
                    timeout_ms = drain_timeout.as_millis() as u64,
                    "in-flight events were not all acknowledged in time; they will be replayed"
                );
                Ok(())
            }
        }
    }
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
