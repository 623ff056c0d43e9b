//! Snapshots (`source.snapshot`, `source.on_slot_lost: snapshot`): the outbox rows a
//! new slot's exported snapshot holds are published before streaming starts.
//!
//! The slot is created with `EXPORT_SNAPSHOT`; its snapshot is imported at once on a
//! separate SQL connection (`SET TRANSACTION SNAPSHOT`), before the replication
//! connection sends anything else, so the rows read are exactly those committed before
//! the slot's consistent point and the stream carries exactly those committed after:
//! no gap, no overlap. Each table is read in `snapshot_order_by` order and its rows go
//! through the flow as pgoutput messages (a Relation from the catalog, Inserts with the
//! columns' text output under the walsender's output settings, one Begin/Commit at the
//! consistent point around them), so mapping, routing, the sink check, parking and
//! acknowledgement are the streamed events' own. Streaming starts only once every
//! snapshot event is finished ([`Flow::settle`]), which keeps each aggregate's snapshot
//! events ahead of its streamed ones and the slot from being confirmed past the
//! snapshot before it is delivered.

use outbox_pgoutput::{
    unix_micros_to_pg_timestamp, Begin, Column, Commit, Insert, LogicalReplicationMessage as M,
    Lsn, Relation, ReplicaIdentity, TupleData, TupleValue,
};
use outbox_pgwire::{connect_sql, quote_ident, quote_literal, ConnectOptions};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, SimpleQueryMessage};
use tracing::info;

use super::ack::unix_now_us;
use super::cleanup::Cleanup;
use super::flow::Flow;
use crate::config::TableConfig;
use crate::error::RelayError;
use crate::telemetry::Metrics;

/// Rows fetched from the cursor at a time.
const FETCH_ROWS: usize = 1000;

/// The walsender's output settings (`outbox_pgwire` sends them in the startup packet),
/// so a column's text here is byte for byte what pgoutput would send.
const OUTPUT_SETTINGS: &str = "SET LOCAL DateStyle = 'ISO'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3; SET LOCAL bytea_output = 'hex'; SET LOCAL TimeZone = 'UTC';";

