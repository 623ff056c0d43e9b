//! The shared SNS / SQS publisher: per-aggregate lanes, batching, in-order retries.
//!
//! One dispatcher task owns all state. `accept` turns events into messages and hands them
//! over in accept order; the dispatcher appends each to its aggregate's *lane* (a queue)
//! and repeatedly builds batch requests out of the lanes that have nothing in flight and
//! are not backing off, oldest head first, one destination per request, up to
//! `max_concurrency` requests at once. A lane contributes only its head: one message in
//! flight per aggregate, standard or FIFO (the module docs say why FIFO groups are not
//! batched). When the response comes back the head is settled: a success or a permanent
//! failure leaves the lane and the next event becomes the head; a retryable failure keeps
//! it at the head, and the lane waits for its backoff and sends it again.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::client::{self, Client, EntryResult};
use super::error::may_be_transient;
use super::message::{self, Message};
use super::offload::{ObjectStore, S3Store};
use super::AwsConfig;
use crate::policy::{Backoff, RateLimiter, LOG_WINDOW};
use crate::policy::{Breaker, CircuitReport, CircuitState};
use crate::{Delivery, ErrorClass, EventOutcome, OutboxEvent, PublishError, Publisher, Text};

/// Entries per PublishBatch / SendMessageBatch request (the AWS limit).
const MAX_BATCH_ENTRIES: usize = 10;

/// The SNS / SQS publisher, over either service's [`Client`]:
/// [`SnsPublisher`](super::SnsPublisher) and [`SqsPublisher`](super::SqsPublisher). See
/// the [module docs](super).
pub struct AwsPublisher<C: Client> {
    config: AwsConfig,
    client: C,
    commands: mpsc::UnboundedSender<Vec<Job>>,
    pending: watch::Receiver<usize>,
    shared: Arc<Shared>,
    dispatcher: tokio::task::JoinHandle<()>,
}

struct Shared {
    /// Per destination: its circuit and its transitions (for metrics).
    circuits: Mutex<HashMap<Arc<str>, CircuitReport>>,
    retries: AtomicU64,
    /// The same, per destination.
    retries_by_destination: Mutex<std::collections::HashMap<Arc<str>, u64>>,
    requests: AtomicU64,
    /// Per destination: offloaded events delivered, and their bodies' bytes.
    offloaded: Mutex<HashMap<Arc<str>, (u64, u64)>>,
    fatal: Mutex<Option<PublishError>>,
}

struct Job {
    key: Text,
    event_id: Text,
    destination: Arc<str>,
    message: Arc<Message>,
    done: oneshot::Sender<EntryResult>,
}

impl<C: Client> AwsPublisher<C> {
    /// Validates `config`, resolves region and credentials from it and the AWS default
    /// chain (endpoint, credentials chain) and starts the dispatcher task. Must be called
    /// inside a Tokio runtime. Errors are `Fatal` (`config`, `invalid_credentials`).
    pub async fn new(config: &AwsConfig) -> Result<Self, PublishError> {
        config
            .validate(&format!("sink.{}", C::NAME))
            .map_err(|e| PublishError::new(ErrorClass::Fatal, "config", e))?;
        let sdk = client::load(C::NAME, config).await?;
        let client = C::new(&sdk);
        let store = config
            .large_payloads
            .offloads()
            .then(|| Arc::new(S3Store::new(&sdk, &config.large_payloads)) as Arc<dyn ObjectStore>);
        Ok(Self::start(config, client, store))
    }

