//! `<state.schema>.snapshot`: a row per slot while a snapshot of it is incomplete.
//!
//! The mark is written before the slot is created and removed only once every snapshot
//! event is delivered (and, with `outbox.cleanup`, its row deleted). A start that finds
//! it knows the slot's position says nothing about the rows the snapshot had still to
//! publish, so it drops that slot and snapshots again: duplicates of rows already
//! published, never a gap.

use outbox_pgwire::quote_literal;

use super::StateStore;
use crate::error::RelayError;

impl StateStore {
    /// A snapshot of this slot was started and not completed.
    pub async fn snapshot_pending(&self) -> Result<bool, RelayError> {
        let exists: bool = self
            .client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&self.snapshot])
            .await?
            .get(0);
        if !exists {
            return Ok(false);
        }
        let row = self
            .client
            .query_opt(
                &format!("SELECT 1 FROM {} WHERE slot = $1", self.snapshot),
                &[&self.slot],
            )
            .await?;
        Ok(row.is_some())
    }

    /// Marks a snapshot of this slot as started, durably.
    pub async fn begin_snapshot(&self) -> Result<(), RelayError> {
        let exists: bool = self
            .client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&self.snapshot])
            .await?
            .get(0);
        if !exists {
            return Err(RelayError::Setup(format!(
                "a snapshot needs the table {} (it records that the snapshot is incomplete) and it does not exist: create it as a privileged role with the SQL in the README's \"State tables\", or set source.snapshot: never and source.on_slot_lost: halt",
                self.snapshot
            )));
        }
        self.client
            .batch_execute(&format!(
                "BEGIN;
SET LOCAL synchronous_commit = on;
INSERT INTO {t} (slot) VALUES ({slot}) ON CONFLICT (slot) DO UPDATE SET started_at = now();
COMMIT;",
                t = self.snapshot,
                slot = quote_literal(&self.slot),
            ))
            .await?;
        Ok(())
    }

    /// Every snapshot event is delivered: the slot's position is all that counts again.
    pub async fn end_snapshot(&self) -> Result<(), RelayError> {
        self.client
            .batch_execute(&format!(
                "BEGIN;
SET LOCAL synchronous_commit = on;
DELETE FROM {t} WHERE slot = {slot};
COMMIT;",
                t = self.snapshot,
                slot = quote_literal(&self.slot),
            ))
            .await?;
        Ok(())
    }
}
