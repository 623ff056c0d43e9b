//! The slot's lifecycle: created on the first start only; a slot that existed and is gone
//! (dropped, invalidated, not carried over by a failover) stops the relay.
//!
//! PostgreSQL cannot tell "never created" from "lost": both are a missing row in
//! `pg_replication_slots`. The relay's own progress record (`<state.schema>.progress`,
//! written from the moment the slot is created, physically replicated to standbys with
//! the rest of the database) is what tells them apart, across restarts and replicas.
//! Re-creating a lost slot silently would start at the current WAL position and skip
//! every event written in between.

use outbox_pgoutput::Lsn;
use outbox_pgwire::ReplicationClient;
use tokio_postgres::Client;
use tracing::{info, warn};

use super::setup::{self, SlotInfo};
use crate::config::{Config, SlotLostPolicy, SnapshotMode};
use crate::error::RelayError;
use crate::state::{ProgressRecord, StateStore};
use crate::telemetry::Metrics;

/// Why the slot is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LossCause {
    /// No such slot, though the relay recorded progress through it on this system.
    Missing,
    /// `wal_status = lost`, with PostgreSQL 17+'s `invalidation_reason` when known.
    Invalidated(Option<String>),
}

/// Where a session starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotStart {
    /// The slot's confirmed position (everything before it is acknowledged), or the
    /// consistent point of a slot created now.
    pub confirmed: Lsn,
    /// A slot created now with an exported snapshot: its name. The rows visible in it
    /// are to be published before streaming (README "Snapshots").
    pub snapshot: Option<String>,
}

/// Why a snapshot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnapshotReason {
    Initial,
    SlotLost,
    Unfinished,
}

/// Makes sure the slot is there and returns where streaming resumes: the slot's
/// confirmed flush; or the consistent point of a slot created now because none existed
/// and the relay never read one here, with a snapshot when `source.snapshot` asks; or a
/// new slot with a snapshot when the old one was lost (`on_slot_lost: snapshot`) or an
/// earlier snapshot did not finish.
pub async fn ensure(
    sql: &Client,
    repl: &mut ReplicationClient,
    config: &Config,
    state: Option<&StateStore>,
    metrics: &Metrics,
) -> Result<SlotStart, RelayError> {
    let src = &config.source;
    let info = setup::inspect_slot(sql, &src.slot).await?;
    let record = match state {
        Some(store) => store.load_record().await?,
        None => None,
    };
    // Checked whatever the configuration says now: the slot of an unfinished snapshot
    // is behind rows that were never published.
    let unfinished = match state {
        Some(store) => store.snapshot_pending().await?,
        None => false,
    };
    let reason = if unfinished {
        warn!(slot = %src.slot, "a snapshot of this slot did not finish; taking a new one (rows it had published are published again)");
        Some(SnapshotReason::Unfinished)
    } else if let Some(cause) = loss(info.as_ref(), record.as_ref()) {
        if !src.snapshot_on_loss() {
            return Err(on_lost(
                config,
                state.map(StateStore::table),
                record.as_ref(),
                &cause,
            ));
        }
        warn!(slot = %src.slot, ?cause, recorded = ?record.as_ref().map(|r| r.confirmed_lsn.to_string()),
            "replication slot lost; creating a new one and publishing the outbox rows still in the tables (source.on_slot_lost = snapshot)");
        Some(SnapshotReason::SlotLost)
    } else if let Some(info) = &info {
        info!("{}", setup::verify_slot(info, &src.slot, &src.database)?);
        return Ok(SlotStart {
            confirmed: info.confirmed_flush.unwrap_or(Lsn::ZERO),
            snapshot: None,
        });
    } else if src.snapshot != SnapshotMode::Never {
        Some(SnapshotReason::Initial)
    } else {
        None
    };
    if !src.create_slot {
        return Err(RelayError::Setup(format!(
            "replication slot {:?} does not exist and source.create_slot is false; create it with SELECT pg_create_logical_replication_slot('{}', 'pgoutput')",
            src.slot, src.slot
        )));
    }
    if src.slot_failover {
        let version = setup::server_version_num(sql).await?;
        if version < 170000 {
            return Err(RelayError::Setup(format!(
                "source.slot_failover is true but the server cannot create slot {:?} with FAILOVER: failover slots need PostgreSQL 17 or newer (the server is {}.{}); set source.slot_failover: false on older servers",
                src.slot,
                version / 10000,
                version % 10000
            )));
        }
    }
    let created = match reason {
        Some(reason) => {
            let store = state.ok_or_else(|| {
                RelayError::Setup(format!(
                    "a snapshot is needed ({reason:?}) but the state tables in schema {:?} cannot be used (see the warning above): they record that a snapshot is incomplete; grant the role access to them",
                    config.state.schema
                ))
            })?;
            // The mark first: a crash at any later point leads to a new snapshot.
            store.begin_snapshot().await?;
            if let Some(info) = &info {
                if let Some(pid) = info.active_pid {
                    return Err(RelayError::SlotBusy(format!(
                        "slot {:?} is in use by server process {pid} (another relay?); waiting",
                        src.slot
                    )));
                }
                // Lost (invalidated) or left by an unfinished snapshot: its position
                // is of no use, and the new slot takes its name.
                repl.drop_slot(&src.slot, false).await?;
                info!(slot = %src.slot, "dropped the old slot");
            }
            repl.create_logical_slot_exporting(&src.slot, "pgoutput", src.slot_failover)
                .await?
        }
        None if src.slot_failover => {
            repl.create_failover_logical_slot(&src.slot, "pgoutput")
                .await?
        }
        None => repl.create_logical_slot(&src.slot, "pgoutput").await?,
    };
    metrics.slot_created.inc();
    info!(slot = %src.slot, consistent_point = %created.consistent_point, failover = src.slot_failover, snapshot = ?created.snapshot_name, "created replication slot");
    match state {
        // Recorded at once, so a loss before the first delivery is caught too.
        Some(store) => store.record_progress(created.consistent_point).await?,
        None => warn!(slot = %src.slot,
            "without the relay's state table a lost slot cannot be told from a first start: if this slot is ever dropped or invalidated it will be re-created silently and the events in between skipped"),
    }
    Ok(SlotStart {
        confirmed: created.consistent_point,
        snapshot: created.snapshot_name,
    })
}

