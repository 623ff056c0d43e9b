//! The acker: awaits deliveries in the order batches were accepted and advances the
//! flush watermark past a commit only when everything before it is durable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use outbox_connectors::policy::RateLimiter;
use outbox_connectors::{
    Delivery, ErrorClass, EventOutcome, OutboxEvent, PublishError, Publisher, Text,
};
use outbox_pgoutput::Lsn;
use prometheus::Histogram;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tracing::{error, warn};

use super::bulkhead::Bulkhead;
use super::diversion::{Diversion, CIRCUIT_OPEN};
use super::rejections::Rejections;
use super::Progress;
use crate::config::InvalidEventPolicy;
use crate::error::{FailedEvent, RelayError};
use crate::outbox::{dead_letter_of_rejected, dead_letter_summary, HEADER_REASON};
use crate::state::{ParkRequest, Parking};
use crate::telemetry::Metrics;

/// One entry of the acknowledgement queue: a batch handed to the sink, a position that
/// becomes durable once everything queued before it is, or both.
pub struct AckItem {
    pub delivery: Option<Delivery>,
    /// The delivery's events, kept with `on_open: park` so that they can be parked if
    /// their destination's circuit opens while the connector holds them.
    pub copies: Option<Vec<OutboxEvent>>,
    /// Bytes the batch holds per destination against its bulkhead.
    pub holds: Vec<(Arc<str>, usize)>,
    /// Events for the parking table, written once the delivery is settled.
    pub parks: Vec<ParkRequest>,
    pub accepted_at: Instant,
    pub events: usize,
    pub bytes: usize,
    /// Released (returning budget) once the batch is finished.
    pub permit: Option<OwnedSemaphorePermit>,
    /// Flush position reached once this item and all before it are finished: the end LSN
    /// of the last transaction whose events are all in this or earlier items.
    pub watermark: Option<Lsn>,
}

impl AckItem {
    pub fn mark(lsn: Lsn) -> Self {
        AckItem {
            delivery: None,
            copies: None,
            holds: Vec::new(),
            parks: Vec::new(),
            accepted_at: Instant::now(),
            events: 0,
            bytes: 0,
            permit: None,
            watermark: Some(lsn),
        }
    }
}

pub struct Acker {
    pub publisher: Arc<dyn Publisher>,
    pub progress: Arc<Progress>,
    pub metrics: Metrics,
    pub policy: InvalidEventPolicy,
    pub dead_letter: Arc<str>,
    pub rejections: Arc<Rejections>,
    pub parking: Option<Arc<Parking>>,
    /// Present with `circuit_breaker.on_open: park`.
    pub diversion: Option<Arc<Diversion>>,
    /// Present with `pipeline.destination_share` below 1.
    pub bulkhead: Option<Arc<Bulkhead>>,
    /// Holds back repeats of the diversion warning (one per batch otherwise).
    pub log_limiter: std::sync::Mutex<RateLimiter>,
}

