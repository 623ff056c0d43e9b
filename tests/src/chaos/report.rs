//! The run's JSON summary and its table per fault kind.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::check::Checker;
use super::faults::Done;
use super::fleet::Fleet;
use super::ledger::Ledger;
use super::watch::LsnWatch;
use super::ChaosConfig;

pub struct Inputs<'a> {
    pub cfg: &'a ChaosConfig,
    pub ledger: &'a Ledger,
    pub checker: &'a Checker,
    pub lsn: &'a LsnWatch,
    pub done: &'a [Done],
    pub fleet: &'a Fleet,
    pub exit_statuses: &'a [String],
    pub drained: bool,
    pub wall: Duration,
    pub load: Duration,
    pub drain: Duration,
}

#[derive(Default)]
struct KindRow {
    count: u64,
    held_ms: u64,
    recovered: Vec<u64>,
    not_recovered: u64,
    errors: u64,
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

pub fn summary(i: Inputs) -> Value {
    let mut kinds: BTreeMap<String, KindRow> = BTreeMap::new();
    for d in i.done {
        let row = kinds.entry(d.fault.kind.label()).or_default();
        row.count += 1;
        row.held_ms += d.fault.hold_ms;
        match d.recovered_ms {
            Some(ms) => row.recovered.push(ms),
            None => row.not_recovered += 1,
        }
        row.errors += u64::from(d.error.is_some());
    }
    let by_kind: serde_json::Map<String, Value> = kinds
        .iter_mut()
        .map(|(k, r)| {
            r.recovered.sort_unstable();
            let dup = i.checker.explained_by.get(k).copied().unwrap_or(0);
            (
                k.clone(),
                json!({
                    "count": r.count,
                    "held_ms_total": r.held_ms,
                    "duplicates_explained": dup,
                    "recovery_ms_median": r.recovered.get(r.recovered.len() / 2),
                    "recovery_ms_max": r.recovered.last(),
                    "not_recovered": r.not_recovered,
                    "injection_errors": r.errors,
                }),
            )
        })
        .collect();
    let not_recovered: u64 = kinds.values().map(|r| r.not_recovered).sum();
    let errors: u64 = kinds.values().map(|r| r.errors).sum();
    let c = &i.ledger.counts;
    let lsn_ok = i.lsn.flush_back_same_server.is_empty() && i.lsn.record_back.is_empty();
    let ok = i.checker.clean() && lsn_ok && i.drained && not_recovered == 0 && errors == 0;
    json!({
        "ok": ok,
        "variant": i.cfg.variant,
        "seed": i.cfg.seed,
        "sink": i.cfg.sink.label(),
        "replicas": i.cfg.replicas,
        "reproduce": format!(
            "tests/chaos.sh --variant {} --sink {} --replicas {} --seed {}",
            i.cfg.variant, i.cfg.sink.label(), i.cfg.replicas, i.cfg.seed
        ),
        "wall_s": secs(i.wall),
        "load_s": secs(i.load),
        "drain_s": secs(i.drain),
        "drained": i.drained,
        "load": {
            "aggregates": i.cfg.aggregates,
            "writers": i.cfg.load.writers,
            "committed_txns": c.committed_txns,
            "committed_events": c.committed_events,
            "message_events": c.message_events,
            "bulk_txns": c.bulk_txns,
            "bulk_events": c.bulk_events,
            "largest_txn": c.largest_txn,
            "rolled_back_txns": c.rolled_back_txns,
            "savepoint_rollbacks": c.savepoint_rollbacks,
            "failed_txns": c.failed_txns,
            "ambiguous_txns": c.ambiguous_txns,
            "ambiguous_events": c.ambiguous_events,
            "writer_reconnects": c.reconnects,
        },
        "faults": {
            "total": i.done.len(),
            "not_recovered": not_recovered,
            "injection_errors": errors,
            "by_kind": by_kind,
        },
        "check": i.checker.to_json(),
        "lsn": i.lsn.to_json(),
        "relay": {
            "process_starts": i.fleet.starts,
            "self_exits": i.fleet.self_exits.iter().map(|(r, s)| format!("replica {r}: {s}")).collect::<Vec<_>>(),
            "session_restarts": i.fleet.session_restarts(),
            "peak_rss_kb": i.fleet.peak_rss_kb,
            "final_exit_statuses": i.exit_statuses,
        },
        "schedule": i.done.iter().map(Done::to_json).collect::<Vec<_>>(),
    })
}

/// A plain-text table of the summary: the checks, then one line per fault kind.
pub fn table(s: &Value) -> String {
    let mut out = String::new();
    let c = &s["check"];
    out.push_str(&format!(
        "chaos {} run into {}, seed {}: {} — {} committed events ({} records read), {} faults, wall {} s\n",
        s["variant"].as_str().unwrap_or(""),
        s["sink"].as_str().unwrap_or(""),
        s["seed"],
        if s["ok"] == json!(true) {
            "OK"
        } else {
            "FAILED"
        },
        c["committed_events"],
        c["records"],
        s["faults"]["total"],
        s["wall_s"]
    ));
    let phantoms = ["rolled_back", "uncommitted_ambiguous", "unknown"]
        .iter()
        .map(|k| c["phantoms"][k].as_u64().unwrap_or(0))
        .sum::<u64>();
    let mismatches = c["mismatches"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum::<u64>())
        .unwrap_or(0);
    out.push_str(&format!(
        "lost {} | phantoms {phantoms} | reordered {} | duplicates {} ({} events, {} unexplained) | mismatches {mismatches} | ambiguous commits {} committed, {} not\n",
        c["lost"], c["reordered"], c["duplicates"], c["duplicated_events"], c["duplicates_unexplained"],
        c["ambiguous_committed"], c["ambiguous_not_committed"]
    ));
    let l = &s["lsn"];
    out.push_str(&format!(
        "confirmed_flush_lsn: {} samples, {} decreases ({} back to the last checkpoint after a server restart); progress record decreases {}\n",
        l["samples"], l["confirmed_flush_decreases"], l["confirmed_flush_back_after_server_restart"], l["progress_record_decreases"]
    ));
    let r = &s["relay"];
    out.push_str(&format!(
        "relay: {} process starts, {} exits of its own, {} in-process session restarts, peak RSS {} MiB\n",
        r["process_starts"],
        r["self_exits"].as_array().map_or(0, Vec::len),
        r["session_restarts"],
        r["peak_rss_kb"].as_u64().unwrap_or(0) / 1024
    ));
    out.push_str(&format!(
        "{:<30} {:>5} {:>10} {:>12} {:>14} {:>13}\n",
        "fault kind", "count", "held s", "duplicates", "recovery p50", "recovery max"
    ));
    if let Some(kinds) = s["faults"]["by_kind"].as_object() {
        for (k, v) in kinds {
            let ms = |x: &Value| {
                x.as_u64()
                    .map_or("-".to_string(), |m| format!("{:.1} s", m as f64 / 1000.0))
            };
            out.push_str(&format!(
                "{:<30} {:>5} {:>10.1} {:>12} {:>14} {:>13}{}\n",
                k,
                v["count"].as_u64().unwrap_or(0),
                v["held_ms_total"].as_u64().unwrap_or(0) as f64 / 1000.0,
                v["duplicates_explained"].as_u64().unwrap_or(0),
                ms(&v["recovery_ms_median"]),
                ms(&v["recovery_ms_max"]),
                match (v["not_recovered"].as_u64(), v["injection_errors"].as_u64()) {
                    (Some(0), Some(0)) => String::new(),
                    (n, e) => format!("  not recovered {n:?}, errors {e:?}"),
                }
            ));
        }
    }
    if let Some(ex) = c["examples"].as_array() {
        for e in ex.iter().take(20) {
            out.push_str(&format!("  ! {}\n", e.as_str().unwrap_or("")));
        }
    }
    out
}