    /// Starts the dispatcher on `client` and, with `large_payloads.mode: s3`, `store`
    /// (tests pass scripted ones).
    pub(crate) fn start(
        config: &AwsConfig,
        client: C,
        store: Option<Arc<dyn ObjectStore>>,
    ) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let (pending_tx, pending) = watch::channel(0);
        let shared = Arc::new(Shared {
            circuits: Mutex::new(HashMap::new()),
            retries: AtomicU64::new(0),
            retries_by_destination: Mutex::new(std::collections::HashMap::new()),
            requests: AtomicU64::new(0),
            offloaded: Mutex::new(HashMap::new()),
            fatal: Mutex::new(None),
        });
        let dispatcher = Dispatcher {
            config: config.clone(),
            client: client.clone(),
            store,
            shared: shared.clone(),
            pending: pending_tx,
            lanes: HashMap::new(),
            transient_since: HashMap::new(),
            breakers: HashMap::new(),
            log_limiter: RateLimiter::new(LOG_WINDOW),
            ready: BTreeMap::new(),
            waiting: BinaryHeap::new(),
            next_order: 0,
            queued: 0,
        };
        let dispatcher = tokio::spawn(dispatcher.run(rx));
        AwsPublisher {
            config: config.clone(),
            client,
            commands,
            pending,
            shared,
            dispatcher,
        }
    }

    /// Entries sent again after a retryable failure, since start (for metrics).
    pub fn retries(&self) -> u64 {
        self.shared.retries.load(Ordering::Relaxed)
    }

    /// Entries sent again after a retryable failure, per destination, since start.
    pub fn retries_by_destination(&self) -> Vec<(Arc<str>, u64)> {
        let map = self
            .shared
            .retries_by_destination
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(d, n)| (d.clone(), *n)).collect()
    }

    /// Offloaded events delivered and their body bytes, per destination, since start.
    pub fn offloaded_by_destination(&self) -> Vec<(Arc<str>, u64, u64)> {
        let map = self
            .shared
            .offloaded
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(d, (n, b))| (d.clone(), *n, *b)).collect()
    }

    /// Batch requests sent, since start (for metrics).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Events accepted and not yet delivered or failed.
    pub fn pending(&self) -> usize {
        *self.pending.borrow()
    }

    fn fatal(&self) -> Option<PublishError> {
        self.shared.fatal.lock().unwrap().clone()
    }
}

impl<C: Client> Drop for AwsPublisher<C> {
    fn drop(&mut self) {
        // Undelivered events resolve as Fatal `publisher_closed` (their senders drop).
        self.dispatcher.abort();
    }
}

#[async_trait::async_trait]
impl<C: Client> Publisher for AwsPublisher<C> {
    fn kind(&self) -> &'static str {
        C::NAME
    }

    fn validate_destination(&self, destination: &str) -> Result<(), String> {
        C::validate_destination(destination, self.config.fifo)
    }

    fn circuits(&self) -> Vec<CircuitReport> {
        let circuits = self
            .shared
            .circuits
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        circuits.values().cloned().collect()
    }

    /// The message checks `accept` makes (size with attributes, a body for raw payloads),
    /// made early so the relay can take the event's policy outcome in commit order.
    fn check(&self, event: &OutboxEvent) -> Result<(), PublishError> {
        message::build(event, &self.config).map(|_| ())
    }

    async fn accept(&self, batch: Vec<OutboxEvent>) -> Result<Delivery, PublishError> {
        if let Some(fatal) = self.fatal() {
            return Err(fatal);
        }
        let mut jobs = Vec::with_capacity(batch.len());
        let mut waits = Vec::with_capacity(batch.len());
        for event in &batch {
            match message::build(event, &self.config) {
                Ok(message) => {
                    let (done, wait) = oneshot::channel();
                    jobs.push(Job {
                        key: event.aggregate_id.clone(),
                        event_id: event.id.clone(),
                        destination: event.destination.clone(),
                        message: Arc::new(message),
                        done,
                    });
                    waits.push(Err(wait));
                }
                Err(e) => waits.push(Ok(Err(e))),
            }
        }
        if !jobs.is_empty() && self.commands.send(jobs).is_err() {
            return Err(closed());
        }
        Ok(async move {
            let mut outcomes = Vec::with_capacity(batch.len());
            for (event, wait) in batch.into_iter().zip(waits) {
                let result = match wait {
                    Ok(result) => result,
                    Err(wait) => wait.await.unwrap_or_else(|_| Err(closed())),
                };
                outcomes.push(EventOutcome { event, result });
            }
            outcomes
        }
        .boxed())
    }

    async fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        let mut pending = self.pending.clone();
        match tokio::time::timeout(timeout, pending.wait_for(|n| *n == 0)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(closed()),
            Err(_) => {
                return Err(PublishError::new(
                    ErrorClass::Retryable,
                    "flush_timeout",
                    format!(
                        "{} events still undelivered after {timeout:?}",
                        *self.pending.borrow()
                    ),
                ))
            }
        }
        match self.fatal() {
            Some(fatal) => Err(fatal),
            None => Ok(()),
        }
    }

    async fn probe(&self, timeout: Duration) -> Result<(), PublishError> {
        match tokio::time::timeout(timeout, self.client.probe()).await {
            Ok(result) => result,
            Err(_) => Err(PublishError::new(
                ErrorClass::Retryable,
                "unreachable",
                format!("{} did not answer within {timeout:?}", C::NAME),
            )),
        }
    }

    fn retries_by_destination(&self) -> Vec<(Arc<str>, u64)> {
        AwsPublisher::retries_by_destination(self)
    }

    fn requests(&self) -> u64 {
        AwsPublisher::requests(self)
    }

    fn offloaded_by_destination(&self) -> Vec<(Arc<str>, u64, u64)> {
        AwsPublisher::offloaded_by_destination(self)
    }
}

