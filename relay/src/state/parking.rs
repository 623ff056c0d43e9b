//! Ordered parking per aggregate: a durable dead-letter store in the source database.
//!
//! An event that cannot go now (invalid, or rejected by the broker) is written to
//! `<state.schema>.parked`, and so is every later event of its aggregate, until the
//! aggregate is redriven (`outbox-relay parked redrive`) or its parked events discarded.
//! Other aggregates keep flowing, and since a parked event is durable the flush watermark
//! passes it: the slot advances and WAL does not pile up.
//!
//! Rows are keyed by `(slot, commit_lsn, seq)` — the event's place in commit order, the
//! same when the server replays it — so a replay parks nothing twice, and redrive reads
//! an aggregate's rows in that order.
//!
//! Who decides what: the reader routes an event to parking when its aggregate is parked
//! (so nothing of a parked aggregate reaches the broker again), and counts it as pending
//! until the acker has written it; the acker writes every parked event and parks
//! aggregates whose event the broker rejected. An aggregate is unparked only when it has
//! no rows left and no write pending, so a redrive racing with new events never lets a
//! later event overtake a parked one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use outbox_connectors::{OutboxEvent, Text};
use outbox_pgoutput::Lsn;
use tokio_postgres::types::ToSql;

use super::StateStore;
use crate::error::RelayError;

/// Why an event is parked; the `reason` column and metric label.
pub const BEHIND_PARKED: &str = "behind_parked";
/// Diverted from a destination whose circuit was open (`circuit_breaker.on_open: park`);
/// redriven automatically when it closes.
pub const CIRCUIT_OPEN: &str = "circuit_open";
/// Beyond its destination's share of the in-flight budget (`pipeline.destination_share`);
/// redriven automatically once the destination has caught up.
pub const BULKHEAD_FULL: &str = "bulkhead_full";

/// The parked aggregates of one slot, and the writes of their events.
pub struct Parking {
    store: Box<dyn ParkStore>,
    /// Parked aggregate → its events on their way to the table (routed by the reader or
    /// rejected at the acker) and not yet written.
    aggregates: Mutex<HashMap<String, u64>>,
    /// Held while writing and while refreshing, so no write can land between a refresh's
    /// reading of the table and its unparking (which would unpark an aggregate whose row
    /// just appeared).
    io: tokio::sync::Mutex<()>,
}

/// Where parked events are kept: the table, or memory in the pipeline's tests.
#[async_trait::async_trait]
pub trait ParkStore: Send + Sync {
    /// Writes all of `requests` durably, or none (an event already there is kept).
    async fn write(&self, requests: &[ParkRequest]) -> Result<(), RelayError>;
    /// Per aggregate and destination: parked events and the oldest one's age in seconds.
    async fn summary(&self) -> Result<Vec<(String, String, i64, f64)>, RelayError>;
}

/// [`ParkStore`] on `<state.schema>.parked`.
struct TableParkStore {
    store: Arc<StateStore>,
    /// A connection of its own: the writes are transactions, which must not interleave
    /// with the heartbeats and progress records on the shared one.
    writer: tokio::sync::Mutex<tokio_postgres::Client>,
}

/// An event to park, with why.
#[derive(Debug, Clone)]
pub struct ParkRequest {
    pub event: OutboxEvent,
    pub reason: String,
    pub error: String,
}

/// Counts for the parking metrics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ParkedStats {
    pub by_destination: Vec<(String, i64)>,
    pub aggregates: i64,
    pub oldest_age_seconds: f64,
}

impl Parking {
    /// Loads the parked aggregates of the slot; `writer` is a connection for parking only.
    pub async fn load(
        store: Arc<StateStore>,
        writer: tokio_postgres::Client,
    ) -> Result<Parking, RelayError> {
        // Parked events survive exactly what the outbox rows' own commits survive.
        writer.batch_execute("SET synchronous_commit = on").await?;
        Parking::with_store(Box::new(TableParkStore {
            store,
            writer: tokio::sync::Mutex::new(writer),
        }))
        .await
    }

