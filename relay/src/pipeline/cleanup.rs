//! `outbox.cleanup: delete_published`: outbox rows are deleted once their events are
//! durable, driven by the flush watermark.
//!
//! The [`CleanupObserver`] sits in the flow before the reader and notes, per committed
//! transaction, the id of every outbox row it inserted (whether the reader publishes the
//! transaction or skips it as already delivered). The [`run`] task deletes the rows of
//! every transaction whose end the flush watermark has passed, in batches: the watermark
//! passes a transaction only when each of its events is acknowledged by the broker,
//! dead-lettered or parked durably, so no row is deleted before its event is safe.
//!
//! A crash between delivery and deletion must not leave rows behind for ever: the rows
//! of a delivered transaction are only found again if the server replays it. So the
//! position confirmed to the server is held back ([`Progress::hold_confirmation`]) before
//! the oldest transaction whose rows are not deleted yet; after a restart the server
//! replays it, the reader skips it (the relay's progress record says it was delivered)
//! and the observer sees its rows again, which are then deleted without being published
//! twice.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outbox_pgoutput::{LogicalReplicationMessage as M, Lsn, TupleValue};
use outbox_pgwire::quote_ident;
use tokio_postgres::Client;
use tracing::{debug, warn};

use super::Progress;
use crate::config::TableConfig;
use crate::error::RelayError;
use crate::telemetry::Metrics;

/// One outbox table as the cleanup deletes from it.
#[derive(Debug)]
pub struct CleanupTable {
    schema: String,
    name: String,
    id_column: String,
    /// `DELETE FROM t WHERE id = ANY($1::text[]::<id type>[])`
    delete_sql: String,
}

impl CleanupTable {
    /// Looks the table's id column up: it must exist and be unique (a primary key or a
    /// unique index on it alone), or deleting "the row of this event" would delete others.
    pub async fn resolve(client: &Client, table: &TableConfig) -> Result<Self, RelayError> {
        let (schema, name) = table.qualified();
        let id = &table.columns.id;
        let row = client
            .query_opt(
                "SELECT format_type(a.atttypid, NULL),
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique
                                AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum AND i.indpred IS NULL)
                   FROM pg_attribute a JOIN pg_class c ON a.attrelid = c.oid
                   JOIN pg_namespace n ON c.relnamespace = n.oid
                  WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND NOT a.attisdropped",
                &[&schema, &name, id],
            )
            .await?;
        let Some(row) = row else {
            return Err(RelayError::Setup(format!(
                "outbox.cleanup: table {schema}.{name} has no column {id:?} (outbox.tables[].columns.id)"
            )));
        };
        let (type_name, unique): (String, bool) = (row.get(0), row.get(1));
        if !unique {
            return Err(RelayError::Setup(format!(
                "outbox.cleanup is delete_published but {schema}.{name}.{id} is not unique: the relay deletes an event's row by its id, so the id column needs a primary key or a unique index of its own (ALTER TABLE {schema}.{name} ADD PRIMARY KEY ({id}))"
            )));
        }
        Ok(CleanupTable {
            delete_sql: format!(
                "DELETE FROM {}.{} WHERE {} = ANY($1::text[]::{type_name}[])",
                quote_ident(schema),
                quote_ident(name),
                quote_ident(id)
            ),
            schema: schema.to_owned(),
            name: name.to_owned(),
            id_column: id.to_owned(),
        })
    }

    /// Deletes the rows with these ids (text form), `batch` per statement (each its own
    /// transaction), counting them as they go; returns how many were deleted.
    pub async fn delete(
        &self,
        client: &Client,
        ids: &[String],
        batch: usize,
        metrics: &Metrics,
    ) -> Result<u64, RelayError> {
        let mut deleted = 0;
        for chunk in ids.chunks(batch.max(1)) {
            let n = client.execute(&self.delete_sql, &[&chunk]).await?;
            metrics.outbox_rows_deleted.inc_by(n);
            deleted += n;
        }
        Ok(deleted)
    }
}

/// A committed transaction's outbox rows, by table index.
#[derive(Debug)]
struct Committed {
    /// Start of the commit record: the server replays the transaction after a restart as
    /// long as the confirmed position is not past it.
    commit_lsn: Lsn,
    /// The flush watermark passes this when all of its events are durable.
    end_lsn: Lsn,
    rows: Vec<(usize, String)>,
}

/// What the observer hands to the task.
#[derive(Debug, Default)]
struct Shared {
    committed: VecDeque<Committed>,
    /// Every outbox row of a transaction that ended before this was noted.
    seen_through: Lsn,
}

/// The cleanup's state shared between the flow's observer and the deleting task.
#[derive(Debug)]
pub struct Cleanup {
    tables: Vec<CleanupTable>,
    shared: Mutex<Shared>,
}

