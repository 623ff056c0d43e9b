//! The checker: the sink's full history against what PostgreSQL committed.
//!
//! The truth per aggregate is its final version n (the row-locked counter every committed
//! event incremented): exactly the versions 1..n were committed, one event each. Each
//! version's event is the writer-acknowledged one that took it, or else the one ambiguous
//! commit that took it and did commit (a table row's presence in the table decides; for
//! a transaction of logical messages only, the version being taken by nobody else does,
//! the latest such COMMIT winning). Then, reading the sink in its order per partition:
//!
//! - **lost**: a committed event that never arrived;
//! - **phantom**: a record that is not a committed event (rolled back, a savepoint's,
//!   an ambiguous commit that did not commit, or unknown);
//! - **reordered**: an event whose first copy arrived before the first copy of an earlier
//!   version of its aggregate;
//! - **duplicate**: a further copy of an event, to be explained by a fault whose replay
//!   window (the relay's delivered watermark before it, the end of WAL after it) holds
//!   the event's commit;
//! - **mismatch**: destination, key, payload, headers, or an aggregate split over
//!   partitions, or one transaction's events with different commit LSNs.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use super::ledger::{parse_uuid, uuid_text, Ledger, Via};

/// The commit LSN header the relay adds (`outbox.commit_lsn_header`).
pub const COMMIT_LSN_HEADER: &str = "outbox-relay-commit-lsn";

#[derive(Debug, Clone)]
struct Ev {
    id: u128,
    agg: u32,
    version: u32,
    via: Via,
    digest: [u8; 16],
    traceparent: Option<Box<str>>,
    txn: u64,
    ambiguous: bool,
    copies: u32,
    commit_lsn: u64,
}

/// One record read back, in the sink's order.
pub struct Observed<'a> {
    pub destination: &'a str,
    /// Kafka partition (0 for queues).
    pub partition: i32,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// When the sink stored it (Kafka's LogAppendTime), ms since the epoch.
    pub append_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct AggState {
    seen: Vec<bool>,
    /// The highest version whose first copy arrived.
    max: u32,
    place: Option<(String, i32)>,
    last_commit: u64,
}

/// A fault's replay window: a copy of an event committed at or above `from` (what the
/// relay had durably delivered before the fault) and below `to` (the end of WAL once the
/// relay had recovered from it) may be sent again, once the fault began (`started_ms`,
/// ms since the epoch).
#[derive(Debug, Clone)]
pub struct Window {
    pub kind: String,
    pub from: u64,
    pub to: u64,
    pub started_ms: i64,
}

#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub records: u64,
    pub committed: u64,
    pub committed_ambiguous: u64,
    pub ambiguous_not_committed: u64,
    pub delivered_distinct: u64,
    pub lost: u64,
    pub phantom_rolled_back: u64,
    pub phantom_uncommitted: u64,
    pub phantom_unknown: u64,
    pub reordered: u64,
    pub duplicates: u64,
    pub duplicated_events: u64,
    pub duplicates_unexplained: u64,
    pub mismatch_destination: u64,
    pub mismatch_key: u64,
    pub mismatch_payload: u64,
    pub mismatch_headers: u64,
    pub mismatch_commit_lsn: u64,
    pub split_aggregates: u64,
    pub ledger_problems: u64,
}

pub struct Checker {
    names: Vec<String>,
    destinations: Vec<String>,
    events: Vec<Ev>,
    by_id: HashMap<u128, u32>,
    rolled_back: HashSet<u128>,
    uncommitted: HashSet<u128>,
    aggs: Vec<AggState>,
    txn_lsn: HashMap<u64, u64>,
    /// Every copy after the first: (event, commit LSN, when it was stored).
    extra_copies: Vec<(u128, u64, Option<i64>)>,
    /// SNS/SQS: the `type`, `aggregatetype` and `aggregateid` message attributes are
    /// expected too, the last two with these values (per aggregate: its type).
    attribute_types: Option<Vec<String>>,
    pub counts: Counts,
    pub examples: Vec<String>,
    /// Duplicates explained, per fault kind.
    pub explained_by: HashMap<String, u64>,
}