    /// Loads the parked aggregates from `store`.
    pub async fn with_store(store: Box<dyn ParkStore>) -> Result<Parking, RelayError> {
        let aggregates = store
            .summary()
            .await?
            .into_iter()
            .map(|(aggregate, ..)| (aggregate, 0))
            .collect();
        Ok(Parking {
            store,
            aggregates: Mutex::new(aggregates),
            io: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.aggregates.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_parked(&self, aggregate_id: &str) -> bool {
        let map = self.lock();
        !map.is_empty() && map.contains_key(aggregate_id)
    }

    /// The reader hands an event of `aggregate_id` to the acker for parking: the aggregate
    /// is parked from now on, with one more write pending.
    pub fn route(&self, aggregate_id: &str) {
        *self.lock().entry(aggregate_id.to_owned()).or_default() += 1;
    }

    /// The acker met a rejection of an event of `aggregate_id`: the aggregate is parked
    /// from now on, with its event's write pending, so the reader routes later events of
    /// it to parking.
    pub fn mark(&self, aggregate_id: &str) {
        *self.lock().entry(aggregate_id.to_owned()).or_default() += 1;
    }

    /// Writes `requests` (each one `route`d or `mark`ed before) durably, in one
    /// transaction with `synchronous_commit = on`; their writes are then no longer pending.
    pub async fn park(&self, requests: &[ParkRequest]) -> Result<(), RelayError> {
        if requests.is_empty() {
            return Ok(());
        }
        let _io = self.io.lock().await;
        self.store.write(requests).await?;
        let mut map = self.lock();
        for r in requests {
            let pending = map.entry(r.event.aggregate_id.to_string()).or_default();
            *pending = pending.saturating_sub(1);
        }
        Ok(())
    }

    /// Re-reads which aggregates still have rows (a redrive or discard may have emptied
    /// some) and unparks those with none left and no write pending. Returns the counts
    /// for the metrics.
    pub async fn refresh(&self) -> Result<ParkedStats, RelayError> {
        let _io = self.io.lock().await;
        let rows = self.store.summary().await?;
        let mut stats = ParkedStats::default();
        let mut with_rows = std::collections::HashSet::new();
        let mut by_destination: HashMap<String, i64> = HashMap::new();
        for (aggregate, destination, n, age) in rows {
            with_rows.insert(aggregate);
            *by_destination.entry(destination).or_default() += n;
            stats.oldest_age_seconds = stats.oldest_age_seconds.max(age);
        }
        stats.by_destination = by_destination.into_iter().collect();
        stats.by_destination.sort();
        let mut map = self.lock();
        map.retain(|aggregate, pending| *pending > 0 || with_rows.contains(aggregate));
        for aggregate in with_rows {
            map.entry(aggregate).or_default();
        }
        stats.aggregates = map.len() as i64;
        Ok(stats)
    }
}

#[async_trait::async_trait]
impl ParkStore for TableParkStore {
    async fn write(&self, requests: &[ParkRequest]) -> Result<(), RelayError> {
        // Tables from before the column existed and that the role could not alter take
        // no partition (`open` refuses partition columns then).
        let (partition_column, partition_value) = if self.store.parked_partition {
            (", kafka_partition", ", $16")
        } else {
            ("", "")
        };
        let sql = format!(
            "INSERT INTO {} (slot, commit_lsn, seq, event_id, aggregate_type, aggregate_id, event_type,
               destination, payload, header_names, header_values, timestamp_ms, commit_time_us, reason, error{partition_column})
             VALUES ($1, $2::text::pg_lsn, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15{partition_value})
             ON CONFLICT (slot, commit_lsn, seq) DO NOTHING",
            self.store.parked
        );
        let mut writer = self.writer.lock().await;
        // One transaction for the batch: a crash leaves all of it or none, and the
        // session replays what was not written.
        let tx = writer.transaction().await?;
        let stmt = tx.prepare(&sql).await?;
        for r in requests {
            let e = &r.event;
            let names: Vec<&str> = e.headers.iter().map(|(k, _)| k.as_str()).collect();
            let values: Vec<&[u8]> = e.headers.iter().map(|(_, v)| v.as_ref()).collect();
            let lsn = Lsn(e.commit_lsn).to_string();
            let seq = e.seq as i64;
            let payload: Option<&[u8]> = e.payload.as_deref();
            let destination: &str = &e.destination;
            let (id, aggregate_type, aggregate_id, event_type) = (
                e.id.as_str(),
                e.aggregate_type.as_str(),
                e.aggregate_id.as_str(),
                e.event_type.as_str(),
            );
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![
                &self.store.slot,
                &lsn,
                &seq,
                &id,
                &aggregate_type,
                &aggregate_id,
                &event_type,
                &destination,
                &payload,
                &names,
                &values,
                &e.timestamp_ms,
                &e.commit_time_us,
                &r.reason,
                &r.error,
            ];
            if self.store.parked_partition {
                params.push(&e.partition);
            }
            tx.execute(&stmt, &params).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn summary(&self) -> Result<Vec<(String, String, i64, f64)>, RelayError> {
        let rows = self
            .store
            .client
            .query(
                &format!(
                    "SELECT aggregate_id, destination, count(*)::int8,
                            extract(epoch FROM now() - min(parked_at))::float8
                       FROM {} WHERE slot = $1 GROUP BY aggregate_id, destination",
                    self.store.parked
                ),
                &[&self.store.slot],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect())
    }
}

/// One parked event, as the `parked` commands show and redrive it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ParkedEvent {
    pub commit_lsn: String,
    pub seq: i64,
    pub event_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub destination: String,
    pub reason: String,
    pub error: String,
    pub attempts: i32,
    pub parked_at: String,
    /// The payload as text when it is UTF-8, else absent (see `payload_bytes`).
    pub payload: Option<String>,
    pub payload_bytes: Option<usize>,
    #[serde(skip)]
    pub event: OutboxEvent,
}

/// Which parked events a command applies to.
#[derive(Debug, Clone, Default)]
pub struct ParkedFilter {
    pub destination: Option<String>,
    pub aggregate: Option<String>,
    pub reason: Option<String>,
    pub event_id: Option<String>,
    /// Parked at least this many seconds ago.
    pub older_than_secs: Option<u64>,
}

impl StateStore {
    /// Parked events matching `filter`, per aggregate in commit order.
    pub async fn parked_events(
        &self,
        filter: &ParkedFilter,
    ) -> Result<Vec<ParkedEvent>, RelayError> {
        let older = filter.older_than_secs.map(|s| s as f64);
        // `p.commit_lsn`, qualified: a bare name in ORDER BY means the *output* column of
        // that name first, here the text, and as text `0/1000000` sorts before `0/FFFFFF`
        // (a redrive then sent later events before earlier ones).
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT p.commit_lsn::text, seq, event_id, aggregate_type, aggregate_id, event_type,
                            destination, payload, header_names, header_values, timestamp_ms,
                            commit_time_us, reason, error, attempts, parked_at::text, {}
                       FROM {} p WHERE slot = $1
                        AND ($2::text IS NULL OR destination = $2)
                        AND ($3::text IS NULL OR aggregate_id = $3)
                        AND ($4::text IS NULL OR reason = $4)
                        AND ($5::text IS NULL OR event_id = $5)
                        AND ($6::float8 IS NULL OR parked_at <= now() - make_interval(secs => $6))
                      ORDER BY aggregate_id, p.commit_lsn, seq",
                    if self.parked_partition {
                        "kafka_partition"
                    } else {
                        "NULL::int4"
                    },
                    self.parked
                ),
                &[
                    &self.slot,
                    &filter.destination,
                    &filter.aggregate,
                    &filter.reason,
                    &filter.event_id,
                    &older,
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let commit_lsn: String = r.get(0);
                let payload: Option<Vec<u8>> = r.get(7);
                let names: Vec<String> = r.get(8);
                let values: Vec<Vec<u8>> = r.get(9);
                let event = OutboxEvent {
                    id: r.get::<_, String>(2).into(),
                    aggregate_type: r.get::<_, String>(3).into(),
                    aggregate_id: r.get::<_, String>(4).into(),
                    event_type: r.get::<_, String>(5).into(),
                    payload: payload.clone().map(Bytes::from),
                    headers: names
                        .into_iter()
                        .map(Text::from)
                        .zip(values.into_iter().map(Bytes::from))
                        .collect(),
                    destination: Arc::from(r.get::<_, String>(6)),
                    partition: r.get(16),
                    timestamp_ms: r.get(10),
                    commit_lsn: commit_lsn.parse::<Lsn>().map_or(0, |l| l.0),
                    commit_time_us: r.get(11),
                    seq: r.get::<_, i64>(1) as u64,
                };
                ParkedEvent {
                    commit_lsn,
                    seq: r.get(1),
                    event_id: r.get(2),
                    aggregate_type: r.get(3),
                    aggregate_id: r.get(4),
                    event_type: r.get(5),
                    destination: r.get(6),
                    reason: r.get(12),
                    error: r.get(13),
                    attempts: r.get(14),
                    parked_at: r.get(15),
                    payload_bytes: payload.as_ref().map(Vec::len),
                    payload: payload.and_then(|p| String::from_utf8(p).ok()),
                    event,
                }
            })
            .collect())
    }