/// The slot is lost if it is invalidated, or if it is missing while the relay holds a
/// record of reading it on this system.
pub fn loss(info: Option<&SlotInfo>, record: Option<&ProgressRecord>) -> Option<LossCause> {
    match info {
        Some(i) if i.wal_status.as_deref() == Some("lost") => {
            Some(LossCause::Invalidated(i.invalidation_reason.clone()))
        }
        Some(_) => None,
        None => record.map(|_| LossCause::Missing),
    }
}

/// The error `source.on_slot_lost: halt` stops with: the slot, the last delivered LSN and
/// what the operator can do.
pub fn on_lost(
    config: &Config,
    state_table: Option<&str>,
    record: Option<&ProgressRecord>,
    cause: &LossCause,
) -> RelayError {
    // Only reached with `halt` (`snapshot` repairs the loss instead).
    match config.source.on_slot_lost {
        SlotLostPolicy::Halt | SlotLostPolicy::Snapshot => RelayError::SlotLost(lost_message(
            &config.source.slot,
            state_table,
            record,
            cause,
        )),
    }
}

fn lost_message(
    slot: &str,
    state_table: Option<&str>,
    record: Option<&ProgressRecord>,
    cause: &LossCause,
) -> String {
    let what = match cause {
        LossCause::Missing => "it no longer exists (dropped, or absent after a failover to a standby: before PostgreSQL 17 slots are not synchronized to standbys; see source.slot_failover)".to_string(),
        LossCause::Invalidated(reason) => format!(
            "PostgreSQL invalidated it (wal_status = lost{}): WAL it still needed was removed, e.g. because max_slot_wal_keep_size was exceeded",
            reason.as_ref().map(|r| format!(", invalidation_reason = {r}")).unwrap_or_default()
        ),
    };
    let position = match record {
        Some(r) => format!(
            "the relay delivered every event committed before LSN {} (recorded {})",
            r.confirmed_lsn, r.updated_at
        ),
        None => "the relay has no record of its last delivered position (state tables off)".into(),
    };
    let drop_slot = match cause {
        LossCause::Invalidated(_) => format!("SELECT pg_drop_replication_slot('{slot}'); "),
        LossCause::Missing => String::new(),
    };
    let forget = match state_table {
        Some(table) => format!("DELETE FROM {table} WHERE slot = '{slot}'"),
        None => "nothing else".into(),
    };
    format!(
        "replication slot {slot:?} was lost: {what}. {position}; events committed after that may never have been published, and no WAL the relay can read still holds them. Nothing was acknowledged and no new slot was created (source.on_slot_lost = halt). Choose: (1) reconcile: publish the outbox rows committed after that point yourself, then run {drop_slot}{forget}; and start the relay, which creates a new slot at the current position; or (2) accept the loss: run the same statements and start the relay"
    )
}

/// `outbox-relay check` with `source.slot_failover`: what the primary can tell about
/// failover readiness. The standby's side (`sync_replication_slots = on`,
/// `hot_standby_feedback = on`, `primary_slot_name`) is not visible from here.
pub async fn failover_readiness(sql: &Client, config: &Config) -> Result<String, RelayError> {
    let slot = &config.source.slot;
    let version = setup::server_version_num(sql).await?;
    if version < 170000 {
        return Err(RelayError::Setup(format!(
            "source.slot_failover needs PostgreSQL 17 or newer (the server is {}.{}): older servers do not synchronize slots to standbys; set source.slot_failover: false",
            version / 10000,
            version % 10000
        )));
    }
    if let Some(info) = setup::inspect_slot(sql, slot).await? {
        if info.failover == Some(false) {
            return Err(RelayError::Setup(format!(
                "slot {slot:?} exists without FAILOVER; on a replication connection run ALTER_REPLICATION_SLOT {slot} (FAILOVER true)"
            )));
        }
    }
    let standby_slots: String = sql
        .query_one("SELECT current_setting('synchronized_standby_slots')", &[])
        .await?
        .get(0);
    let names: Vec<&str> = standby_slots
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Err(RelayError::Setup(
            "synchronized_standby_slots is empty: the relay may receive (and publish) transactions a standby has not received yet, which a failover then loses; list the standbys' physical slots there, and set sync_replication_slots = on and hot_standby_feedback = on on the standby".into(),
        ));
    }
    let mut inactive = Vec::new();
    for name in &names {
        let active: Option<bool> = sql
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1 AND slot_type = 'physical'",
                &[name],
            )
            .await?
            .map(|r| r.get(0));
        if active != Some(true) {
            inactive.push(*name);
        }
    }
    if !inactive.is_empty() {
        return Err(RelayError::Setup(format!(
            "synchronized_standby_slots names {} which {} not an active physical slot: the walsender waits for it, so the relay receives nothing until that standby connects",
            inactive.join(", "),
            if inactive.len() == 1 { "is" } else { "are" }
        )));
    }
    Ok(format!(
        "slot {slot:?} can fail over: synchronized_standby_slots = {standby_slots} (active); check sync_replication_slots = on on the standby"
    ))
}