impl Checker {
    /// `names[a]` and `destinations[a]`: aggregate a's key and where its events go;
    /// `final_versions[a]`: its committed events; `in_table`: the ids of ambiguous
    /// commits' rows found in the outbox table afterwards.
    pub fn new(
        ledger: &Ledger,
        names: Vec<String>,
        destinations: Vec<String>,
        final_versions: &[u32],
        in_table: &HashSet<u128>,
    ) -> Checker {
        let mut c = Checker {
            names,
            destinations,
            events: Vec::new(),
            by_id: HashMap::new(),
            rolled_back: ledger.rolled_back.iter().copied().collect(),
            uncommitted: HashSet::new(),
            aggs: final_versions
                .iter()
                .map(|&n| AggState {
                    seen: vec![false; n as usize],
                    ..AggState::default()
                })
                .collect(),
            txn_lsn: HashMap::new(),
            extra_copies: Vec::new(),
            attribute_types: None,
            counts: Counts::default(),
            examples: Vec::new(),
            explained_by: HashMap::new(),
        };
        // Version slots: which event took (agg, version).
        let mut slot: HashMap<(u32, u32), u128> = HashMap::new();
        let push = |c: &mut Checker, w: &super::ledger::Written, ambiguous: bool| {
            c.by_id.insert(w.id, c.events.len() as u32);
            c.events.push(Ev {
                id: w.id,
                agg: w.agg,
                version: w.version,
                via: w.via,
                digest: w.digest,
                traceparent: w.traceparent.clone(),
                txn: w.txn,
                ambiguous,
                copies: 0,
                commit_lsn: 0,
            });
        };
        for w in &ledger.committed {
            if w.version > final_versions[w.agg as usize] {
                c.problem(format!(
                    "ledger: acknowledged event {} took version {} of {}, above its final version {}",
                    uuid_text(w.id),
                    w.version,
                    c.names[w.agg as usize],
                    final_versions[w.agg as usize]
                ));
            }
            if let Some(other) = slot.insert((w.agg, w.version), w.id) {
                c.problem(format!(
                    "ledger: acknowledged events {} and {} both took version {} of {}",
                    uuid_text(other),
                    uuid_text(w.id),
                    w.version,
                    c.names[w.agg as usize]
                ));
            }
            push(&mut c, w, false);
        }
        // Ambiguous transactions: all their events committed, or none.
        let mut txns: HashMap<u64, Vec<&super::ledger::Written>> = HashMap::new();
        for w in &ledger.ambiguous {
            txns.entry(w.txn).or_default().push(w);
        }
        let mut order: Vec<u64> = txns.keys().copied().collect();
        // Rows decide by the table; message-only transactions by free slots, the latest
        // COMMIT first (a failed one's versions were taken again by later transactions).
        order.sort_unstable_by(|a, b| b.cmp(a));
        let mut committed_txns: Vec<u64> = Vec::new();
        for t in &order {
            let evs = &txns[t];
            let has_rows = evs.iter().any(|w| w.via == Via::Row);
            let committed = if has_rows {
                evs.iter()
                    .any(|w| w.via == Via::Row && in_table.contains(&w.id))
            } else {
                evs.iter().all(|w| {
                    w.version <= final_versions[w.agg as usize]
                        && !slot.contains_key(&(w.agg, w.version))
                })
            };
            if committed {
                for w in evs {
                    if let Some(other) = slot.insert((w.agg, w.version), w.id) {
                        c.problem(format!(
                            "ledger: ambiguous commit {} (committed per the table) took version {} of {}, which {} took too",
                            uuid_text(w.id), w.version, c.names[w.agg as usize], uuid_text(other)
                        ));
                    }
                }
                committed_txns.push(*t);
            }
        }
        for t in &order {
            let committed = committed_txns.contains(t);
            for w in &txns[t] {
                if committed {
                    push(&mut c, w, true);
                    c.counts.committed_ambiguous += 1;
                } else {
                    c.uncommitted.insert(w.id);
                    c.counts.ambiguous_not_committed += 1;
                }
            }
        }
        // Every version 1..n must be some known event's.
        for (a, &n) in final_versions.iter().enumerate() {
            for v in 1..=n {
                if !slot.contains_key(&(a as u32, v)) {
                    c.problem(format!(
                        "ledger: version {v} of {} was committed but no writer knows its event",
                        c.names[a]
                    ));
                }
            }
        }
        c.counts.committed = c.events.len() as u64;
        c
    }