    /// Removes one parked event (redriven or discarded).
    pub async fn remove_parked(&self, commit_lsn: &str, seq: i64) -> Result<u64, RelayError> {
        Ok(self
            .client
            .execute(
                &format!(
                    "DELETE FROM {} WHERE slot = $1 AND commit_lsn = $2::text::pg_lsn AND seq = $3",
                    self.parked
                ),
                &[&self.slot, &commit_lsn, &seq],
            )
            .await?)
    }

    /// Removes parked events (redriven), in one statement.
    pub async fn remove_parked_many(&self, keys: &[(String, i64)]) -> Result<u64, RelayError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let lsns: Vec<&str> = keys.iter().map(|(l, _)| l.as_str()).collect();
        let seqs: Vec<i64> = keys.iter().map(|(_, s)| *s).collect();
        Ok(self
            .client
            .execute(
                &format!(
                    "DELETE FROM {} p USING unnest($2::text[], $3::int8[]) AS k(lsn, seq)
                      WHERE p.slot = $1 AND p.commit_lsn = k.lsn::pg_lsn AND p.seq = k.seq",
                    self.parked
                ),
                &[&self.slot, &lsns, &seqs],
            )
            .await?)
    }

    /// Aggregates none of whose parked events needs an operator: every one was diverted
    /// (an open circuit, a full bulkhead) or parked behind such a one. With the first
    /// one's destination: what the redriver sends again once the destination can take it.
    ///
    /// `behind_parked` counts too: a redrive that empties an aggregate while the reader
    /// still has later events of it on their way to the table leaves those at its head,
    /// and nothing else would ever send them.
    pub async fn diverted_aggregates(&self) -> Result<Vec<(String, String)>, RelayError> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT aggregate_id, destination FROM (
                       SELECT DISTINCT ON (aggregate_id) aggregate_id, destination
                         FROM {parked} WHERE slot = $1
                        ORDER BY aggregate_id, commit_lsn, seq) firsts
                      WHERE NOT EXISTS (
                        SELECT 1 FROM {parked} p
                         WHERE p.slot = $1 AND p.aggregate_id = firsts.aggregate_id
                           AND p.reason <> $2 AND p.reason <> $3 AND p.reason <> $4)",
                    parked = self.parked
                ),
                &[&self.slot, &CIRCUIT_OPEN, &BULKHEAD_FULL, &BEHIND_PARKED],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Records a failed redrive of a parked event: the new error, one more attempt, and
    /// for a permanent failure its new `reason`.
    pub async fn redrive_failed(
        &self,
        commit_lsn: &str,
        seq: i64,
        error: &str,
        reason: Option<&str>,
    ) -> Result<(), RelayError> {
        self.client
            .execute(
                &format!(
                    "UPDATE {} SET error = $4, attempts = attempts + 1, reason = coalesce($5, reason)
                      WHERE slot = $1 AND commit_lsn = $2::text::pg_lsn AND seq = $3",
                    self.parked
                ),
                &[&self.slot, &commit_lsn, &seq, &error, &reason],
            )
            .await?;
        Ok(())
    }
}