impl Cleanup {
    /// `seen_from`: where the server starts sending (the slot's confirmed position);
    /// rows committed before it were deleted by an earlier session.
    pub fn new(tables: Vec<CleanupTable>, seen_from: Lsn) -> Arc<Self> {
        Arc::new(Cleanup {
            tables,
            shared: Mutex::new(Shared {
                committed: VecDeque::new(),
                seen_through: seen_from,
            }),
        })
    }

    /// Deletes delivered rows given per table (config order), e.g. a snapshot's.
    pub async fn delete_rows(
        &self,
        client: &Client,
        ids: &[Vec<String>],
        batch_rows: usize,
        metrics: &Metrics,
    ) -> Result<(), RelayError> {
        for (table, ids) in self.tables.iter().zip(ids) {
            table.delete(client, ids, batch_rows, metrics).await?;
        }
        Ok(())
    }

    pub fn observer(self: &Arc<Self>) -> CleanupObserver {
        CleanupObserver {
            cleanup: self.clone(),
            relations: HashMap::new(),
            open: None,
        }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The transactions the watermark `flushed` has passed, oldest first (left in
    /// place until [`Cleanup::forget`]).
    fn ready(&self, flushed: Lsn) -> (usize, Vec<Vec<String>>) {
        let shared = self.shared();
        let mut by_table = vec![Vec::new(); self.tables.len()];
        let mut n = 0;
        for c in shared.committed.iter() {
            if c.end_lsn > flushed {
                break;
            }
            n += 1;
            for (t, id) in &c.rows {
                by_table[*t].push(id.clone());
            }
        }
        (n, by_table)
    }

    fn forget(&self, n: usize) {
        self.shared().committed.drain(..n);
    }

    /// The newest position that may be confirmed to the server: not past `flushed`, nor
    /// past the oldest transaction whose rows are still to be deleted, nor past what the
    /// observer has seen.
    fn confirmable(&self, flushed: Lsn) -> Lsn {
        let shared = self.shared();
        let mut at = flushed.min(shared.seen_through);
        if let Some(c) = shared.committed.front() {
            at = at.min(c.commit_lsn);
        }
        at
    }
}

/// Notes the outbox rows of each transaction as the flow reads them.
#[derive(Debug, Clone)]
pub struct CleanupObserver {
    cleanup: Arc<Cleanup>,
    /// Relation id → (table index, id column index), or None for other tables.
    relations: HashMap<u32, Option<(usize, usize)>>,
    /// The open transaction: its commit position and rows so far.
    open: Option<(Lsn, Vec<(usize, String)>)>,
}

impl CleanupObserver {
    pub fn observe(&mut self, msg: &M) {
        match msg {
            M::Relation(r) => {
                let entry = self.cleanup.tables.iter().enumerate().find_map(|(i, t)| {
                    (t.schema == r.namespace && t.name == r.name)
                        .then(|| {
                            r.columns
                                .iter()
                                .position(|c| c.name == t.id_column)
                                .map(|col| (i, col))
                        })
                        .flatten()
                });
                self.relations.insert(r.rel_id, entry);
            }
            M::Begin(b) => self.open = Some((b.final_lsn, Vec::new())),
            M::Insert(i) => {
                let (Some((_, rows)), Some(Some((table, col)))) =
                    (self.open.as_mut(), self.relations.get(&i.rel_id))
                else {
                    return;
                };
                if let Some(TupleValue::Text(id)) = i.new.values().get(*col) {
                    rows.push((*table, String::from_utf8_lossy(id).into_owned()));
                }
            }
            M::Commit(c) => {
                let rows = self.open.take().map(|(_, rows)| rows).unwrap_or_default();
                let mut shared = self.cleanup.shared();
                if !rows.is_empty() {
                    shared.committed.push_back(Committed {
                        commit_lsn: c.commit_lsn,
                        end_lsn: c.end_lsn,
                        rows,
                    });
                }
                shared.seen_through = shared.seen_through.max(c.end_lsn);
            }
            M::Message(m) if !m.transactional && self.open.is_none() => self.idle(m.lsn),
            _ => {}
        }
    }

    /// A position outside any transaction (a keepalive's WAL end): every row before it
    /// has been seen.
    pub fn idle(&mut self, lsn: Lsn) {
        if self.open.is_none() {
            let mut shared = self.cleanup.shared();
            shared.seen_through = shared.seen_through.max(lsn);
        }
    }
}

/// Every `interval`, deletes the rows of delivered transactions and moves the
/// confirmation hold. Deletion errors are retried at the next tick (the rows stay, and
/// so does the hold).
pub async fn run(
    cleanup: Arc<Cleanup>,
    client: Client,
    progress: Arc<Progress>,
    metrics: Metrics,
    batch_rows: usize,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tick.tick().await;
        let flushed = progress.flushed();
        let (n, by_table) = cleanup.ready(flushed);
        let mut failed = false;
        for (table, ids) in cleanup.tables.iter().zip(&by_table) {
            if ids.is_empty() {
                continue;
            }
            match table.delete(&client, ids, batch_rows, &metrics).await {
                Ok(deleted) => {
                    debug!(table = %table.name, deleted, "outbox cleanup");
                }
                Err(e) => {
                    metrics.errors.with_label_values(&["cleanup"]).inc();
                    if !warned {
                        warn!(error = %e, table = %table.name, "could not delete published outbox rows; retrying");
                        warned = true;
                    }
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            continue;
        }
        warned = false;
        cleanup.forget(n);
        progress.hold_confirmation(cleanup.confirmable(flushed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use outbox_pgoutput::{Begin, Column, Commit, Insert, Relation, ReplicaIdentity, TupleData};

    fn table() -> CleanupTable {
        CleanupTable {
            schema: "public".into(),
            name: "outbox".into(),
            id_column: "id".into(),
            delete_sql: String::new(),
        }
    }

    fn relation() -> M {
        M::Relation(Relation {
            xid: None,
            rel_id: 7,
            namespace: "public".into(),
            name: "outbox".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: ["aggregateid", "id"]
                .iter()
                .map(|n| Column {
                    flags: 0,
                    name: (*n).into(),
                    type_oid: 25,
                    type_modifier: -1,
                })
                .collect(),
        })
    }

    fn tx(obs: &mut CleanupObserver, commit: u64, ids: &[&str]) {
        obs.observe(&M::Begin(Begin {
            final_lsn: Lsn(commit),
            commit_ts: 0,
            xid: 1,
        }));
        for id in ids {
            obs.observe(&M::Insert(Insert {
                xid: None,
                rel_id: 7,
                new: TupleData(vec![
                    TupleValue::Text(Bytes::from_static(b"agg")),
                    TupleValue::Text(Bytes::copy_from_slice(id.as_bytes())),
                ]),
            }));
        }
        obs.observe(&M::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(commit),
            end_lsn: Lsn(commit + 8),
            commit_ts: 0,
        }));
    }

    #[test]
    fn only_rows_of_transactions_behind_the_watermark_are_ready_and_the_hold_stays_before_the_rest()
    {
        let cleanup = Cleanup::new(vec![table()], Lsn(50));
        let mut obs = cleanup.observer();
        obs.observe(&relation());
        tx(&mut obs, 100, &["a", "b"]);
        tx(&mut obs, 200, &[]);
        tx(&mut obs, 300, &["c"]);
        // Nothing delivered: nothing ready; confirmation held at the first row's commit.
        assert_eq!(cleanup.ready(Lsn(60)).0, 0);
        assert_eq!(cleanup.confirmable(Lsn(60)), Lsn(60));
        assert_eq!(cleanup.confirmable(Lsn(250)), Lsn(100));
        // The first transaction delivered.
        let (n, ids) = cleanup.ready(Lsn(250));
        assert_eq!((n, ids), (1, vec![vec!["a".to_string(), "b".to_string()]]));
        cleanup.forget(1);
        assert_eq!(cleanup.confirmable(Lsn(250)), Lsn(250));
        // Everything delivered and deleted: the watermark, but not past what was seen.
        let (n, ids) = cleanup.ready(Lsn(400));
        assert_eq!((n, ids), (1, vec![vec!["c".to_string()]]));
        cleanup.forget(1);
        assert_eq!(cleanup.confirmable(Lsn(400)), Lsn(308));
        obs.idle(Lsn(500));
        assert_eq!(cleanup.confirmable(Lsn(400)), Lsn(400));
    }

    #[test]
    fn rows_of_other_tables_and_open_transactions_are_not_noted() {
        let cleanup = Cleanup::new(vec![table()], Lsn(0));
        let mut obs = cleanup.observer();
        obs.observe(&M::Relation(Relation {
            name: "other".into(),
            rel_id: 8,
            ..match relation() {
                M::Relation(r) => r,
                _ => unreachable!(),
            }
        }));
        obs.observe(&M::Begin(Begin {
            final_lsn: Lsn(100),
            commit_ts: 0,
            xid: 1,
        }));
        obs.observe(&M::Insert(Insert {
            xid: None,
            rel_id: 8,
            new: TupleData(vec![
                TupleValue::Text(Bytes::from_static(b"agg")),
                TupleValue::Text(Bytes::from_static(b"x")),
            ]),
        }));
        // A keepalive inside a transaction says nothing about its rows.
        obs.idle(Lsn(90));
        assert_eq!(cleanup.confirmable(Lsn(1000)), Lsn(0));
        obs.observe(&M::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(100),
            end_lsn: Lsn(108),
            commit_ts: 0,
        }));
        assert_eq!(cleanup.ready(Lsn(1000)).0, 0);
        assert_eq!(cleanup.confirmable(Lsn(1000)), Lsn(108));
    }
}