    /// Records come from SNS/SQS: expect the outbox columns as message attributes.
    pub fn expect_attributes(&mut self, types_per_aggregate: Vec<String>) {
        self.attribute_types = Some(types_per_aggregate);
    }

    fn problem(&mut self, p: String) {
        if p.starts_with("ledger") {
            self.counts.ledger_problems += 1;
        }
        if self.examples.len() < 40 {
            self.examples.push(p);
        }
    }

    /// One record, in the order the sink holds them (per partition or queue).
    pub fn observe(&mut self, r: &Observed) {
        self.counts.records += 1;
        let id_text = r
            .headers
            .iter()
            .find(|(k, _)| *k == "id")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        let Some(id) = id_text.as_deref().and_then(parse_uuid) else {
            self.counts.phantom_unknown += 1;
            self.problem(format!(
                "phantom: a record without a uuid id header in {} ({id_text:?})",
                r.destination
            ));
            return;
        };
        let Some(&ix) = self.by_id.get(&id) else {
            let (what, counter) = if self.rolled_back.contains(&id) {
                ("rolled back", &mut self.counts.phantom_rolled_back)
            } else if self.uncommitted.contains(&id) {
                (
                    "of an ambiguous commit that did not commit",
                    &mut self.counts.phantom_uncommitted,
                )
            } else {
                ("unknown", &mut self.counts.phantom_unknown)
            };
            *counter += 1;
            self.problem(format!(
                "phantom: event {} ({what}) in {}",
                uuid_text(id),
                r.destination
            ));
            return;
        };
        let e = self.events[ix as usize].clone();
        let name = self.names[e.agg as usize].clone();
        if r.destination != self.destinations[e.agg as usize] {
            self.counts.mismatch_destination += 1;
            let p = format!(
                "event {}: destination {} != {}",
                uuid_text(id),
                r.destination,
                self.destinations[e.agg as usize]
            );
            self.problem(p);
        }
        if r.key != Some(name.as_bytes()) {
            self.counts.mismatch_key += 1;
            let p = format!(
                "event {}: key {:?} != {name:?}",
                uuid_text(id),
                r.key.map(String::from_utf8_lossy)
            );
            self.problem(p);
        }
        if r.payload.map(super::ledger::digest) != Some(e.digest) {
            self.counts.mismatch_payload += 1;
            let p = format!(
                "event {}: payload differs ({} bytes: {:?})",
                uuid_text(id),
                r.payload.map_or(0, <[u8]>::len),
                r.payload
                    .map(|p| String::from_utf8_lossy(&p[..p.len().min(120)]).into_owned())
            );
            self.problem(p);
        }
        // Headers: exactly id, the commit LSN and, for a row with a span context, traceparent.
        let mut names: Vec<&str> = r.headers.iter().map(|(k, _)| *k).collect();
        names.sort_unstable();
        let mut want = vec!["id", COMMIT_LSN_HEADER];
        if e.traceparent.is_some() {
            want.push("traceparent");
        }
        if self.attribute_types.is_some() {
            want.extend(["type", "aggregatetype", "aggregateid"]);
        }
        want.sort_unstable();
        let header = |k: &str| r.headers.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let trace_ok = match &e.traceparent {
            Some(t) => header("traceparent") == Some(t.as_bytes()),
            None => true,
        };
        let attributes_ok = self.attribute_types.as_ref().is_none_or(|types| {
            header("aggregatetype") == Some(types[e.agg as usize].as_bytes())
                && header("aggregateid") == Some(name.as_bytes())
        });
        if names != want
            || id_text.as_deref() != Some(uuid_text(id).as_str())
            || !trace_ok
            || !attributes_ok
        {
            self.counts.mismatch_headers += 1;
            let p = format!(
                "event {}: headers {:?} (want {want:?}, traceparent {:?})",
                uuid_text(id),
                r.headers
                    .iter()
                    .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
                    .collect::<Vec<_>>(),
                e.traceparent
            );
            self.problem(p);
        }
        let lsn = header(COMMIT_LSN_HEADER)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(parse_lsn);
        let Some(lsn) = lsn else {
            self.counts.mismatch_commit_lsn += 1;
            self.problem(format!("event {}: no parsable commit LSN", uuid_text(id)));
            return;
        };
        let ev = &mut self.events[ix as usize];
        ev.copies += 1;
        if ev.commit_lsn == 0 {
            ev.commit_lsn = lsn;
        } else if ev.commit_lsn != lsn {
            self.counts.mismatch_commit_lsn += 1;
            let p = format!(
                "event {}: copies with commit LSNs {:X} and {lsn:X}",
                uuid_text(id),
                ev.commit_lsn
            );
            self.problem(p);
        }
        match self.txn_lsn.insert(e.txn, lsn) {
            Some(other) if other != lsn => {
                self.counts.mismatch_commit_lsn += 1;
                self.problem(format!(
                    "event {}: its transaction's events carry commit LSNs {other:X} and {lsn:X}",
                    uuid_text(id)
                ));
            }
            _ => {}
        }
        let place = (r.destination.to_string(), r.partition);
        let agg = &mut self.aggs[e.agg as usize];
        match &agg.place {
            None => agg.place = Some(place),
            Some(p) if *p != place => {
                self.counts.split_aggregates += 1;
                let p = format!(
                    "aggregate {name}: records in {p:?} and in {place:?}: no order between them"
                );
                self.problem(p);
            }
            Some(_) => {}
        }
        let agg = &mut self.aggs[e.agg as usize];
        let v = e.version as usize;
        if v == 0 || v > agg.seen.len() {
            return; // counted by the ledger check
        }
        if agg.seen[v - 1] {
            self.counts.duplicates += 1;
            self.extra_copies.push((id, lsn, r.append_ms));
            return;
        }
        agg.seen[v - 1] = true;
        self.counts.delivered_distinct += 1;
        if e.version < agg.max {
            // A later version was already there: this one's place was taken.
            self.counts.reordered += 1;
            let p = format!(
                "reordered: {name} version {} ({}) arrived after version {}",
                e.version,
                uuid_text(id),
                agg.max
            );
            self.problem(p);
        } else if lsn < agg.last_commit {
            self.counts.mismatch_commit_lsn += 1;
            let p = format!(
                "aggregate {name}: version {} committed at {lsn:X}, before version {}'s {:X}",
                e.version,
                e.version - 1,
                agg.last_commit
            );
            self.problem(p);
        }
        let agg = &mut self.aggs[e.agg as usize];
        agg.last_commit = agg.last_commit.max(lsn);
        agg.max = agg.max.max(e.version);
    }