fn closed() -> PublishError {
    PublishError::new(
        ErrorClass::Fatal,
        "publisher_closed",
        "the SNS/SQS publisher stopped before delivery was confirmed",
    )
}

/// The events of one aggregate, in accept order.
#[derive(Default)]
struct Lane {
    queue: VecDeque<(u64, Job)>,
    /// The head is in a request in flight.
    in_flight: bool,
    /// Consecutive retryable failures of the head.
    attempt: u32,
    first_failure: Option<Instant>,
    /// The first failure that may be transient (error.rs) since the lane last delivered.
    transient_since: Option<Instant>,
    not_before: Option<Instant>,
}

struct Dispatcher<C> {
    config: AwsConfig,
    client: C,
    /// Where offloaded bodies go (`large_payloads.mode: s3`).
    store: Option<Arc<dyn ObjectStore>>,
    shared: Arc<Shared>,
    pending: watch::Sender<usize>,
    lanes: HashMap<Text, Lane>,
    /// Per destination, the first failure that may be transient since something was last
    /// delivered to it: a topic that is gone fails every aggregate's events, and after the
    /// window even an aggregate that only just started failing gets no new window.
    transient_since: HashMap<Arc<str>, Instant>,
    /// The circuit breaker of each destination (the connectors' shared policy).
    breakers: HashMap<Arc<str>, Breaker>,
    /// Holds back repeats of the warnings below (the connectors' shared limiter).
    log_limiter: RateLimiter,
    /// Lanes that can send now, by the accept order of their head.
    ready: BTreeMap<u64, Text>,
    /// Lanes backing off, by when they may send again.
    waiting: BinaryHeap<Reverse<(Instant, Text)>>,
    next_order: u64,
    queued: usize,
}

/// A request in flight: its destination, the lanes whose heads it carries, in entry order,
/// and one result per entry.
type Sent = (Arc<str>, Instant, Vec<Text>, Vec<EntryResult>);

