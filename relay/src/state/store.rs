//! The state tables: creation (or verification for least-privilege roles), reads and
//! writes.

use std::sync::Arc;

use outbox_pgoutput::Lsn;
use outbox_pgwire::{quote_ident, quote_literal};
use tokio_postgres::Client;
use tracing::{info, warn};

use crate::config::{Config, StateMode};
use crate::error::RelayError;

/// One slot's row in `<schema>.progress`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressRecord {
    /// Everything before it was delivered.
    pub confirmed_lsn: Lsn,
    /// When it was last written (UTC, ISO 8601).
    pub updated_at: String,
}

/// Access to `<schema>.progress` and `<schema>.parked` for one slot on one PostgreSQL
/// system.
pub struct StateStore {
    pub(super) client: Arc<Client>,
    table: String,
    /// `<schema>.parked`, quoted.
    pub(super) parked: String,
    /// `<schema>.snapshot`, quoted: a row while a snapshot of the slot is incomplete.
    pub(super) snapshot: String,
    pub(super) slot: String,
    /// `<schema>.parked` has the `kafka_partition` column (tables created before it
    /// existed get it when the role may alter them).
    pub(super) parked_partition: bool,
    /// IDENTIFY_SYSTEM's system identifier: a record from another cluster (a restored
    /// copy, a different server behind the same name) is never trusted.
    system_id: String,
}

/// The SQL that creates the state tables (also for a DBA to run for a least-privilege role).
pub fn create_sql(schema: &str) -> String {
    let s = quote_ident(schema);
    format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.progress (
  slot              text PRIMARY KEY,
  system_identifier text NOT NULL,
  confirmed_lsn     pg_lsn NOT NULL,
  updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {s}.parked (
  slot            text NOT NULL,
  commit_lsn      pg_lsn NOT NULL,
  seq             bigint NOT NULL,
  event_id        text NOT NULL,
  aggregate_type  text NOT NULL,
  aggregate_id    text NOT NULL,
  event_type      text NOT NULL,
  destination     text NOT NULL,
  payload         bytea,
  header_names    text[] NOT NULL,
  header_values   bytea[] NOT NULL,
  kafka_partition integer,
  timestamp_ms    bigint NOT NULL,
  commit_time_us  bigint NOT NULL,
  reason          text NOT NULL,
  error           text NOT NULL,
  attempts        integer NOT NULL DEFAULT 0,
  parked_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (slot, commit_lsn, seq)
);
CREATE INDEX IF NOT EXISTS parked_by_aggregate ON {s}.parked (slot, aggregate_id, commit_lsn, seq);
CREATE TABLE IF NOT EXISTS {s}.snapshot (
  slot        text PRIMARY KEY,
  started_at  timestamptz NOT NULL DEFAULT now()
);"
    )
}

/// Opens (creating if needed and allowed) the state tables. `Ok(None)`: `state.mode` is
/// `off`, or `auto` and the role can neither create nor write them (logged once).
pub async fn open(
    client: &Arc<Client>,
    config: &Config,
    system_id: &str,
) -> Result<Option<StateStore>, RelayError> {
    let mode = config.state.mode;
    if mode == StateMode::Off {
        return Ok(None);
    }
    match usable(client, &config.state.schema).await {
        Ok(parked_partition) => {
            let parked = format!("{}.parked", quote_ident(&config.state.schema));
            if !parked_partition
                && config
                    .outbox
                    .tables
                    .iter()
                    .any(|t| t.partition_column.is_some())
            {
                return Err(RelayError::Setup(format!(
                    "outbox.tables[].partition_column: parked events must keep their partition, but {parked} has no kafka_partition column and the role may not add it; run ALTER TABLE {parked} ADD COLUMN IF NOT EXISTS kafka_partition integer as its owner"
                )));
            }
            Ok(Some(StateStore {
                client: client.clone(),
                table: format!("{}.progress", quote_ident(&config.state.schema)),
                parked,
                snapshot: format!("{}.snapshot", quote_ident(&config.state.schema)),
                slot: config.source.slot.clone(),
                parked_partition,
                system_id: system_id.to_owned(),
            }))
        }
        Err(problem) if mode == StateMode::Auto => {
            warn!(%problem, "running without the relay's state tables (state.mode = auto): a PostgreSQL restart makes the server resend transactions already delivered; a privileged role can create them with the SQL in the README's \"State tables\" section; state.mode: off silences this");
            Ok(None)
        }
        Err(problem) => Err(RelayError::Setup(format!(
            "state.mode is required but the state tables cannot be used: {problem}"
        ))),
    }
}