    /// After the last record: the lost events, and every duplicate against the faults'
    /// replay windows.
    pub fn finish(&mut self, windows: &[Window]) {
        let lost: Vec<Ev> = self
            .events
            .iter()
            .filter(|e| e.copies == 0)
            .cloned()
            .collect();
        self.counts.duplicated_events = self.events.iter().filter(|e| e.copies > 1).count() as u64;
        self.counts.lost = lost.len() as u64;
        for e in lost.iter().take(10) {
            let p = format!(
                "lost: {} version {} of {} ({:?}{})",
                uuid_text(e.id),
                e.version,
                self.names[e.agg as usize],
                e.via,
                if e.ambiguous {
                    ", an ambiguous commit that did commit"
                } else {
                    ""
                }
            );
            self.problem(p);
        }
        // Each further copy: the latest fault that had begun when it was stored and whose
        // window holds its commit.
        let copies = std::mem::take(&mut self.extra_copies);
        for (id, lsn, stored) in copies {
            let cause = windows
                .iter()
                .filter(|w| w.from <= lsn && lsn < w.to)
                .filter(|w| stored.is_none_or(|t| w.started_ms <= t))
                .max_by_key(|w| w.started_ms);
            match cause {
                Some(w) => *self.explained_by.entry(w.kind.clone()).or_default() += 1,
                None => {
                    self.counts.duplicates_unexplained += 1;
                    self.problem(format!(
                        "duplicate: a copy of {} (commit {lsn:X}, stored at {stored:?} ms) in no replay window of a fault begun before it",
                        uuid_text(id)
                    ));
                }
            }
        }
    }