/// An imported snapshot, read in a repeatable-read transaction of its own connection.
pub struct Snapshot {
    client: Client,
    connection: JoinHandle<()>,
    consistent_point: Lsn,
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// What a completed snapshot published: per outbox table (config order), the ids of its
/// rows, for `outbox.cleanup`.
pub struct Published {
    pub ids: Vec<Vec<String>>,
    pub rows: u64,
}

impl Snapshot {
    /// Imports `name`; must run before the replication connection that exported it
    /// sends another command.
    pub async fn import(
        opts: &ConnectOptions,
        name: &str,
        consistent_point: Lsn,
    ) -> Result<Snapshot, RelayError> {
        let (client, connection) = connect_sql(opts).await?;
        let snapshot = Snapshot {
            client,
            connection,
            consistent_point,
        };
        snapshot
            .client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT {}; {OUTPUT_SETTINGS}",
                quote_literal(name)
            ))
            .await?;
        Ok(snapshot)
    }

    /// Hands every outbox row of the snapshot to `flow` and waits until all are
    /// finished. `Ok(None)`: shutdown came first (the snapshot stays incomplete).
    pub async fn publish(
        &self,
        flow: &mut Flow,
        tables: &[TableConfig],
        keep_ids: bool,
        metrics: &Metrics,
    ) -> Result<Option<Published>, RelayError> {
        let at = self.consistent_point;
        let begin = M::Begin(Begin {
            final_lsn: at,
            commit_ts: unix_micros_to_pg_timestamp(unix_now_us()),
            xid: 0,
        });
        if !flow.on_decoded(begin).await? {
            return Ok(None);
        }
        let mut published = Published {
            ids: Vec::new(),
            rows: 0,
        };
        for table in tables {
            let mut ids = Vec::new();
            match self
                .table(flow, table, keep_ids.then_some(&mut ids), metrics)
                .await?
            {
                Some(n) => published.rows += n,
                None => return Ok(None),
            }
            published.ids.push(ids);
        }
        let commit = M::Commit(Commit {
            flags: 0,
            commit_lsn: at,
            end_lsn: at,
            commit_ts: unix_micros_to_pg_timestamp(unix_now_us()),
        });
        if !flow.on_decoded(commit).await? {
            return Ok(None);
        }
        flow.settle().await?;
        self.client.batch_execute("COMMIT").await?;
        info!(rows = published.rows, consistent_point = %at, "snapshot delivered");
        Ok(Some(published))
    }

    /// With `outbox.cleanup`: deletes the delivered snapshot rows (after the read-only
    /// transaction ended), before the incomplete-snapshot mark is cleared.
    pub async fn delete_published(
        &self,
        cleanup: &Cleanup,
        published: &Published,
        batch_rows: usize,
        metrics: &Metrics,
    ) -> Result<(), RelayError> {
        cleanup
            .delete_rows(&self.client, &published.ids, batch_rows, metrics)
            .await
    }

    /// One table's rows, in order; `None` on shutdown.
    async fn table(
        &self,
        flow: &mut Flow,
        table: &TableConfig,
        mut ids: Option<&mut Vec<String>>,
        metrics: &Metrics,
    ) -> Result<Option<u64>, RelayError> {
        let relation = self.relation(table).await?;
        let id_column = relation
            .columns
            .iter()
            .position(|c| c.name == table.columns.id);
        let (schema, name) = table.qualified();
        let columns: Vec<String> = relation
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect();
        let order: Vec<String> = table
            .snapshot_order()
            .iter()
            .map(|c| quote_ident(c))
            .collect();
        let rel_id = relation.rel_id;
        flow.on_decoded(M::Relation(relation)).await?;
        self.client
            .batch_execute(&format!(
                "DECLARE outbox_relay_snapshot NO SCROLL CURSOR FOR SELECT {} FROM {}.{} ORDER BY {}",
                columns.join(", "),
                quote_ident(schema),
                quote_ident(name),
                order.join(", ")
            ))
            .await
            .map_err(|e| {
                RelayError::Setup(format!(
                    "snapshot of {schema}.{name} ordered by {} (outbox.tables[].snapshot_order_by): {e}",
                    order.join(", ")
                ))
            })?;
        let mut n = 0;
        loop {
            let messages = self
                .client
                .simple_query(&format!("FETCH {FETCH_ROWS} FROM outbox_relay_snapshot"))
                .await?;
            let mut fetched = 0;
            for message in messages {
                let SimpleQueryMessage::Row(row) = message else {
                    continue;
                };
                fetched += 1;
                let values: Vec<TupleValue> = (0..row.len())
                    .map(|i| match row.get(i) {
                        Some(text) => {
                            TupleValue::Text(bytes::Bytes::copy_from_slice(text.as_bytes()))
                        }
                        None => TupleValue::Null,
                    })
                    .collect();
                if let (Some(ids), Some(col)) = (ids.as_deref_mut(), id_column) {
                    if let Some(id) = row.get(col) {
                        ids.push(id.to_owned());
                    }
                }
                let insert = M::Insert(Insert {
                    xid: None,
                    rel_id,
                    new: TupleData(values),
                });
                metrics.snapshot_rows.inc();
                if !flow.on_decoded(insert).await? {
                    return Ok(None);
                }
            }
            n += fetched;
            if fetched < FETCH_ROWS {
                break;
            }
        }
        self.client
            .batch_execute("CLOSE outbox_relay_snapshot")
            .await?;
        info!(table = %format!("{schema}.{name}"), rows = n, "snapshot of the table handed over");
        Ok(Some(n as u64))
    }

    /// The table as pgoutput describes it: its oid and the columns pgoutput sends.
    async fn relation(&self, table: &TableConfig) -> Result<Relation, RelayError> {
        let (schema, name) = table.qualified();
        let rows = self
            .client
            .query(
                "SELECT c.oid::int8, a.attname::text, a.atttypid::int8, a.atttypmod
                   FROM pg_attribute a JOIN pg_class c ON a.attrelid = c.oid
                   JOIN pg_namespace n ON c.relnamespace = n.oid
                  WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0
                    AND NOT a.attisdropped AND a.attgenerated = ''
                  ORDER BY a.attnum",
                &[&schema, &name],
            )
            .await?;
        let Some(first) = rows.first() else {
            return Err(RelayError::Setup(format!(
                "outbox table {schema}.{name} does not exist in the snapshot"
            )));
        };
        Ok(Relation {
            xid: None,
            rel_id: first.get::<_, i64>(0) as u32,
            namespace: schema.to_owned(),
            name: name.to_owned(),
            replica_identity: ReplicaIdentity::Default,
            columns: rows
                .iter()
                .map(|r| Column {
                    flags: 0,
                    name: r.get(1),
                    type_oid: r.get::<_, i64>(2) as u32,
                    type_modifier: r.get(3),
                })
                .collect(),
        })
    }
}