/// The record for `config.source.slot` on system `system_id`, read without creating
/// anything (`outbox-relay check`): `None` when the state tables are off or absent.
pub async fn peek_record(
    client: &Client,
    config: &Config,
    system_id: &str,
) -> Result<Option<ProgressRecord>, RelayError> {
    if config.state.mode == StateMode::Off {
        return Ok(None);
    }
    let table = format!("{}.progress", quote_ident(&config.state.schema));
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    read_record(client, &table, &config.source.slot, system_id).await
}

/// One slot's record, if it was written on system `system_id`.
async fn read_record(
    client: &Client,
    table: &str,
    slot: &str,
    system_id: &str,
) -> Result<Option<ProgressRecord>, RelayError> {
    let row = client
            .query_opt(
                &format!(
                    "SELECT confirmed_lsn::text, system_identifier, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM {table} WHERE slot = $1"
                ),
                &[&slot],
            )
            .await?;
    let Some(row) = row else { return Ok(None) };
    let system: String = row.get(1);
    if system != system_id {
        warn!(slot = %slot, recorded_system = %system, system = %system_id,
                "the recorded progress belongs to another PostgreSQL system; ignoring it");
        return Ok(None);
    }
    let lsn: String = row.get(0);
    Ok(lsn.parse().ok().map(|confirmed_lsn| ProgressRecord {
        confirmed_lsn,
        updated_at: row.get(2),
    }))
}

/// For `check`: whether the state tables are usable or creatable, changing nothing.
pub async fn inspect(client: &Client, config: &Config) -> Result<String, RelayError> {
    let schema = &config.state.schema;
    let parking_needed = config.outbox.on_invalid == crate::config::InvalidEventPolicy::Park
        || config.sink.parks_on_open();
    if config.state.mode == StateMode::Off {
        return Ok(
            "state.mode is off: PostgreSQL restarts replay delivered events; no parking".into(),
        );
    }
    let table = format!("{}.progress", quote_ident(schema));
    let parked = format!("{}.parked", quote_ident(schema));
    let row = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL,
                    has_database_privilege(current_database(), 'CREATE')",
            &[&table, &parked],
        )
        .await?;
    let (exists, can_create): (bool, bool) = (row.get(0), row.get(1));
    let problem = if exists {
        let mut missing = None;
        for t in [&table, &parked] {
            let ok: bool = client
                .query_one(
                    "SELECT has_table_privilege($1, 'SELECT, INSERT, UPDATE, DELETE')",
                    &[t],
                )
                .await?
                .get(0);
            if !ok {
                missing = Some(format!(
                    "the role lacks SELECT, INSERT, UPDATE or DELETE on {t}"
                ));
            }
        }
        match missing {
            None => return Ok(format!("state tables {table} and {parked} are usable")),
            Some(m) => m,
        }
    } else if can_create {
        return Ok(format!(
            "state tables in schema {schema:?} do not exist yet; run will create them"
        ));
    } else {
        format!("state tables in schema {schema:?} do not exist and the role may not create them")
    };
    if parking_needed || config.state.mode == StateMode::Required {
        Err(RelayError::Setup(format!(
            "{problem}; outbox.on_invalid: park (the default), circuit_breaker.on_open: park and state.mode: required need them: create them as a privileged role (README, \"State tables\") or set on_invalid to dead_letter or halt and on_open to stall"
        )))
    } else {
        Ok(format!(
            "{problem}: running without them (PostgreSQL restarts replay delivered events; only on_invalid dead_letter or halt and on_open stall are available)"
        ))
    }
}