    /// Zero lost, phantoms, reorderings, unexplained duplicates, mismatches and ledger
    /// problems.
    pub fn clean(&self) -> bool {
        let c = &self.counts;
        c.lost
            + c.phantom_rolled_back
            + c.phantom_uncommitted
            + c.phantom_unknown
            + c.reordered
            + c.duplicates_unexplained
            + c.mismatch_destination
            + c.mismatch_key
            + c.mismatch_payload
            + c.mismatch_headers
            + c.mismatch_commit_lsn
            + c.split_aggregates
            + c.ledger_problems
            == 0
    }

    pub fn to_json(&self) -> Value {
        let c = &self.counts;
        json!({
            "clean": self.clean(),
            "records": c.records,
            "committed_events": c.committed,
            "ambiguous_committed": c.committed_ambiguous,
            "ambiguous_not_committed": c.ambiguous_not_committed,
            "delivered_distinct": c.delivered_distinct,
            "lost": c.lost,
            "phantoms": {
                "rolled_back": c.phantom_rolled_back,
                "uncommitted_ambiguous": c.phantom_uncommitted,
                "unknown": c.phantom_unknown,
            },
            "reordered": c.reordered,
            "duplicates": c.duplicates,
            "duplicated_events": c.duplicated_events,
            "duplicates_unexplained": c.duplicates_unexplained,
            "duplicates_explained_by": self.explained_by,
            "mismatches": {
                "destination": c.mismatch_destination,
                "key": c.mismatch_key,
                "payload": c.mismatch_payload,
                "headers": c.mismatch_headers,
                "commit_lsn": c.mismatch_commit_lsn,
                "aggregate_split_over_partitions": c.split_aggregates,
            },
            "ledger_problems": c.ledger_problems,
            "examples": self.examples,
        })
    }
}