impl<C: Client> Dispatcher<C> {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Vec<Job>>) {
        let mut in_flight: FuturesUnordered<BoxFuture<'static, Sent>> = FuturesUnordered::new();
        let mut open = true;
        loop {
            self.wake_lanes(Instant::now());
            while in_flight.len() < self.config.max_concurrency {
                match self.next_batch() {
                    Some(request) => in_flight.push(request),
                    None => break,
                }
            }
            if !open && in_flight.is_empty() && self.lanes.is_empty() {
                return;
            }
            // Wake for the next lane whose backoff ends, or the next open circuit that lets
            // a probe through.
            let wake = self
                .waiting
                .peek()
                .map(|Reverse((at, _))| *at)
                .into_iter()
                .chain(self.breakers.values().filter_map(Breaker::reopens_at))
                .min();
            tokio::select! {
                jobs = commands.recv(), if open => match jobs {
                    Some(jobs) => self.enqueue(jobs),
                    None => open = false,
                },
                Some((destination, sent_at, lanes, results)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.record_circuit(&destination, sent_at, &results);
                    self.settle(lanes, results);
                }
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            }
        }
    }

    fn enqueue(&mut self, jobs: Vec<Job>) {
        let fatal = self.shared.fatal.lock().unwrap().clone();
        for job in jobs {
            if let Some(fatal) = &fatal {
                let _ = job.done.send(Err(fatal.clone()));
                continue;
            }
            let order = self.next_order;
            self.next_order += 1;
            // The lane keeps its own copy of the key: the job's is a slice of its event's
            // buffer (payload included), which a long-lived lane would otherwise pin.
            if !self.lanes.contains_key(&job.key) {
                self.lanes
                    .insert(Text::from(job.key.as_str()), Lane::default());
            }
            let lane = self.lanes.get_mut(&job.key).expect("lane");
            if lane.queue.is_empty() && !lane.in_flight && lane.not_before.is_none() {
                self.ready.insert(order, job.key.clone());
            }
            lane.queue.push_back((order, job));
            self.queued += 1;
        }
        self.pending.send_replace(self.queued);
    }

    fn wake_lanes(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.waiting.peek() {
            if *at > now {
                break;
            }
            let Reverse((at, key)) = self.waiting.pop().expect("peeked");
            if let Some(lane) = self.lanes.get_mut(&key) {
                if lane.not_before == Some(at) && !lane.in_flight {
                    lane.not_before = None;
                    if let Some((order, _)) = lane.queue.front() {
                        self.ready.insert(*order, key);
                    }
                }
            }
        }
    }

    /// Builds the next request out of ready lanes, or `None` if no lane is ready: the head
    /// of each ready lane, oldest first, all to the destination of the first one, up to
    /// ten entries and `max_message_bytes` in total. Never two entries of one lane (see
    /// the module docs: that is what keeps a FIFO group in order through a partial
    /// failure).
    fn next_batch(&mut self) -> Option<BoxFuture<'static, Sent>> {
        let mut destination: Option<Arc<str>> = None;
        let mut taken: Vec<(u64, Text)> = Vec::new();
        let mut messages: Vec<Arc<Message>> = Vec::new();
        let mut bytes = 0;
        // Destinations whose open circuit refused a request in this call.
        let mut refused: Vec<Arc<str>> = Vec::new();
        let now = Instant::now();
        for (&order, key) in &self.ready {
            if messages.len() == MAX_BATCH_ENTRIES {
                break;
            }
            let head = &self.lanes[key]
                .queue
                .front()
                .expect("ready lanes are not empty")
                .1;
            match &destination {
                None if refused.contains(&head.destination) => continue,
                None => {
                    if let Some(settings) = self.config.circuit_breaker.settings() {
                        let breaker = self
                            .breakers
                            .entry(head.destination.clone())
                            .or_insert_with(|| Breaker::new(settings));
                        let (allowed, transition) = breaker.try_acquire(now);
                        if let Some(state) = transition {
                            report_transition(&self.shared, &head.destination, state);
                        }
                        if !allowed {
                            refused.push(head.destination.clone());
                            continue;
                        }
                    }
                    destination = Some(head.destination.clone())
                }
                Some(d) if *d != head.destination => continue,
                Some(_) => {}
            }
            if !messages.is_empty() && bytes + head.message.size > self.config.max_message_bytes {
                break;
            }
            bytes += head.message.size;
            messages.push(head.message.clone());
            taken.push((order, key.clone()));
        }
        let destination = destination?;
        let sent_to = destination.clone();
        let mut lanes = Vec::with_capacity(taken.len());
        for (order, key) in taken {
            self.ready.remove(&order);
            self.lanes.get_mut(&key).expect("ready lane").in_flight = true;
            lanes.push(key);
        }
        let client = self.client.clone();
        let store = self.store.clone();
        let shared = self.shared.clone();
        Some(
            async move {
                let results =
                    send(&client, store.as_deref(), &shared, &destination, &messages).await;
                (sent_to, now, lanes, results)
            }
            .boxed(),
        )
    }

    /// Feeds a request's outcome to its destination's breaker: any entry delivered is a
    /// success; a request whose entries all failed retryably (or may-be-transiently) is a
    /// failure. Entries refused for what they are (too large, invalid) say nothing about
    /// the destination.
    fn record_circuit(
        &mut self,
        destination: &Arc<str>,
        sent_at: Instant,
        results: &[EntryResult],
    ) {
        let Some(breaker) = self.breakers.get_mut(destination) else {
            return;
        };
        let delivered = results.iter().any(Result::is_ok);
        let failed = results.iter().all(|r| {
            r.as_ref()
                .is_err_and(|e| e.class == ErrorClass::Retryable || may_be_transient(e))
        });
        let transition = if delivered {
            breaker.on_success(sent_at)
        } else if failed && !results.is_empty() {
            breaker.on_failure(sent_at, Instant::now())
        } else {
            None
        };
        if let Some(state) = transition {
            report_transition(&self.shared, destination, state);
        }
    }

    fn settle(&mut self, lanes: Vec<Text>, results: Vec<EntryResult>) {
        let mut results = results.into_iter();
        let now = Instant::now();
        for key in lanes {
            let result = results.next().unwrap_or_else(|| {
                Err(PublishError::new(
                    ErrorClass::Retryable,
                    "bad_response",
                    "fewer results than entries",
                ))
            });
            let Some(lane) = self.lanes.get_mut(&key) else {
                continue;
            };
            lane.in_flight = false;
            let destination = lane
                .queue
                .front()
                .expect("in-flight entry")
                .1
                .destination
                .clone();
            let mut retry: Option<PublishError> = None;
            let mut fatal: Option<PublishError> = None;
            let window = self.config.transient_error_window;
            let settled = match result {
                Err(e) if e.class == ErrorClass::Retryable => {
                    retry = Some(e);
                    None
                }
                Err(e) if e.class == ErrorClass::Fatal => {
                    fatal = Some(e);
                    None
                }
                // Retried like a Retryable error until the window has passed since the
                // lane's or the destination's first such failure, whichever is earlier.
                Err(e) if may_be_transient(&e) && !window.is_zero() => {
                    let lane_since = *lane.transient_since.get_or_insert(now);
                    let destination_since = *self
                        .transient_since
                        .entry(destination.clone())
                        .or_insert(now);
                    let failing = now.duration_since(lane_since.min(destination_since));
                    if failing < window {
                        retry = Some(e);
                        None
                    } else {
                        Some(Err(PublishError::new(
                            e.class,
                            e.kind,
                            format!(
                                "{} (failing for {:.1} s, longer than transient_error_window_ms)",
                                e.message,
                                failing.as_secs_f64()
                            ),
                        )))
                    }
                }
                result => Some(result),
            };
            if let Some(result) = settled {
                if result.is_ok() {
                    lane.transient_since = None;
                    self.transient_since.remove(&destination);
                }
                let (_, job) = lane.queue.pop_front().expect("in-flight entry");
                if let (Ok(()), Some(offload)) = (&result, &job.message.offload) {
                    let mut offloaded = self
                        .shared
                        .offloaded
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    let entry = offloaded.entry(job.destination.clone()).or_default();
                    entry.0 += 1;
                    entry.1 += offload.body.len() as u64;
                }
                self.queued -= 1;
                lane.attempt = 0;
                lane.first_failure = None;
                let result = result.map_err(|e| name_event(e, &job));
                if let Err(e) = &result {
                    let kind = format!("failed {} {}", job.destination, e.kind);
                    if let Some(more) = self.log_limiter.admit_suffix(&kind, now.into_std()) {
                        tracing::warn!(event_id = %job.event_id, destination = %job.destination, kind = e.kind, "event failed permanently: {}{more}", e.message);
                    }
                }
                let rejected = result
                    .as_ref()
                    .err()
                    .map(|e| (job.event_id.clone(), e.clone()));
                let _ = job.done.send(result);
                // The aggregate's later events this lane holds are never sent after a
                // permanent failure (the relay parks the aggregate behind it, or
                // dead-letters it and goes on). After a failure of the destination (or its
                // bucket) that outlasted the window, they fail with it: they would meet
                // it too, and the destination's clock has run out. After a failure of the
                // message itself they fail Retryable, and the relay replays them behind
                // the rejection's outcome, as Kafka's gap-less producer fails everything
                // after a rejected record.
                if let Some((rejected, err)) = rejected.filter(|_| !lane.queue.is_empty()) {
                    let lane = self.lanes.remove(&key).expect("lane");
                    self.queued -= lane.queue.len();
                    let (class, kind) = if may_be_transient(&err) {
                        (err.class, err.kind)
                    } else {
                        (ErrorClass::Retryable, "behind_rejected")
                    };
                    for (_, job) in lane.queue {
                        let e = PublishError::new(
                            class,
                            kind,
                            format!(
                                "event {} to {}: not sent: event {rejected} of its aggregate, before it, was rejected permanently: {}",
                                job.event_id, job.destination, err.message
                            ),
                        );
                        let _ = job.done.send(Err(e));
                    }
                    continue;
                }
            }
            if let Some(e) = fatal {
                self.fail_everything(e);
                return;
            }
            if let Some(err) = retry {
                lane.attempt += 1;
                let first = *lane.first_failure.get_or_insert(now);
                let give_up = self
                    .config
                    .retry_limit()
                    .is_some_and(|limit| now.duration_since(first) >= limit);
                if give_up {
                    let kind = format!("giving up {destination} {}", err.kind);
                    if let Some(more) = self.log_limiter.admit_suffix(&kind, now.into_std()) {
                        tracing::warn!(aggregate_id = %key, attempts = lane.attempt, "giving up retrying: {err}{more}");
                    }
                    let lane = self.lanes.remove(&key).expect("lane");
                    self.queued -= lane.queue.len();
                    for (_, job) in lane.queue {
                        let e = PublishError::new(
                            ErrorClass::Retryable,
                            err.kind,
                            format!(
                                "event {} to {}: not delivered after retrying for {:?}: {}",
                                job.event_id,
                                job.destination,
                                now.duration_since(first),
                                err.message
                            ),
                        );
                        let _ = job.done.send(Err(e));
                    }
                    continue;
                }
                self.shared.retries.fetch_add(1, Ordering::Relaxed);
                if let Some((_, head)) = lane.queue.front() {
                    let mut by_dest = self
                        .shared
                        .retries_by_destination
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    *by_dest.entry(head.destination.clone()).or_default() += 1;
                }
                let delay = Backoff::delay(
                    lane.attempt,
                    self.config.retry_initial_backoff,
                    self.config.retry_max_backoff,
                );
                // Quiet for a blip, loud for a stall: from the third attempt on, one warning
                // per destination and kind of error per log window (many aggregates hit by
                // one outage make one line, with the number held back).
                let kind = format!("retrying {destination} {}", err.kind);
                let loud = if lane.attempt >= 3 {
                    self.log_limiter.admit_suffix(&kind, now.into_std())
                } else {
                    None
                };
                match loud {
                    Some(more) => {
                        tracing::warn!(aggregate_id = %key, attempt = lane.attempt, ?delay, "still retrying: {err}{more}")
                    }
                    None => {
                        tracing::debug!(aggregate_id = %key, attempt = lane.attempt, ?delay, "retrying: {err}")
                    }
                }
                let at = now + delay;
                lane.not_before = Some(at);
                self.waiting.push(Reverse((at, key)));
            } else if let Some((order, _)) = lane.queue.front() {
                self.ready.insert(*order, key);
            } else {
                self.lanes.remove(&key);
            }
        }
        self.pending.send_replace(self.queued);
    }

    /// A Fatal error: every queued event fails with it, and so does every later accept.
    fn fail_everything(&mut self, err: PublishError) {
        tracing::error!(kind = err.kind, "SNS/SQS publisher failed: {}", err.message);
        *self.shared.fatal.lock().unwrap() = Some(err.clone());
        for (_, lane) in self.lanes.drain() {
            for (_, job) in lane.queue {
                let _ = job.done.send(Err(err.clone()));
            }
        }
        self.ready.clear();
        self.waiting.clear();
        self.queued = 0;
        self.pending.send_replace(0);
    }
}

