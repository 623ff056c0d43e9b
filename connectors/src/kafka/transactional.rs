//! Exactly-once into Kafka (`sink.kafka.exactly_once`): a transactional producer.
//!
//! Each accepted batch is one Kafka transaction holding the batch's records and one
//! record in the compacted `progress_topic`, keyed by the `transactional.id`, whose value
//! is the position of the newest event Kafka then holds: `(commit LSN, seq)`, the event's
//! place in commit order. Both become visible to `read_committed` consumers together, or
//! neither does.
//!
//! At start the producer calls `init_transactions`, which aborts whatever transaction an
//! earlier producer with the same id left open and fences that producer (a zombie's next
//! commit fails), and then reads its own last committed position. The relay skips every
//! replayed event at or below it: Kafka's position, not the slot's, decides what is new.
//! The slot is still confirmed only after the transaction committed, so the slot replays
//! at most what Kafka already holds, and that is skipped.
//!
//! Batches coalesce: the relay hands over one batch per source transaction, and they all
//! go into the open Kafka transaction, which commits `transaction_interval_ms` after it
//! began (or at 10,000 records, or at `flush`). Every batch's delivery resolves when its
//! transaction committed (or aborted). While a commit runs, `accept` waits for it; the
//! cost of the guarantee is that wait plus the interval added to latency.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use tokio::sync::watch;

use super::circuits::KafkaCircuits;
use super::context::RelayKafkaContext;
use super::sink::enqueue;
use super::stats::StatsCell;
use super::{classify, KafkaConfig};
use crate::{Delivery, ErrorClass, EventOutcome, OutboxEvent, PublishError, Publisher};

/// How long the transaction calls (init, commit, abort) may take.
const TXN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a commit checks whether the transaction's records are all delivered.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(1);
/// How long reading the committed position at start may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// No record for this long while reading the progress topic: its readable end.
const IDLE_END: Duration = Duration::from_secs(3);

/// An event's place in commit order.
pub type Position = (u64, u64);

fn position_of(e: &OutboxEvent) -> Position {
    (e.commit_lsn, e.seq)
}

/// The progress record's value: `{"commit_lsn":…,"seq":…}`.
fn encode_position(p: Position) -> String {
    format!("{{\"commit_lsn\":{},\"seq\":{}}}", p.0, p.1)
}

fn decode_position(value: &[u8]) -> Option<Position> {
    let v: serde_json::Value = serde_json::from_slice(value).ok()?;
    Some((v["commit_lsn"].as_u64()?, v["seq"].as_u64()?))
}

/// The open Kafka transaction.
#[derive(Default)]
struct Txn {
    /// Bumped at every begin: a commit timer commits only the transaction it was set for.
    generation: u64,
    open: bool,
    records: usize,
    /// The newest position among its records.
    newest: Option<Position>,
    /// Resolved with the transaction's outcome (`Err` carries why it aborted).
    outcome: Option<watch::Sender<Option<Result<(), PublishError>>>>,
}

/// Records in one transaction at most before it commits.
const MAX_RECORDS: usize = 10_000;

pub struct KafkaTransactionalPublisher {
    inner: Arc<Inner>,
    /// Read at start: what Kafka already holds.
    committed: Option<Position>,
    stats: StatsCell,
}

struct Inner {
    producer: FutureProducer<RelayKafkaContext>,
    txn: tokio::sync::Mutex<Txn>,
    interval: Duration,
    /// The newest position written in a committed transaction (never goes back, so a
    /// redriven older event does not move the record backwards).
    written: Mutex<Option<Position>>,
    transactional_id: String,
    progress_topic: String,
}