/// `X/Y` → a number.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::super::ledger::{digest, Written};
    use super::*;

    /// Two aggregates; a: versions 1..3 (txns 1, 2, 2), b: version 1 (txn 3). A rolled-back
    /// event 99.
    fn ledger() -> Ledger {
        let w = |id: u128, agg: u32, version: u32, txn: u64| Written {
            id,
            agg,
            version,
            via: Via::Row,
            digest: digest(format!("p{id}").as_bytes()),
            traceparent: None,
            txn,
        };
        Ledger {
            committed: vec![w(1, 0, 1, 1), w(2, 0, 2, 2), w(3, 0, 3, 2), w(4, 1, 1, 3)],
            ambiguous: vec![],
            rolled_back: vec![99],
            counts: Default::default(),
        }
    }

    fn checker() -> Checker {
        Checker::new(
            &ledger(),
            vec!["a".into(), "b".into()],
            vec!["t.Order".into(), "t.Order".into()],
            &[3, 1],
            &HashSet::new(),
        )
    }

    fn feed(c: &mut Checker, seq: &[(u128, &str, &str)]) {
        for (id, key, lsn) in seq {
            let idt = uuid_text(*id);
            let payload = format!("p{id}");
            c.observe(&Observed {
                destination: "t.Order",
                partition: 0,
                key: Some(key.as_bytes()),
                payload: Some(payload.as_bytes()),
                headers: vec![("id", idt.as_bytes()), (COMMIT_LSN_HEADER, lsn.as_bytes())],
                append_ms: Some(1000),
            });
        }
    }

    const IN_ORDER: [(u128, &str, &str); 4] = [
        (1, "a", "0/10"),
        (2, "a", "0/20"),
        (4, "b", "0/30"),
        (3, "a", "0/20"),
    ];

    #[test]
    fn a_complete_ordered_history_is_clean() {
        let mut c = checker();
        feed(&mut c, &IN_ORDER);
        c.finish(&[]);
        assert!(c.clean(), "{:?} {:?}", c.counts, c.examples);
        assert_eq!(c.counts.delivered_distinct, 4);
    }

    #[test]
    fn a_missing_event_is_lost() {
        let mut c = checker();
        feed(&mut c, &IN_ORDER[..3]);
        c.finish(&[]);
        assert_eq!(c.counts.lost, 1);
        assert!(!c.clean());
    }

    #[test]
    fn a_later_version_first_is_reordered() {
        let mut c = checker();
        feed(
            &mut c,
            &[
                (2, "a", "0/20"),
                (1, "a", "0/10"),
                (3, "a", "0/20"),
                (4, "b", "0/30"),
            ],
        );
        c.finish(&[]);
        assert_eq!(c.counts.reordered, 1, "{:?}", c.examples);
        assert_eq!(c.counts.lost, 0);
    }

    #[test]
    fn rolled_back_and_unknown_records_are_phantoms() {
        let mut c = checker();
        feed(&mut c, &IN_ORDER);
        feed(&mut c, &[(99, "a", "0/40"), (12345, "a", "0/40")]);
        c.finish(&[]);
        assert_eq!(c.counts.phantom_rolled_back, 1);
        assert_eq!(c.counts.phantom_unknown, 1);
    }

    #[test]
    fn duplicates_need_a_fault_begun_before_them_whose_window_holds_their_commit() {
        let window = |from: u64, started_ms: i64| Window {
            kind: "relay_sigkill".into(),
            from,
            to: 0x100,
            started_ms,
        };
        let run = |windows: &[Window]| {
            let mut c = checker();
            feed(&mut c, &IN_ORDER);
            feed(&mut c, &[(2, "a", "0/20"), (3, "a", "0/20")]);
            c.finish(windows);
            c
        };
        let c = run(&[window(0x21, 0)]);
        assert_eq!(c.counts.duplicates, 2);
        assert_eq!(
            c.counts.duplicates_unexplained, 2,
            "0/20 is below the window"
        );
        let c = run(&[window(0x20, 2000)]);
        assert_eq!(
            c.counts.duplicates_unexplained, 2,
            "the copies (at 1000 ms) came before the fault"
        );
        let c = run(&[window(0x20, 500)]);
        assert!(c.clean(), "{:?}", c.examples);
        assert_eq!(c.explained_by["relay_sigkill"], 2);
        assert_eq!(c.counts.duplicated_events, 2);
    }

    #[test]
    fn wrong_bytes_and_split_transactions_are_mismatches() {
        let mut c = checker();
        feed(
            &mut c,
            &[(1, "a", "0/10"), (2, "a", "0/20"), (4, "b", "0/30")],
        );
        // Event 3 of txn 2 with another commit LSN than event 2, and a wrong key.
        feed(&mut c, &[(3, "x", "0/21")]);
        c.finish(&[]);
        assert_eq!(c.counts.mismatch_key, 1);
        assert_eq!(c.counts.mismatch_commit_lsn, 1);
        let mut c = checker();
        let idt = uuid_text(1);
        c.observe(&Observed {
            destination: "t.Order",
            partition: 0,
            key: Some(b"a"),
            payload: Some(b"p1 "),
            headers: vec![("id", idt.as_bytes()), (COMMIT_LSN_HEADER, b"0/10")],
            append_ms: None,
        });
        assert_eq!(c.counts.mismatch_payload, 1);
    }

    #[test]
    fn ambiguous_commits_resolve_by_table_or_free_versions() {
        let mut l = ledger();
        let w = |id: u128, agg: u32, version: u32, via: Via, txn: u64| Written {
            id,
            agg,
            version,
            via,
            digest: digest(format!("p{id}").as_bytes()),
            traceparent: None,
            txn,
        };
        // b: an ambiguous message at version 2 that did not commit (b's final version is 2
        // and acknowledged 5 took it), then one at 3 that did (nobody else has 3).
        l.committed.push(w(5, 1, 2, Via::Row, 5));
        l.ambiguous.push(w(6, 1, 2, Via::Message, 4));
        l.ambiguous.push(w(7, 1, 3, Via::Message, 6));
        // a: an ambiguous row at version 4, committed per the table.
        l.ambiguous.push(w(8, 0, 4, Via::Row, 7));
        let c = Checker::new(
            &l,
            vec!["a".into(), "b".into()],
            vec!["t.Order".into(), "t.Order".into()],
            &[4, 3],
            &[8u128].into_iter().collect(),
        );
        assert_eq!(c.counts.ledger_problems, 0, "{:?}", c.examples);
        assert_eq!(c.counts.committed_ambiguous, 2);
        assert_eq!(c.counts.ambiguous_not_committed, 1);
        assert!(c.uncommitted.contains(&6));
    }
}
