//! Start-up checks and the creation of the publication and slot.
//!
//! Each check returns what it found or a message naming what is wrong and how to fix it;
//! `outbox-relay check` prints them all, `run` stops at the first failure.

use outbox_pgoutput::{Column, Lsn, Relation, ReplicaIdentity};
use tokio_postgres::Client;

use crate::config::{Config, TableConfig};
use crate::error::RelayError;
use crate::outbox::OutboxTable;
use crate::source::shards::{self, Shard};

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub async fn check_wal_level(client: &Client) -> Result<String, RelayError> {
    let row = client.query_one("SHOW wal_level", &[]).await?;
    let level: String = row.get(0);
    if level != "logical" {
        return Err(RelayError::Setup(format!(
            "wal_level is {level:?}; logical replication needs wal_level = logical (set it in postgresql.conf and restart the server)"
        )));
    }
    Ok(level)
}

/// `server_version_num`, e.g. 170005.
pub async fn server_version_num(client: &Client) -> Result<i32, RelayError> {
    Ok(client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await?
        .get(0))
}

/// pgoutput protocol 2 (streaming-capable) exists from PostgreSQL 14 on; 13 refuses it
/// with an error that does not name the relay's setting.
pub fn check_proto_version(version: i32, config: &Config) -> Result<(), RelayError> {
    if config.source.proto_version >= 2 && version < 140000 {
        return Err(RelayError::Setup(format!(
            "source.proto_version {} needs PostgreSQL 14 or newer (the server is {}.{}); use proto_version: 1",
            config.source.proto_version,
            version / 10000,
            version % 10000
        )));
    }
    Ok(())
}

/// Whether to ask pgoutput for logical messages (`messages 'true'`, PostgreSQL 14+).
/// PostgreSQL 13's pgoutput refuses the option, and sends no messages at all: the
/// heartbeats still reach the relay as (empty) transactions, but outbox events written
/// with `pg_logical_emit_message` cannot be read there.
pub fn pgoutput_messages(version: i32, config: &Config) -> Result<bool, RelayError> {
    if version >= 140000 {
        return Ok(true);
    }
    if config.outbox.messages.is_some() {
        return Err(RelayError::Setup(format!(
            "outbox.messages needs PostgreSQL 14 or newer (pgoutput sends logical messages from 14 on; the server is {}.{}); write outbox rows instead, or remove outbox.messages",
            version / 10000,
            version % 10000
        )));
    }
    Ok(false)
}

/// Checks an outbox table's columns with the same rules the Relation messages are held to.
pub async fn check_table(client: &Client, table: &TableConfig) -> Result<String, RelayError> {
    let (schema, name) = table.qualified();
    let rows = client
        .query(
            "SELECT a.attname::text, a.atttypid::int8 FROM pg_attribute a
               JOIN pg_class c ON a.attrelid = c.oid JOIN pg_namespace n ON c.relnamespace = n.oid
              WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&schema, &name],
        )
        .await?;
    if rows.is_empty() {
        return Err(RelayError::Setup(format!(
            "outbox table {schema}.{name} does not exist (outbox.tables[].table)"
        )));
    }
    let relation = Relation {
        xid: None,
        rel_id: 0,
        namespace: schema.to_owned(),
        name: name.to_owned(),
        replica_identity: ReplicaIdentity::Default,
        columns: rows
            .iter()
            .map(|r| Column {
                flags: 0,
                name: r.get(0),
                type_oid: r.get::<_, i64>(1) as u32,
                type_modifier: -1,
            })
            .collect(),
    };
    OutboxTable::resolve(table, &relation)?;
    Ok(format!("{schema}.{name} has the outbox columns"))
}

