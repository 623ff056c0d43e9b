//! What the writers know about every event they wrote: committed (COMMIT answered), ambiguous
//! (the connection was lost while COMMIT was on its way, so it may or may not have
//! committed), or rolled back (ROLLBACK, a rolled-back savepoint, or a transaction that
//! failed before its COMMIT). The checker compares the sink's history with this.
//!
//! Kept small per event (a 16-byte digest instead of the payload): a full run holds a
//! million of them.

use sha2::{Digest, Sha256};

/// How an event was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An outbox table row.
    Row,
    /// A transactional `pg_logical_emit_message`.
    Message,
}

/// One event as its writer wrote it.
#[derive(Debug, Clone)]
pub struct Written {
    pub id: u128,
    /// Index into the catalog's aggregates.
    pub agg: u32,
    /// The aggregate's version the event took (its row-locked counter, incremented in
    /// the same transaction): committed events of an aggregate are 1, 2, … in commit order.
    pub version: u32,
    pub via: Via,
    /// SHA-256 (first 16 bytes) of the payload text PostgreSQL returned for it: the bytes
    /// the relay must publish.
    pub digest: [u8; 16],
    /// `tracingspancontext`, which must arrive as the `traceparent` header.
    pub traceparent: Option<Box<str>>,
    /// The transaction: a ticket drawn when its COMMIT was sent, unique across writers
    /// and increasing in the order the COMMITs were sent.
    pub txn: u64,
}

/// Counters over all writers.
#[derive(Debug, Default, Clone)]
pub struct TxnCounts {
    pub committed_txns: u64,
    pub committed_events: u64,
    pub message_events: u64,
    pub rolled_back_txns: u64,
    pub savepoint_rollbacks: u64,
    pub failed_txns: u64,
    pub ambiguous_txns: u64,
    pub ambiguous_events: u64,
    pub bulk_txns: u64,
    pub bulk_events: u64,
    pub largest_txn: u64,
    pub reconnects: u64,
}

#[derive(Debug, Default)]
pub struct Ledger {
    pub committed: Vec<Written>,
    pub ambiguous: Vec<Written>,
    pub rolled_back: Vec<u128>,
    pub counts: TxnCounts,
}

impl Ledger {
    pub fn merge(&mut self, other: Ledger) {
        self.committed.extend(other.committed);
        self.ambiguous.extend(other.ambiguous);
        self.rolled_back.extend(other.rolled_back);
        let (a, b) = (&mut self.counts, other.counts);
        a.committed_txns += b.committed_txns;
        a.committed_events += b.committed_events;
        a.message_events += b.message_events;
        a.rolled_back_txns += b.rolled_back_txns;
        a.savepoint_rollbacks += b.savepoint_rollbacks;
        a.failed_txns += b.failed_txns;
        a.ambiguous_txns += b.ambiguous_txns;
        a.ambiguous_events += b.ambiguous_events;
        a.bulk_txns += b.bulk_txns;
        a.bulk_events += b.bulk_events;
        a.largest_txn = a.largest_txn.max(b.largest_txn);
        a.reconnects += b.reconnects;
    }
}

pub fn digest(bytes: &[u8]) -> [u8; 16] {
    let d = Sha256::digest(bytes);
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// An event id in the text form PostgreSQL prints a uuid in.
pub fn uuid_text(id: u128) -> String {
    let h = format!("{id:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The inverse of [`uuid_text`] (any case, hyphens anywhere); None for anything else.
pub fn parse_uuid(text: &str) -> Option<u128> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    u128::from_str_radix(&hex, 16).ok()
}

/// A random version-4 uuid.
pub fn new_id(rng: &mut impl rand::Rng) -> u128 {
    let r: u128 = rng.random();
    (r & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_round_trip_in_postgres_text_form() {
        let mut rng = rand::rng();
        let id = new_id(&mut rng);
        let t = uuid_text(id);
        assert_eq!(t.len(), 36);
        assert_eq!(&t[14..15], "4", "version 4: {t}");
        assert!(matches!(&t[19..20], "8" | "9" | "a" | "b"), "variant: {t}");
        assert_eq!(parse_uuid(&t), Some(id));
        assert_eq!(parse_uuid(&t.to_uppercase()), Some(id));
        assert_eq!(parse_uuid("not-a-uuid"), None);
    }
}