impl Acker {
    pub async fn run(self, mut rx: mpsc::Receiver<AckItem>) -> Result<(), RelayError> {
        let sink = self.publisher.kind();
        while let Some(item) = rx.recv().await {
            // Rejected events of this batch, to park (with `on_invalid: park`).
            let mut rejected: Vec<ParkRequest> = Vec::new();
            if let Some(delivery) = item.delivery {
                self.progress.set_oldest_inflight(Some(item.accepted_at));
                let outcomes = match (&self.diversion, item.copies) {
                    (Some(diversion), Some(copies)) => {
                        match settle_or_divert(delivery, diversion, copies).await {
                            Ok(outcomes) => outcomes,
                            Err(copies) => {
                                rejected.extend(self.divert(copies));
                                Vec::new()
                            }
                        }
                    }
                    _ => delivery.await,
                };
                self.progress.set_oldest_inflight(None);
                if let Some(spans) = &self.metrics.spans {
                    spans.batch(sink, item.accepted_at, &outcomes);
                }
                self.metrics
                    .publish_duration
                    .with_label_values(&[sink])
                    .observe(item.accepted_at.elapsed().as_secs_f64());
                let now_us = unix_now_us();
                // Runs of one destination share one label lookup for the count and the
                // latency histogram.
                let mut run: Option<(Arc<str>, u64, Histogram)> = None;
                for outcome in outcomes {
                    match outcome.result {
                        Ok(()) => {
                            let e = &outcome.event;
                            if Arc::ptr_eq(&e.destination, &self.dead_letter)
                                || *e.destination == *self.dead_letter
                            {
                                let reason =
                                    header(e, HEADER_REASON).unwrap_or_else(|| "unknown".into());
                                self.metrics
                                    .dead_letter_events
                                    .with_label_values(&[&reason])
                                    .inc();
                            }
                            let same =
                                matches!(&run, Some((d, _, _)) if Arc::ptr_eq(d, &e.destination));
                            if !same {
                                if let Some((d, n, _)) = run.take() {
                                    self.count(sink, &d, "ok", n);
                                }
                                let h = self.metrics.end_to_end_latency.with_label_values(&[
                                    sink,
                                    self.metrics.destinations.label(&e.destination),
                                ]);
                                run = Some((e.destination.clone(), 0, h));
                            }
                            if let Some((_, n, h)) = &mut run {
                                *n += 1;
                                h.observe((now_us - e.commit_time_us).max(0) as f64 / 1e6);
                            }
                        }
                        Err(err) => {
                            if let Some(park) = self.failed(outcome.event, err).await? {
                                rejected.push(park);
                            }
                        }
                    }
                }
                if let Some((d, n, _)) = run {
                    self.count(sink, &d, "ok", n);
                }
            }
            if !rejected.is_empty() || !item.parks.is_empty() {
                let parking = self.parking.as_ref().ok_or_else(|| {
                    RelayError::Setup("events to park but no parking table".into())
                })?;
                parking.park(&rejected).await?;
                parking.park(&item.parks).await?;
                for p in rejected.iter().chain(&item.parks) {
                    self.count(sink, &p.event.destination, "parked", 1);
                }
            }
            if let Some(w) = item.watermark {
                self.progress.advance_flushed(w);
            }
            if let Some(bulkhead) = &self.bulkhead {
                bulkhead.release(&item.holds);
            }
            self.metrics.inflight_events.sub(item.events as i64);
            self.metrics.inflight_bytes.sub(item.bytes as i64);
            drop(item.permit);
        }
        Ok(())
    }

    /// The connector holds these events for a destination whose circuit opened: park
    /// copies of them (see `diversion.rs`). Their aggregates are parked from this moment,
    /// so the reader parks every later event of them.
    fn divert(&self, copies: Vec<OutboxEvent>) -> Vec<ParkRequest> {
        let parking = self
            .parking
            .as_ref()
            .expect("on_open: park is only enabled with parking");
        let destination = copies.first().map(|e| e.destination.clone());
        let destination = destination.as_deref().unwrap_or("");
        let more = self
            .log_limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit_suffix(destination, std::time::Instant::now());
        if let Some(more) = more {
            warn!(events = copies.len(), %destination,
                "a circuit opened while these events were in flight; parking them (the connector may still deliver them once, before their redriven copies){more}");
        }
        copies
            .into_iter()
            .map(|event| {
                parking.mark(&event.aggregate_id);
                ParkRequest {
                    reason: CIRCUIT_OPEN.into(),
                    error: format!(
                        "in flight to {} when its circuit opened (circuit_breaker.on_open: park)",
                        event.destination
                    ),
                    event,
                }
            })
            .collect()
    }

    fn count(&self, sink: &str, destination: &str, result: &str, n: u64) {
        let destination = self.metrics.destinations.label(destination);
        self.metrics
            .events_published
            .with_label_values(&[sink, destination, result])
            .inc_by(n);
    }