/// One request: the S3 objects of offloaded messages first (those not yet confirmed, all
/// at once), then one PublishBatch / SendMessageBatch with the messages whose object is
/// confirmed or that have none. A message whose put failed is not sent: its result is the
/// put's error, so the lane retries it (put and send) like a failed send, and the
/// destination's circuit breaker counts it.
async fn send<C: Client>(
    client: &C,
    store: Option<&dyn ObjectStore>,
    shared: &Shared,
    destination: &str,
    messages: &[Arc<Message>],
) -> Vec<EntryResult> {
    let mut results: Vec<Option<EntryResult>> = vec![None; messages.len()];
    let puts = messages.iter().enumerate().filter_map(|(i, m)| {
        let offload = m.offload.as_ref()?;
        if offload.stored.load(Ordering::Acquire) {
            return None;
        }
        Some(async move {
            let result = match store {
                Some(store) => {
                    store
                        .put(&offload.bucket, &offload.key, offload.body.clone())
                        .await
                }
                None => Err(PublishError::new(
                    ErrorClass::Fatal,
                    "config",
                    "a message to offload, and no S3 client (large_payloads.mode is not s3)",
                )),
            };
            if result.is_ok() {
                offload.stored.store(true, Ordering::Release);
            }
            (i, result)
        })
    });
    for (i, result) in futures::future::join_all(puts).await {
        if let Err(e) = result {
            results[i] = Some(Err(e));
        }
    }
    let ready: Vec<usize> = (0..messages.len())
        .filter(|i| results[*i].is_none())
        .collect();
    if !ready.is_empty() {
        // Counted when sent: a request whose every object failed sends nothing.
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let refs: Vec<&Message> = ready.iter().map(|&i| messages[i].as_ref()).collect();
        let sent = client.send_batch(destination, &refs).await;
        for (i, result) in ready.into_iter().zip(sent) {
            results[i] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(PublishError::new(
                    ErrorClass::Retryable,
                    "bad_response",
                    format!("{destination}: the batch response did not mention the entry"),
                ))
            })
        })
        .collect()
}