/// Creates the publication when missing (and allowed), adds missing outbox tables to it,
/// or verifies it in least-privilege mode.
pub async fn ensure_publication(
    client: &Client,
    config: &Config,
    verify_only: bool,
) -> Result<String, RelayError> {
    if let Some(shard) = config.source.shard {
        return ensure_shard_publication(client, config, shard, verify_only).await;
    }
    let pubname = &config.source.publication;
    let create = config.source.create_publication && !verify_only;
    let tables: Vec<String> = config
        .outbox
        .tables
        .iter()
        .map(|t| {
            let (s, n) = t.qualified();
            format!("{}.{}", quote_ident(s), quote_ident(n))
        })
        .collect();
    let existing = client
        .query_opt(
            "SELECT pubinsert FROM pg_publication WHERE pubname = $1",
            &[pubname],
        )
        .await?;
    let Some(row) = existing else {
        if !create {
            return Err(RelayError::Setup(format!(
                "publication {pubname:?} does not exist and source.create_publication is false; create it with: CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert')",
                quote_ident(pubname),
                tables.join(", ")
            )));
        }
        let sql = if tables.is_empty() {
            format!(
                "CREATE PUBLICATION {} WITH (publish = 'insert')",
                quote_ident(pubname)
            )
        } else {
            format!(
                "CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert')",
                quote_ident(pubname),
                tables.join(", ")
            )
        };
        client.batch_execute(&sql).await?;
        return Ok(format!("created publication {pubname:?}"));
    };
    if !row.get::<_, bool>(0) {
        return Err(RelayError::Setup(format!(
            "publication {pubname:?} does not publish inserts; ALTER PUBLICATION {} SET (publish = 'insert')",
            quote_ident(pubname)
        )));
    }
    let mut missing = Vec::new();
    for t in &config.outbox.tables {
        let (s, n) = t.qualified();
        let found = client
            .query_opt(
                "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
                &[pubname, &s, &n],
            )
            .await?;
        if found.is_none() {
            missing.push(format!("{}.{}", quote_ident(s), quote_ident(n)));
        }
    }
    if missing.is_empty() {
        return Ok(format!("publication {pubname:?} covers the outbox tables"));
    }
    if !create {
        return Err(RelayError::Setup(format!(
            "publication {pubname:?} does not include {}; ALTER PUBLICATION {} ADD TABLE {}",
            missing.join(", "),
            quote_ident(pubname),
            missing.join(", ")
        )));
    }
    client
        .batch_execute(&format!(
            "ALTER PUBLICATION {} ADD TABLE {}",
            quote_ident(pubname),
            missing.join(", ")
        ))
        .await?;
    Ok(format!(
        "added {} to publication {pubname:?}",
        missing.join(", ")
    ))
}