    /// A permanent rejection takes the policy's outcome: parking (returned, for the
    /// caller to write with the batch), a dead letter, or a halt. Anything else ends the
    /// session without acknowledging the event, so it is replayed.
    async fn failed(
        &self,
        event: OutboxEvent,
        err: PublishError,
    ) -> Result<Option<ParkRequest>, RelayError> {
        let sink = self.publisher.kind();
        self.metrics
            .errors
            .with_label_values(&[&format!("sink_{}", err.kind)])
            .inc();
        self.count(sink, &event.destination, "failed", 1);
        if err.class != ErrorClass::Permanent {
            error!(event_id = %event.id, destination = %event.destination, error = %err, "publish failed; restarting from the last confirmed position");
            return Err(RelayError::EventFailed {
                event: FailedEvent::of(&event),
                error: err,
            });
        }
        if self.policy == InvalidEventPolicy::Halt {
            return Err(RelayError::Halted(format!(
                "event {} for {} was rejected: {err}",
                event.id, event.destination
            )));
        }
        self.rejections.remember(&event, &err);
        if self.policy == InvalidEventPolicy::Park {
            if let Some(parking) = &self.parking {
                // Parked now, so the reader parks the aggregate's later events.
                parking.mark(&event.aggregate_id);
            }
            error!(event_id = %event.id, destination = %event.destination, error = %err,
                "the broker rejected the event permanently; parking it and every later event of its aggregate");
            return Ok(Some(ParkRequest {
                reason: err.kind.into(),
                error: err.to_string(),
                event,
            }));
        }
        let is_dead_letter = *event.destination == *self.dead_letter;
        if !is_dead_letter {
            error!(event_id = %event.id, destination = %event.destination, dead_letter = %self.dead_letter, error = %err,
                "the broker rejected the event permanently; publishing it to the dead-letter destination");
        }
        // The event's own copy first (a record already bound for the dead-letter
        // destination has none); if the destination refuses that too, a summary any sink
        // can carry.
        let copy = (!is_dead_letter)
            .then(|| dead_letter_of_rejected(&event, &err, self.dead_letter.clone()));
        let summary = dead_letter_summary(&event, &err, self.dead_letter.clone());
        let mut last_error = err.clone();
        for dl in copy.into_iter().chain([summary]) {
            match self.deliver_one(dl).await {
                Ok(()) => {
                    warn!(event_id = %event.id, "dead-lettered");
                    self.metrics
                        .dead_letter_events
                        .with_label_values(&[err.kind])
                        .inc();
                    self.count(sink, &event.destination, "dead_lettered", 1);
                    return Ok(None);
                }
                Err(e) if e.class == ErrorClass::Permanent => {
                    warn!(event_id = %event.id, error = %e, "the dead-letter destination rejected the record; trying a summary of it");
                    last_error = e;
                }
                Err(e) => {
                    last_error = e;
                    break;
                }
            }
        }
        error!(event_id = %event.id, error = %last_error, "the event could not be dead-lettered");
        Err(RelayError::EventFailed {
            event: FailedEvent::of(&event),
            error: PublishError::new(
                last_error.class,
                "dead_letter_failed",
                format!(
                    "rejected ({err}) and the dead-letter destination {} refused it too: {last_error}",
                    self.dead_letter
                ),
            ),
        })
    }

    /// Publishes one record and waits for its outcome.
    async fn deliver_one(&self, event: OutboxEvent) -> Result<(), PublishError> {
        let delivery = self.publisher.accept(vec![event]).await?;
        for outcome in delivery.await {
            outcome.result?;
        }
        Ok(())
    }
}

/// Waits for `delivery`; gives up on it (returning the copies) once one of its events'
/// destinations is diverted. A delivery that has finished always wins: an outcome the
/// connector already has is never thrown away.
async fn settle_or_divert(
    delivery: Delivery,
    diversion: &Diversion,
    copies: Vec<OutboxEvent>,
) -> Result<Vec<EventOutcome>, Vec<OutboxEvent>> {
    let mut changes = diversion.subscribe();
    let mut delivery = delivery;
    loop {
        if let Some(outcomes) = (&mut delivery).now_or_never() {
            return Ok(outcomes);
        }
        if copies.iter().any(|e| diversion.diverts(&e.destination)) {
            return Err(copies);
        }
        tokio::select! {
            biased;
            outcomes = &mut delivery => return Ok(outcomes),
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(delivery.await);
                }
            }
        }
    }
}

fn header(e: &OutboxEvent, name: &str) -> Option<String> {
    e.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v): &(Text, Bytes)| String::from_utf8_lossy(v).into_owned())
}

pub fn unix_now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros() as i64
}
