//! The reader: decoded pgoutput messages → mapped events → batches handed to the
//! publisher in commit order, with the in-flight budget taken before each event.

use std::sync::Arc;
use std::time::Instant;

use outbox_connectors::{ErrorClass, OutboxEvent, PublishError, Publisher};
use outbox_pgoutput::{pg_timestamp_to_unix_micros, LogicalReplicationMessage as M, Lsn};
use tokio::sync::{mpsc, watch};
use tracing::warn;

use super::ack::{unix_now_us, AckItem};
use super::budget::Budget;
use super::bulkhead::{add_hold, Bulkhead, BULKHEAD_FULL};
use super::diversion::{Diversion, CIRCUIT_OPEN};
use super::rejections::Rejections;
use crate::config::InvalidEventPolicy;
use crate::error::RelayError;
use crate::outbox::{dead_letter_of_rejected, Mapped, Mapper, TxContext};
use crate::state::{ParkRequest, Parking, BEHIND_PARKED};
use crate::telemetry::Metrics;

#[derive(Default)]
pub(super) struct Batch {
    pub(super) events: Vec<OutboxEvent>,
    /// Events for the parking table instead of the sink, in commit order.
    pub(super) parks: Vec<ParkRequest>,
    pub(super) bytes: usize,
    pub(super) permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Bytes held per destination against its bulkhead.
    pub(super) holds: Vec<(Arc<str>, usize)>,
}

/// Decoded messages → mapped events → batches in commit order.
pub(super) struct Reader {
    pub(super) publisher: Arc<dyn Publisher>,
    pub(super) metrics: Metrics,
    pub(super) mapper: Mapper,
    pub(super) policy: InvalidEventPolicy,
    pub(super) budget: Budget,
    pub(super) max_batch: usize,
    pub(super) ack_tx: mpsc::Sender<AckItem>,
    pub(super) batch: Batch,
    /// The open transaction, between Begin and Commit.
    pub(super) tx: Option<TxContext>,
    pub(super) last_mark: Lsn,
    pub(super) shutdown: watch::Receiver<bool>,
    /// Transactions whose commit record starts before this position were delivered by an
    /// earlier session (PostgreSQL's own rule for `confirmed_flush`); a replay of them
    /// is skipped.
    pub(super) skip_before: Lsn,
    /// The open transaction is such a replay.
    pub(super) skipping: bool,
    /// Exactly-once: the newest event the broker already holds (`(commit LSN, seq)`);
    /// replayed events at or below it are skipped, not published again.
    pub(super) committed: Option<(u64, u64)>,
    pub(super) rejections: Arc<Rejections>,
    /// Present when the state tables are usable; required by `on_invalid: park`.
    pub(super) parking: Option<Arc<Parking>>,
    /// Present with `circuit_breaker.on_open: park`.
    pub(super) diversion: Option<Arc<Diversion>>,
    /// Present with `pipeline.destination_share` below 1.
    pub(super) bulkhead: Option<Arc<Bulkhead>>,
}

impl Reader {
    /// Returns `Ok(false)` when shutdown was requested while waiting.
    pub(super) async fn on_message(&mut self, msg: M) -> Result<bool, RelayError> {
        match msg {
            M::Begin(b) => {
                self.skipping = b.final_lsn < self.skip_before;
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
                if std::mem::take(&mut self.skipping) {
                    self.metrics.replayed_transactions_skipped.inc();
                    return Ok(true);
                }
                // pgoutput only sends committed transactions (aborted subtransactions
                // are already left out), so the batch may already be partly in flight;
                // the watermark moves past this commit only when all of it is durable.
                return self.dispatch(Some(c.end_lsn)).await.map(|_| true);
            }
            M::Relation(r) => self.mapper.on_relation(&r)?,
            M::Insert(_) if self.skipping => {}
            M::Message(m)
                if (m.transactional && self.skipping)
                    || (!m.transactional && m.lsn < self.skip_before) => {}
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
            // PostgreSQL 18 sends Stream Abort for an aborted subtransaction of a large
            // transaction even when streaming was not requested (protocol 1); nothing of
            // it was sent, so there is nothing to undo.
            M::StreamAbort(_) => {}
            M::StreamStart(_) | M::StreamStop | M::StreamCommit(_) => {
                return Err(RelayError::Protocol(format!(
                    "received {} although streaming of in-progress transactions was not requested",
                    msg.name()
                )))
            }
        }
        Ok(true)
    }