impl KafkaTransactionalPublisher {
    /// Creates the producer, fences earlier producers of `transactional_id`, and reads
    /// the committed position.
    pub async fn new(config: &KafkaConfig) -> Result<Self, PublishError> {
        if config.transactional_id.is_empty() {
            return Err(PublishError::new(
                ErrorClass::Fatal,
                "config",
                "sink.kafka.transactional_id: required with exactly_once",
            ));
        }
        let mut props = config
            .producer_properties()
            .map_err(|e| PublishError::new(ErrorClass::Fatal, "config", e))?;
        props.insert("transactional.id".into(), config.transactional_id.clone());
        // A transaction that cannot finish within its timeout is aborted by the broker;
        // librdkafka requires records to time out no later. The default 0 (never) of the
        // at-least-once producer would be refused.
        props
            .entry("transaction.timeout.ms".into())
            .or_insert_with(|| "60000".into());
        let txn_timeout = props["transaction.timeout.ms"].clone();
        props.insert("message.timeout.ms".into(), txn_timeout);
        let mut client = ClientConfig::new();
        for (k, v) in &props {
            client.set(k, v);
        }
        let stats = StatsCell::default();
        // No circuit breakers here: with exactly_once a broker outage stalls (and aborts
        // the open transaction), which `on_open: park` cannot be combined with.
        let circuits = Arc::new(KafkaCircuits::new(None));
        let producer: FutureProducer<RelayKafkaContext> = client
            .create_with_context(RelayKafkaContext::new(circuits, stats.clone()))
            .map_err(|e| {
                PublishError::new(
                    ErrorClass::Fatal,
                    "config",
                    format!("sink.kafka: cannot create the transactional producer: {e}"),
                )
            })?;
        ensure_progress_topic(&props, &config.progress_topic).await?;
        let p = producer.clone();
        tokio::task::spawn_blocking(move || p.init_transactions(TXN_TIMEOUT))
            .await
            .map_err(|e| PublishError::new(ErrorClass::Retryable, "kafka", e.to_string()))?
            .map_err(|e| txn_error("init_transactions", &e))?;
        let committed =
            read_position(&props, &config.progress_topic, &config.transactional_id).await?;
        tracing::info!(
            transactional_id = %config.transactional_id,
            committed = ?committed,
            "exactly-once: earlier producers fenced; events at or below the committed position are skipped"
        );
        Ok(KafkaTransactionalPublisher {
            inner: Arc::new(Inner {
                producer,
                txn: tokio::sync::Mutex::new(Txn::default()),
                interval: config.transaction_interval,
                written: Mutex::new(committed),
                transactional_id: config.transactional_id.clone(),
                progress_topic: config.progress_topic.clone(),
            }),
            committed,
            stats,
        })
    }
}

/// A transaction call's error. Fatal (fenced: another relay initialised the same
/// `transactional.id`) stops the relay: restarting would fence that relay in turn, and
/// the two would take the producer from each other at every session. Anything else
/// aborts the transaction and the batch is sent again.
fn txn_error(what: &str, e: &KafkaError) -> PublishError {
    match e {
        KafkaError::Transaction(t) if t.is_fatal() => PublishError::new(
            ErrorClass::Fatal,
            "transaction_fenced",
            format!(
                "{what}: {t} (another relay with this transactional.id took over; this one stops)"
            ),
        ),
        other => PublishError::new(
            ErrorClass::Retryable,
            "transaction_aborted",
            format!("{what}: {other}"),
        ),
    }
}

/// Creates the compacted progress topic if it does not exist.
async fn ensure_progress_topic(
    props: &std::collections::BTreeMap<String, String>,
    topic: &str,
) -> Result<(), PublishError> {
    let mut client = ClientConfig::new();
    for (k, v) in props {
        if is_client_property(k) {
            client.set(k, v);
        }
    }
    let admin: AdminClient<DefaultClientContext> = client.create().map_err(|e| {
        PublishError::new(ErrorClass::Fatal, "config", format!("admin client: {e}"))
    })?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let results = admin
        .create_topics(
            [&new],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .map_err(|e| classify(&e))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, "created the exactly-once progress topic"),
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(PublishError::new(
                    ErrorClass::Retryable,
                    "progress_topic",
                    format!("cannot create the progress topic {name:?}: {code}"),
                ))
            }
        }
    }
    Ok(())
}

/// Connection and security settings, shared by the admin client and the consumer; the
/// producer-only ones would be rejected or warned about.
fn is_client_property(key: &str) -> bool {
    key == "bootstrap.servers"
        || key == "client.id"
        || key.starts_with("security.")
        || key.starts_with("sasl.")
        || key.starts_with("ssl.")
        || key.starts_with("socket.")
}