/// [`ensure_publication`] for one shard: the publication carries every outbox table with
/// the shard's row filter. A table filtered any other way (another shard count, a
/// hand-written filter, none) is an error, never used: it would drop or duplicate some
/// aggregates' events without a sound.
async fn ensure_shard_publication(
    client: &Client,
    config: &Config,
    shard: Shard,
    verify_only: bool,
) -> Result<String, RelayError> {
    shards::check_server_version(server_version_num(client).await?, config.source.shards)?;
    let pubname = &config.source.publication;
    let create = config.source.create_publication && !verify_only;
    let tables = &config.outbox.tables;
    let mut hashes = Vec::with_capacity(tables.len());
    for t in tables {
        hashes.push(aggregate_id_hash(client, t).await?);
    }
    let existing = client
        .query_opt(
            "SELECT pubinsert FROM pg_publication WHERE pubname = $1",
            &[pubname],
        )
        .await?;
    let Some(row) = existing else {
        let sql = shards::create_publication_sql(pubname, tables, &hashes, shard);
        if !create {
            return Err(RelayError::Setup(format!(
                "publication {pubname:?} (shard {} of {}) does not exist and source.create_publication is false; create it with: {sql}",
                shard.index, shard.count
            )));
        }
        client.batch_execute(&sql).await?;
        return Ok(format!(
            "created publication {pubname:?} (shard {} of {})",
            shard.index, shard.count
        ));
    };
    if !row.get::<_, bool>(0) {
        return Err(RelayError::Setup(format!(
            "publication {pubname:?} does not publish inserts; ALTER PUBLICATION {} SET (publish = 'insert')",
            quote_ident(pubname)
        )));
    }
    let mut missing = Vec::new();
    for (t, hash) in tables.iter().zip(&hashes) {
        let (s, n) = t.qualified();
        let expected = shards::row_filter(&t.columns.aggregate_id, hash, shard);
        let found = client
            .query_opt(
                "SELECT rowfilter FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
                &[pubname, &s, &n],
            )
            .await?;
        match found {
            None => missing.push(format!(
                "{}.{} WHERE ({expected})",
                quote_ident(s),
                quote_ident(n)
            )),
            Some(r) => {
                let filter: Option<String> = r.get(0);
                if !filter.as_deref().is_some_and(|f| {
                    shards::filter_matches(f, &t.columns.aggregate_id, hash, shard)
                }) {
                    return Err(RelayError::Setup(format!(
                        "publication {pubname:?} (shard {} of {}) filters {s}.{n} with {}, not with the shard's filter ({expected}): it was made for another source.shards or by hand, and would lose or duplicate events; see the re-sharding procedure in docs/scaling.md (drop it and its slot only once they are drained, or fix the filter with ALTER PUBLICATION {} SET TABLE …)",
                        shard.index,
                        shard.count,
                        filter.map_or("no row filter".to_string(), |f| format!("the row filter {f}")),
                        quote_ident(pubname)
                    )));
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(format!(
            "publication {pubname:?} covers the outbox tables with shard {} of {}'s row filter",
            shard.index, shard.count
        ));
    }
    let alter = format!(
        "ALTER PUBLICATION {} ADD TABLE {}",
        quote_ident(pubname),
        missing.join(", ")
    );
    if !create {
        return Err(RelayError::Setup(format!(
            "publication {pubname:?} does not include {}; {alter}",
            missing.join(", ")
        )));
    }
    client.batch_execute(&alter).await?;
    Ok(format!(
        "added {} to publication {pubname:?}",
        missing.join(", ")
    ))
}

/// The hash function for a table's aggregate id column, by the column's type.
async fn aggregate_id_hash(
    client: &Client,
    table: &TableConfig,
) -> Result<&'static str, RelayError> {
    let (schema, name) = table.qualified();
    let column = &table.columns.aggregate_id;
    let typname: Option<String> = client
        .query_opt(
            "SELECT t.typname::text FROM pg_attribute a
               JOIN pg_class c ON a.attrelid = c.oid JOIN pg_namespace n ON c.relnamespace = n.oid
               JOIN pg_type t ON a.atttypid = t.oid
              WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND NOT a.attisdropped",
            &[&schema, &name, column],
        )
        .await?
        .map(|r| r.get(0));
    let Some(typname) = typname else {
        return Err(RelayError::Setup(format!(
            "outbox table {schema}.{name} has no aggregate id column {column:?} (outbox.tables[].columns.aggregate_id)"
        )));
    };
    shards::hash_function(&typname).ok_or_else(|| {
        RelayError::Setup(format!(
            "source.shards: the aggregate id column {schema}.{name}.{column} has type {typname}, which no row filter can hash; supported are text, varchar, char, uuid, smallint, integer and bigint"
        ))
    })
}

/// What `pg_replication_slots` says about the slot.
#[derive(Debug, Clone, Default)]
pub struct SlotInfo {
    pub plugin: Option<String>,
    pub database: Option<String>,
    pub active_pid: Option<i32>,
    pub wal_status: Option<String>,
    /// Where the slot resumes: everything before it is already acknowledged.
    pub confirmed_flush: Option<Lsn>,
    /// Why PostgreSQL invalidated it (17+; `None` before or while valid).
    pub invalidation_reason: Option<String>,
    /// Created with `FAILOVER` (17+).
    pub failover: Option<bool>,
}

pub async fn inspect_slot(client: &Client, slot: &str) -> Result<Option<SlotInfo>, RelayError> {
    // invalidation_reason and failover exist from 17 on; to_jsonb reads them when there.
    let row = client
        .query_opt(
            "SELECT plugin::text, database::text, active_pid, wal_status, confirmed_flush_lsn::text,
                    to_jsonb(s) ->> 'invalidation_reason', (to_jsonb(s) ->> 'failover')::bool
               FROM pg_replication_slots s WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    Ok(row.map(|r| SlotInfo {
        plugin: r.get(0),
        database: r.get(1),
        active_pid: r.get(2),
        wal_status: r.get(3),
        confirmed_flush: r.get::<_, Option<String>>(4).and_then(|s| s.parse().ok()),
        invalidation_reason: r.get(5),
        failover: r.get(6),
    }))
}

/// Checks an existing slot can be used by this relay (an invalidated slot is
/// [`super::slot::loss`]'s matter).
pub fn verify_slot(info: &SlotInfo, slot: &str, database: &str) -> Result<String, RelayError> {
    if info.plugin.as_deref() != Some("pgoutput") {
        return Err(RelayError::Setup(format!(
            "slot {slot:?} uses plugin {:?}, not pgoutput; drop it or configure another source.slot",
            info.plugin
        )));
    }
    if info.database.as_deref() != Some(database) {
        return Err(RelayError::Setup(format!(
            "slot {slot:?} belongs to database {:?}, not {database:?}",
            info.database
        )));
    }
    if let Some(pid) = info.active_pid {
        return Err(RelayError::SlotBusy(format!(
            "slot {slot:?} is in use by server process {pid} (another relay?); waiting"
        )));
    }
    Ok(format!(
        "slot {slot:?} is usable (wal_status {:?})",
        info.wal_status.as_deref().unwrap_or("?")
    ))
}