    /// The acker has stopped: nothing more can be queued.
    pub(super) fn ack_queue_closed(&self) -> bool {
        self.ack_tx.is_closed()
    }

    fn open_tx(&self, what: &str) -> Result<TxContext, RelayError> {
        self.tx
            .ok_or_else(|| RelayError::Protocol(format!("{what} outside a transaction")))
    }

    /// A keepalive outside a transaction: everything before `lsn` has been sent to us, so
    /// once what we hold is durable, `lsn` is a safe flush position. This is what lets
    /// the slot advance when nothing the publication covers is being written.
    pub(super) async fn on_idle_position(&mut self, lsn: Lsn) -> Result<bool, RelayError> {
        if self.tx.is_none()
            && self.batch.events.is_empty()
            && self.batch.parks.is_empty()
            && lsn > self.last_mark
        {
            self.send(AckItem::mark(lsn)).await?;
            self.last_mark = lsn;
        }
        Ok(true)
    }

    /// Exactly-once: the broker committed this event in an earlier session.
    fn already_committed(&self, e: &OutboxEvent) -> bool {
        let held = self.committed.is_some_and(|c| (e.commit_lsn, e.seq) <= c);
        if held {
            self.metrics.committed_events_skipped.inc();
        }
        held
    }

    async fn on_mapped(&mut self, mapped: Mapped) -> Result<bool, RelayError> {
        match mapped {
            Mapped::Event(e) if self.already_committed(&e) => Ok(true),
            Mapped::Event(e) => {
                if self
                    .parking
                    .as_ref()
                    .is_some_and(|p| p.is_parked(&e.aggregate_id))
                {
                    let error = format!(
                        "an earlier event of aggregate {:?} is parked",
                        e.aggregate_id
                    );
                    return self.park(e, BEHIND_PARKED.into(), error).await;
                }
                if self
                    .diversion
                    .as_ref()
                    .is_some_and(|d| d.diverts(&e.destination))
                {
                    let error = format!(
                        "the circuit of {} was open (circuit_breaker.on_open: park)",
                        e.destination
                    );
                    return self.park(e, CIRCUIT_OPEN.into(), error).await;
                }
                // Rejected permanently in an earlier session (whose connector it broke), or
                // certain to be rejected: the policy's outcome now, in commit order, rather
                // than offering it to the broker.
                let rejected = self.rejections.get(&e).or_else(|| {
                    self.publisher
                        .check(&e)
                        .err()
                        .filter(|err| err.class == ErrorClass::Permanent)
                });
                if let Some(err) = rejected {
                    return self.rejected(e, err).await;
                }
                if let Some(bulkhead) = &self.bulkhead {
                    let cost = e.budget_bytes();
                    if !bulkhead.try_hold(&e.destination, cost) {
                        let error = format!(
                            "{} held its whole share of the in-flight budget (pipeline.destination_share)",
                            e.destination
                        );
                        return self.park(e, BULKHEAD_FULL.into(), error).await;
                    }
                    return self.push(e, true).await;
                }
                self.push(e, false).await
            }
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
                        if self.already_committed(&dl) {
                            return Ok(true);
                        }
                        self.push(dl, false).await
                    }
                    InvalidEventPolicy::Park => {
                        // The record describes the row; it has no destination, so a redrive
                        // of it fails until the row is fixed or the event discarded.
                        let mut record = self.mapper.dead_letter(&inv);
                        record.destination = Arc::from("");
                        self.park(record, inv.reason.label().into(), inv.message.clone())
                            .await
                    }
                }
            }
        }
    }

    /// An event the sink would reject permanently: park it, dead-letter it, or halt.
    async fn rejected(
        &mut self,
        event: OutboxEvent,
        err: PublishError,
    ) -> Result<bool, RelayError> {
        warn!(event_id = %event.id, destination = %event.destination, error = %err, policy = ?self.policy, "the sink cannot take the event");
        match self.policy {
            InvalidEventPolicy::Halt => Err(RelayError::Halted(format!(
                "event {} for {} would be rejected: {err}",
                event.id, event.destination
            ))),
            InvalidEventPolicy::DeadLetter => {
                let dl =
                    dead_letter_of_rejected(&event, &err, self.mapper.dead_letter_destination());
                self.push(dl, false).await
            }
            InvalidEventPolicy::Park => self.park(event, err.kind.into(), err.to_string()).await,
        }
    }

    /// Routes `event` to the parking table, in order with the batch.
    async fn park(
        &mut self,
        event: OutboxEvent,
        reason: String,
        error: String,
    ) -> Result<bool, RelayError> {
        let Some(parking) = &self.parking else {
            return Err(RelayError::Setup(
                "outbox.on_invalid is park but the state tables are not usable".into(),
            ));
        };
        parking.route(&event.aggregate_id);
        let cost = event.budget_bytes();
        let go_on = self.take_budget(cost).await?;
        if !go_on {
            return Ok(false);
        }
        self.batch.bytes += cost;
        self.batch.parks.push(ParkRequest {
            event,
            reason,
            error,
        });
        if self.batch.events.len() + self.batch.parks.len() >= self.max_batch {
            self.dispatch(None).await?;
        }
        Ok(true)
    }

    /// Adds `event` to the batch; `held`: it holds `budget_bytes` against its bulkhead,
    /// given back when this batch is finished.
    async fn push(&mut self, event: OutboxEvent, held: bool) -> Result<bool, RelayError> {
        // With `on_open: park` a batch holds one destination's events, so that when its
        // circuit opens the acker parks exactly those and nothing of a healthy destination.
        if self.diversion.is_some()
            && self
                .batch
                .events
                .last()
                .is_some_and(|last| *last.destination != *event.destination)
        {
            self.dispatch(None).await?;
        }
        let cost = event.budget_bytes();
        if !self.take_budget(cost).await? {
            return Ok(false);
        }
        if held {
            add_hold(&mut self.batch.holds, &event.destination, cost);
        }
        self.batch.bytes += cost;
        self.batch.events.push(event);
        if self.batch.events.len() + self.batch.parks.len() >= self.max_batch {
            self.dispatch(None).await?;
        }
        Ok(true)
    }

    /// Takes `cost` from the budget into the batch's permit, waiting if it is used up;
    /// `Ok(false)` when shutdown came while waiting.
    async fn take_budget(&mut self, cost: usize) -> Result<bool, RelayError> {
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
        Ok(true)
    }

    /// Hands the batch to the publisher (in order) and queues its delivery; `watermark`
    /// is the position that becomes durable with it.
    async fn dispatch(&mut self, watermark: Option<Lsn>) -> Result<(), RelayError> {
        let batch = std::mem::take(&mut self.batch);
        // The next batch is sized like this one (transactions of a service tend to be
        // alike): growing from empty reallocated and copied it about log2(n) times, which
        // under callgrind was a visible share of the allocator's work per event.
        self.batch
            .events
            .reserve(batch.events.len().min(self.max_batch));
        if let Some(w) = watermark {
            self.last_mark = self.last_mark.max(w);
        }
        if batch.events.is_empty() && batch.parks.is_empty() {
            if let Some(w) = watermark {
                self.send(AckItem::mark(w)).await?;
            }
            return Ok(());
        }
        if batch.events.is_empty() {
            let events = batch.parks.len();
            self.metrics.inflight_events.add(events as i64);
            self.metrics.inflight_bytes.add(batch.bytes as i64);
            return self
                .send(AckItem {
                    delivery: None,
                    copies: None,
                    holds: batch.holds,
                    parks: batch.parks,
                    accepted_at: Instant::now(),
                    events,
                    bytes: batch.bytes,
                    permit: batch.permit,
                    watermark,
                })
                .await;
        }
        self.metrics
            .batch_events
            .with_label_values(&[self.publisher.kind()])
            .observe(batch.events.len() as f64);
        let events = batch.events.len() + batch.parks.len();
        self.metrics.inflight_events.add(events as i64);
        self.metrics.inflight_bytes.add(batch.bytes as i64);
        let accepted_at = Instant::now();
        // With `on_open: park` the acker may have to park what the connector holds.
        let copies = self.diversion.as_ref().map(|_| batch.events.clone());
        let delivery = self.publisher.accept(batch.events).await?;
        self.send(AckItem {
            delivery: Some(delivery),
            copies,
            holds: batch.holds,
            parks: batch.parks,
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