/// The newest committed position recorded under `transactional_id`, read with
/// `read_committed` to the end of the (compacted, one-partition) topic.
async fn read_position(
    props: &std::collections::BTreeMap<String, String>,
    topic: &str,
    transactional_id: &str,
) -> Result<Option<Position>, PublishError> {
    let mut client = ClientConfig::new();
    for (k, v) in props {
        if is_client_property(k) {
            client.set(k, v);
        }
    }
    client
        .set("group.id", format!("{transactional_id}-position-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    let topic = topic.to_string();
    let key = transactional_id.as_bytes().to_vec();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client.create().map_err(|e| classify(&e))?;
        let (_, high) = consumer
            .fetch_watermarks(&topic, 0, READ_TIMEOUT)
            .map_err(|e| classify(&e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .map_err(|e| classify(&e))?;
        consumer.assign(&tpl).map_err(|e| classify(&e))?;
        if high <= 0 {
            return Ok(None);
        }
        let deadline = std::time::Instant::now() + READ_TIMEOUT;
        let mut last_record = std::time::Instant::now();
        let mut found = None;
        loop {
            // read_committed stops at the last stable offset, which init_transactions has
            // moved past this id's own open transaction. Another relay's open transaction
            // (the topic is shared) can hold it below the high watermark: then the end is
            // where records stop coming.
            let position = consumer
                .position()
                .ok()
                .and_then(|p| {
                    p.find_partition(&topic, 0)
                        .and_then(|e| e.offset().to_raw())
                })
                .unwrap_or(-1);
            if position >= high || last_record.elapsed() > IDLE_END {
                return Ok(found);
            }
            if std::time::Instant::now() > deadline {
                return Err(PublishError::new(
                    ErrorClass::Retryable,
                    "progress_topic",
                    format!(
                        "reading {topic} to its end ({high}) took longer than {READ_TIMEOUT:?}"
                    ),
                ));
            }
            if let Some(msg) = consumer.poll(Duration::from_millis(200)) {
                let msg = msg.map_err(|e| classify(&e))?;
                last_record = std::time::Instant::now();
                if msg.key() == Some(key.as_slice()) {
                    if let Some(p) = msg.payload().and_then(decode_position) {
                        found = Some(found.map_or(p, |f: Position| f.max(p)));
                    }
                }
            }
        }
    })
    .await
    .map_err(|e| PublishError::new(ErrorClass::Retryable, "kafka", e.to_string()))?
}

impl Inner {
    /// Waits (asynchronously, up to the transaction timeout) until librdkafka holds no
    /// undelivered record. rust-rdkafka's `commit_transaction` flushes before it commits,
    /// and its flush sleeps in steps of 100 ms while anything is in flight — which the
    /// progress record, produced just before, always was: every commit took 100 ms more
    /// than the broker needed (measured: commit_transaction entered 100 ms after the
    /// progress record's produce response, on every transaction). With nothing in flight
    /// that flush returns at once.
    async fn await_in_flight(&self) {
        let deadline = tokio::time::Instant::now() + TXN_TIMEOUT;
        while self.producer.in_flight_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(IN_FLIGHT_POLL).await;
        }
    }

    /// Commits the open transaction (only `generation`'s, when given: a timer set for an
    /// earlier one does nothing) with its progress record, or aborts it; resolves every
    /// delivery waiting on it. `accept` waits meanwhile.
    async fn commit(&self, generation: Option<u64>) {
        let mut txn = self.txn.lock().await;
        if !txn.open || generation.is_some_and(|g| g != txn.generation) {
            return;
        }
        txn.open = false;
        let position = {
            let written = *self.written.lock().unwrap_or_else(|p| p.into_inner());
            written.max(txn.newest)
        };
        let mut result = Ok(());
        if let Some(p) = position {
            let value = encode_position(p);
            let record = FutureRecord::to(&self.progress_topic)
                .key(self.transactional_id.as_bytes())
                .payload(value.as_bytes());
            if let Err((e, _)) = self.producer.send_result(record) {
                result = Err(classify(&e));
            }
        }
        if result.is_ok() {
            self.await_in_flight().await;
            // commit_transaction flushes first and fails if any record of the transaction
            // failed: one call checks them all.
            let p = self.producer.clone();
            result = tokio::task::spawn_blocking(move || p.commit_transaction(TXN_TIMEOUT))
                .await
                .map_err(|e| PublishError::new(ErrorClass::Retryable, "kafka", e.to_string()))
                .and_then(|r| r.map_err(|e| txn_error("commit_transaction", &e)));
        }
        match &result {
            Ok(()) => *self.written.lock().unwrap_or_else(|p| p.into_inner()) = position,
            Err(e) if e.class != ErrorClass::Fatal => {
                let p = self.producer.clone();
                let _ = tokio::task::spawn_blocking(move || p.abort_transaction(TXN_TIMEOUT)).await;
            }
            Err(_) => {}
        }
        if let Some(outcome) = txn.outcome.take() {
            let _ = outcome.send(Some(result));
        }
    }
}

#[async_trait::async_trait]
impl Publisher for KafkaTransactionalPublisher {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn validate_destination(&self, topic: &str) -> Result<(), String> {
        super::sink::validate_topic(topic)
    }

    fn committed_position(&self) -> Option<Position> {
        self.committed
    }

    async fn accept(&self, batch: Vec<OutboxEvent>) -> Result<Delivery, PublishError> {
        let inner = &self.inner;
        let mut txn = inner.txn.lock().await;
        if !txn.open {
            inner
                .producer
                .begin_transaction()
                .map_err(|e| txn_error("begin_transaction", &e))?;
            txn.generation += 1;
            txn.open = true;
            txn.records = 0;
            txn.newest = None;
            txn.outcome = Some(watch::channel(None).0);
            let (inner, generation) = (self.inner.clone(), txn.generation);
            tokio::spawn(async move {
                tokio::time::sleep(inner.interval).await;
                inner.commit(Some(generation)).await;
            });
        }
        let mut outcome = txn
            .outcome
            .as_ref()
            .expect("an open transaction has an outcome")
            .subscribe();
        let mut pending = Vec::with_capacity(batch.len());
        for event in batch {
            txn.newest = txn.newest.max(Some(position_of(&event)));
            let delivery = enqueue(&inner.producer, &event).await;
            pending.push((event, delivery));
        }
        txn.records += pending.len();
        let full = txn.records >= MAX_RECORDS;
        drop(txn);
        if full {
            inner.commit(None).await;
        }
        Ok(async move {
            let mut results = Vec::with_capacity(pending.len());
            for (event, delivery) in pending {
                let result = match delivery {
                    Err(e) => Err(e),
                    Ok(fut) => match fut.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((err, _))) => Err(classify(&err)),
                        Err(_) => Err(PublishError::new(
                            ErrorClass::Retryable,
                            "producer_closed",
                            "the Kafka producer was closed before delivery was confirmed",
                        )),
                    },
                };
                results.push((event, result));
            }
            let committed = loop {
                if let Some(r) = outcome.borrow_and_update().clone() {
                    break r;
                }
                if outcome.changed().await.is_err() {
                    break Err(PublishError::new(
                        ErrorClass::Retryable,
                        "transaction_aborted",
                        "the producer went away before the transaction finished",
                    ));
                }
            };
            match committed {
                Ok(()) => results
                    .into_iter()
                    .map(|(event, _)| EventOutcome {
                        event,
                        result: Ok(()),
                    })
                    .collect(),
                // An event the broker refused keeps its own error (a permanent one takes its
                // policy's outcome); the others were aborted with it and are sent again.
                Err(why) => results
                    .into_iter()
                    .map(|(event, result)| EventOutcome {
                        event,
                        result: match result {
                            Err(own) if own.class == ErrorClass::Permanent => Err(own),
                            _ => Err(PublishError::new(
                                why.class,
                                why.kind,
                                format!(
                                    "the batch's Kafka transaction was aborted: {}",
                                    why.message
                                ),
                            )),
                        },
                    })
                    .collect(),
            }
        }
        .boxed())
    }

    async fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        tokio::time::timeout(timeout, self.inner.commit(None))
            .await
            .map_err(|_| {
                PublishError::new(
                    ErrorClass::Retryable,
                    "flush_timeout",
                    "the open Kafka transaction did not finish in time",
                )
            })
    }

    fn client_gauges(&self) -> Vec<crate::ClientGauge> {
        self.stats.get()
    }

    async fn probe(&self, timeout: Duration) -> Result<(), PublishError> {
        super::sink::probe_metadata(Arc::new(self.inner.producer.clone()), timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_order_by_commit_then_seq() {
        let p = (0x1_6B37_4D48, 7);
        assert_eq!(decode_position(encode_position(p).as_bytes()), Some(p));
        assert_eq!(decode_position(b"{\"commit_lsn\":1}"), None);
        assert_eq!(decode_position(b"garbage"), None);
        assert!((5, 9) < (6, 1));
        assert!((6, 1) < (6, 2));
    }
}