/// Records a circuit's transition for the metrics, with a log line.
fn report_transition(shared: &Shared, destination: &Arc<str>, state: CircuitState) {
    match state {
        CircuitState::Open => {
            tracing::warn!(%destination, "circuit open: requests to the destination keep failing; sending only a probe after each cool-down")
        }
        CircuitState::HalfOpen => {
            tracing::info!(%destination, "circuit half-open: sending a probe")
        }
        CircuitState::Closed => {
            tracing::info!(%destination, "circuit closed: the destination answers again")
        }
    }
    let mut circuits = shared.circuits.lock().unwrap_or_else(|p| p.into_inner());
    let report = circuits
        .entry(destination.clone())
        .or_insert_with(|| CircuitReport {
            destination: destination.clone(),
            state: CircuitState::Closed,
            transitions: [0; 3],
        });
    report.state = state;
    report.transitions[state as usize] += 1;
}

/// Prefixes the event id (and the destination, unless the message names it already).
fn name_event(err: PublishError, job: &Job) -> PublishError {
    let message = if err.message.contains(&*job.destination) {
        format!("event {}: {}", job.event_id, err.message)
    } else {
        format!(
            "event {} to {}: {}",
            job.event_id, job.destination, err.message
        )
    };
    PublishError::new(err.class, err.kind, message)
}