/// Creates the tables if missing, then checks the role may read and write them. `Ok`
/// says whether the parked table has the `kafka_partition` column.
async fn usable(client: &Client, schema: &str) -> Result<bool, String> {
    let table = format!("{}.progress", quote_ident(schema));
    let parked = format!("{}.parked", quote_ident(schema));
    let snapshot = format!("{}.snapshot", quote_ident(schema));
    let exists: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
            &[&table, &parked],
        )
        .await
        .map_err(|e| format!("cannot look up {table}: {e}"))?
        .get(0);
    if !exists {
        // CREATE SCHEMA IF NOT EXISTS checks the CREATE privilege before existence, so it
        // runs only when the table is missing.
        client
            .batch_execute(&create_sql(schema))
            .await
            .map_err(|e| format!("cannot create {table}: {e}"))?;
        info!(%table, "created the relay's state table");
    }
    // A schema from before snapshots existed gets the snapshot table when the role may
    // create it; without it everything but snapshots works (they then fail by name).
    let has_snapshot: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&snapshot])
        .await
        .map_err(|e| format!("cannot look up {snapshot}: {e}"))?
        .get(0);
    if !has_snapshot {
        if let Err(e) = client.batch_execute(&create_sql(schema)).await {
            warn!(table = %snapshot, error = %e, "cannot create the snapshot table; snapshots (source.snapshot, on_slot_lost: snapshot) will fail until a privileged role creates it (README \"State tables\")");
        }
    }
    // A parked table from before partitions were kept gets the column when the role may
    // alter it; without it only `partition_column` is refused (in `open`).
    let column_sql = "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1)
                        AND attname = 'kafka_partition' AND NOT attisdropped)";
    let mut parked_partition: bool = client
        .query_one(column_sql, &[&parked])
        .await
        .map_err(|e| format!("cannot look up the columns of {parked}: {e}"))?
        .get(0);
    if !parked_partition {
        match client
            .batch_execute(&format!(
                "ALTER TABLE {parked} ADD COLUMN IF NOT EXISTS kafka_partition integer"
            ))
            .await
        {
            Ok(()) => parked_partition = true,
            Err(e) => {
                warn!(table = %parked, error = %e, "cannot add the kafka_partition column to the parked table; outbox.tables[].partition_column is refused until its owner adds it")
            }
        }
    }
    for t in [&table, &parked] {
        let writable: bool = client
            .query_one(
                "SELECT has_table_privilege($1, 'SELECT, INSERT, UPDATE, DELETE')",
                &[t],
            )
            .await
            .map_err(|e| format!("cannot check privileges on {t}: {e}"))?
            .get(0);
        if !writable {
            return Err(format!(
                "the role lacks SELECT, INSERT, UPDATE or DELETE on {t}"
            ));
        }
    }
    Ok(parked_partition)
}

impl StateStore {
    /// The recorded position for this slot, if one was written on this system.
    pub async fn load_progress(&self) -> Result<Option<Lsn>, RelayError> {
        Ok(self.load_record().await?.map(|r| r.confirmed_lsn))
    }

    /// The whole record for this slot, if one was written on this system: its presence
    /// means this relay has read the slot before (slot-loss detection).
    pub async fn load_record(&self) -> Result<Option<ProgressRecord>, RelayError> {
        read_record(&self.client, &self.table, &self.slot, &self.system_id).await
    }

    /// The table holding the record, quoted (for the operator's instructions).
    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// Records `lsn` (never moving the record backwards), durably: the write commits with
    /// `synchronous_commit = on` whatever the server's default, so it survives exactly
    /// what the outbox rows' own commits survive.
    pub async fn record_progress(&self, lsn: Lsn) -> Result<(), RelayError> {
        let sql = format!(
            "BEGIN;
SET LOCAL synchronous_commit = on;
INSERT INTO {t} AS p (slot, system_identifier, confirmed_lsn, updated_at)
VALUES ({slot}, {system}, {lsn}, now())
ON CONFLICT (slot) DO UPDATE SET
  confirmed_lsn = CASE WHEN p.system_identifier = EXCLUDED.system_identifier
                       THEN GREATEST(p.confirmed_lsn, EXCLUDED.confirmed_lsn)
                       ELSE EXCLUDED.confirmed_lsn END,
  system_identifier = EXCLUDED.system_identifier,
  updated_at = now();
COMMIT;",
            t = self.table,
            slot = quote_literal(&self.slot),
            system = quote_literal(&self.system_id),
            lsn = quote_literal(&lsn.to_string()),
        );
        self.client.batch_execute(&sql).await?;
        Ok(())
    }
}
