//! The write load: concurrent writers in transactions of 1–100 rows, some rolled back,
//! some with savepoint rollbacks, plus big single transactions; and the checks of what
//! reached Kafka against what PostgreSQL committed.
//!
//! Per-aggregate commit order is made observable with a version counter per aggregate,
//! incremented (under its row lock) in the same transaction as the outbox row: committed
//! events of an aggregate carry versions 1..n in commit order, and a rolled-back
//! increment vanishes with its row.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rand::Rng;
use tokio_postgres::Client;

use crate::kafka::Record;
use crate::pg;
use crate::relay::Relay;

#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub table: String,
    pub writers: usize,
    /// Committed events to reach (writers stop once it is reached; the last
    /// transactions may overshoot by up to `writers * 100`).
    pub events: usize,
    pub aggregates: usize,
    pub aggregate_types: Vec<String>,
    /// Percent of transactions rolled back at the end.
    pub rollback_pct: u32,
    /// Percent of transactions that roll back a savepoint with some rows in it.
    pub savepoint_pct: u32,
}

impl WorkloadSpec {
    /// The end-to-end load: 20k events over 500 aggregates from 8 writers, 10% of
    /// transactions rolled back, 15% with a savepoint rollback.
    pub fn end_to_end(table: &str) -> Self {
        WorkloadSpec {
            table: table.to_string(),
            writers: 8,
            events: 20_000,
            aggregates: 500,
            aggregate_types: vec!["Order".into(), "Customer".into(), "Invoice".into()],
            rollback_pct: 10,
            savepoint_pct: 15,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct WorkloadReport {
    pub committed_txns: usize,
    pub committed_events: usize,
    pub rolled_back_txns: usize,
    pub savepoint_rollbacks: usize,
    pub failed_txns: usize,
    /// Transactions whose COMMIT was cut off by a lost connection (a server restart): they
    /// may or may not have committed; the table is the ground truth for those.
    pub ambiguous_commits: usize,
}

/// A note with multi-byte characters, so byte-exactness is tested beyond ASCII.
const NOTE: &str = "ünïcødé ✓ 🚀 \"quoted\" \\ back\tslash ";

pub fn versions_table(table: &str) -> String {
    format!("{table}_versions")
}

/// Creates the outbox table (jsonb payload) and the per-aggregate version counters.
pub async fn prepare(client: &Client, spec: &WorkloadSpec) {
    pg::create_outbox_table(client, &spec.table, "jsonb", false).await;
    let vt = versions_table(&spec.table);
    client
        .batch_execute(&format!(
            "CREATE TABLE {vt} (agg text PRIMARY KEY, version int NOT NULL DEFAULT 0);
             INSERT INTO {vt} (agg) SELECT 'agg-' || i FROM generate_series(0, {}) i;",
            spec.aggregates - 1
        ))
        .await
        .expect("versions table");
}

pub async fn run(spec: &WorkloadSpec) -> WorkloadReport {
    run_with(spec, None).await
}

/// The same writers at about `events_per_sec` in total, until `stop` is set (or
/// `spec.events` is reached): a steady load to hold through an outage.
pub async fn run_paced(
    spec: &WorkloadSpec,
    events_per_sec: u32,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> WorkloadReport {
    let pace = Pace {
        secs_per_event: spec.writers as f64 / f64::from(events_per_sec.max(1)),
        stop,
    };
    run_with(spec, Some(pace)).await
}

#[derive(Clone)]
struct Pace {
    /// Per writer.
    secs_per_event: f64,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

async fn run_with(spec: &WorkloadSpec, pace: Option<Pace>) -> WorkloadReport {
    let committed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..spec.writers {
        let spec = spec.clone();
        let committed = committed.clone();
        let pace = pace.clone();
        tasks.push(tokio::spawn(async move {
            writer(w, &spec, &committed, pace.as_ref()).await
        }));
    }
    let mut total = WorkloadReport::default();
    for t in tasks {
        let r = t.await.expect("writer task");
        total.committed_txns += r.committed_txns;
        total.committed_events += r.committed_events;
        total.rolled_back_txns += r.rolled_back_txns;
        total.savepoint_rollbacks += r.savepoint_rollbacks;
        total.failed_txns += r.failed_txns;
        total.ambiguous_commits += r.ambiguous_commits;
    }
    total
}

/// A writer's connection and prepared insert. Writers survive server restarts: on a lost
/// connection they reconnect (for up to a minute) and go on.
async fn writer_session(spec: &WorkloadSpec) -> (Client, tokio_postgres::Statement) {
    let vt = versions_table(&spec.table);
    let sql = format!(
        "WITH v AS (UPDATE {vt} SET version = version + 1 WHERE agg = $1 RETURNING version)
         INSERT INTO {t} (aggregatetype, aggregateid, type, payload)
         SELECT $2, $1, $3, jsonb_build_object('aggregate', $1::text, 'version', v.version, 'writer', $4::int, 'note', $5::text) FROM v",
        t = spec.table
    );
    let start = std::time::Instant::now();
    loop {
        let client = pg::connect_retrying(std::time::Duration::from_secs(60)).await;
        // The project's cluster defaults to synchronous_commit=off, under which a server
        // crash (restart tests) forgets commits it already acknowledged. Writers commit
        // as production does; fsync=off keeps it cheap.
        let prepared = match client.batch_execute("SET synchronous_commit = on").await {
            Ok(()) => client.prepare(&sql).await,
            Err(e) => Err(e),
        };
        match prepared {
            Ok(stmt) => return (client, stmt),
            // The server can drop a fresh connection while it is shutting down again.
            Err(_) if client.is_closed() && start.elapsed().as_secs() < 60 => {}
            Err(e) => panic!("prepare insert: {e}"),
        }
    }
}

async fn writer(
    w: usize,
    spec: &WorkloadSpec,
    committed: &AtomicUsize,
    pace: Option<&Pace>,
) -> WorkloadReport {
    let (mut client, mut stmt) = writer_session(spec).await;
    let mut report = WorkloadReport::default();
    let pad = "x".repeat(300);
    let note = format!("{NOTE}{pad}");
    while committed.load(Ordering::Relaxed) < spec.events
        && !pace.is_some_and(|p| p.stop.load(Ordering::Relaxed))
    {
        // Rng is not Send; decide everything for the transaction up front.
        let (rows, rollback, savepoint_at, savepoint_rows, aggs) = {
            let mut rng = rand::rng();
            let rows = rng.random_range(1..=100usize);
            let rollback = rng.random_range(0..100) < spec.rollback_pct;
            let savepoint = rng.random_range(0..100) < spec.savepoint_pct;
            let at = savepoint.then(|| rng.random_range(0..rows));
            let sp_rows = rng.random_range(1..=10usize);
            let mut aggs: Vec<usize> = (0..rows + sp_rows)
                .map(|_| rng.random_range(0..spec.aggregates))
                .collect();
            // Row locks taken in one global order cannot deadlock; writers still wait on
            // each other for shared aggregates, which is the contention the test wants.
            aggs.sort_unstable();
            (rows, rollback, at, sp_rows, aggs)
        };
        let mut committing = false;
        let result: Result<usize, tokio_postgres::Error> = async {
            client.batch_execute("BEGIN").await?;
            let mut written = 0;
            let mut agg_iter = aggs.iter();
            for i in 0..rows {
                if savepoint_at == Some(i) {
                    client.batch_execute("SAVEPOINT sp").await?;
                    for _ in 0..savepoint_rows {
                        let a = agg_iter.next().unwrap();
                        insert(&client, &stmt, spec, *a, w, &note).await?;
                    }
                    client.batch_execute("ROLLBACK TO SAVEPOINT sp").await?;
                }
                let a = agg_iter.next().unwrap();
                insert(&client, &stmt, spec, *a, w, &note).await?;
                written += 1;
            }
            if rollback {
                client.batch_execute("ROLLBACK").await?;
                Ok(0)
            } else {
                committing = true;
                client.batch_execute("COMMIT").await?;
                Ok(written)
            }
        }
        .await;
        match result {
            Ok(0) => report.rolled_back_txns += 1,
            Ok(n) => {
                report.committed_txns += 1;
                report.committed_events += n;
                if savepoint_at.is_some() {
                    report.savepoint_rollbacks += 1;
                }
                committed.fetch_add(n, Ordering::Relaxed);
                if let Some(p) = pace {
                    let pause = std::time::Duration::from_secs_f64(p.secs_per_event * n as f64);
                    tokio::time::sleep(pause).await;
                }
            }
            Err(_) if client.is_closed() => {
                // The server went away (restart tests). Rolled back unless the COMMIT
                // was already on its way.
                if committing {
                    report.ambiguous_commits += 1;
                } else {
                    report.failed_txns += 1;
                }
                (client, stmt) = writer_session(spec).await;
            }
            Err(_deadlock_or_other) => {
                // Deadlocks between writers are expected with random aggregates; the
                // transaction is simply rolled back, like an application would see it.
                let _ = client.batch_execute("ROLLBACK").await;
                report.failed_txns += 1;
            }
        }
    }
    report
}

async fn insert(
    client: &Client,
    stmt: &tokio_postgres::Statement,
    spec: &WorkloadSpec,
    agg: usize,
    writer: usize,
    note: &str,
) -> Result<(), tokio_postgres::Error> {
    let id = format!("agg-{agg}");
    let ty = &spec.aggregate_types[agg % spec.aggregate_types.len()];
    let n = client
        .execute(
            stmt,
            &[&id, ty, &format!("{ty}Changed"), &(writer as i32), &note],
        )
        .await?;
    assert_eq!(n, 1, "aggregate {id} exists");
    Ok(())
}

/// One transaction of `rows` rows over `aggregates` aggregates (`bulk-N`), versions 1..
/// per aggregate in insertion order. Big enough rows exceed logical_decoding_work_mem.
pub async fn big_transaction(client: &Client, table: &str, rows: usize, aggregates: usize) {
    client
        .batch_execute(&format!(
            "INSERT INTO {table} (aggregatetype, aggregateid, type, payload)
             SELECT 'Bulk', 'bulk-' || (i % {aggregates}), 'BulkLoaded',
                    jsonb_build_object('aggregate', 'bulk-' || (i % {aggregates}), 'version', i / {aggregates} + 1, 'note', repeat('y', 120))
             FROM generate_series(0, {last}) i",
            last = rows - 1
        ))
        .await
        .expect("big transaction");
}

/// A committed outbox row, as the consumer must see it.
#[derive(Debug, Clone)]
pub struct Expected {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub payload: String,
    pub version: i64,
}

/// The ground truth: every row PostgreSQL committed to the outbox table.
pub async fn committed_rows(client: &Client, table: &str) -> HashMap<String, Expected> {
    client
        .query(
            &format!("SELECT id::text, aggregatetype, aggregateid, type, payload::text, (payload->>'version')::int8 FROM {table}"),
            &[],
        )
        .await
        .expect("read outbox")
        .into_iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                Expected {
                    aggregate_type: r.get(1),
                    aggregate_id: r.get(2),
                    event_type: r.get(3),
                    payload: r.get(4),
                    version: r.get(5),
                },
            )
        })
        .collect()
}

/// What the comparison found; `problems` empty means the run is correct.
#[derive(Debug, Default)]
pub struct Verdict {
    pub problems: Vec<String>,
    pub duplicates: Vec<(String, usize)>,
    pub distinct: usize,
}

/// The end of every delivery test: [`verify`] found no problem and every committed event
/// arrived (`context` and the relay's log tail explain a failure). The duplicates are
/// returned for the caller to judge against what the test did to the relay.
pub fn assert_delivered(
    records: &[Record],
    expected: &HashMap<String, Expected>,
    topic_prefix: &str,
    context: &str,
    relay: &Relay,
) -> Verdict {
    let verdict = verify(records, expected, topic_prefix);
    assert!(
        verdict.problems.is_empty(),
        "{context}: problems: {:#?}\nrelay log:\n{}",
        verdict.problems,
        relay.log_tail()
    );
    assert_eq!(
        verdict.distinct,
        expected.len(),
        "{context}: distinct events delivered"
    );
    verdict
}

/// Compares consumed records with the committed rows: exact set (nothing lost, nothing
/// from rolled-back work), byte-exact topic/key/payload/`id` header, and per-aggregate
/// order. Duplicates are reported for the caller to judge (an at-least-once replay);
/// the first appearance of each event must still be in commit order, and no event may
/// ever appear before its predecessor.
pub fn verify(
    records: &[Record],
    expected: &HashMap<String, Expected>,
    topic_prefix: &str,
) -> Verdict {
    let mut v = Verdict::default();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let problem = |v: &mut Verdict, p: String| {
        if v.problems.len() < 20 {
            v.problems.push(p);
        }
    };
    for r in records {
        let Some(id) = r.header("id") else {
            problem(
                &mut v,
                format!(
                    "record without id header at {}:{}@{}",
                    r.topic, r.partition, r.offset
                ),
            );
            continue;
        };
        let id = std::str::from_utf8(id).unwrap_or("<non-utf8>");
        let Some(e) = expected.get(id) else {
            problem(
                &mut v,
                format!("record {id} was never committed (rolled back or foreign)"),
            );
            continue;
        };
        *seen
            .entry(expected.get_key_value(id).unwrap().0.as_str())
            .or_default() += 1;
        let want_topic = format!("{topic_prefix}.{}", e.aggregate_type);
        if r.topic != want_topic {
            problem(&mut v, format!("{id}: topic {} != {want_topic}", r.topic));
        }
        if r.key.as_deref() != Some(e.aggregate_id.as_bytes()) {
            problem(
                &mut v,
                format!("{id}: key {:?} != {}", r.key_str(), e.aggregate_id),
            );
        }
        if r.payload.as_deref() != Some(e.payload.as_bytes()) {
            problem(
                &mut v,
                format!(
                    "{id}: payload differs: {:?} vs {:?}",
                    r.payload
                        .as_ref()
                        .map(|p| String::from_utf8_lossy(p).into_owned()),
                    e.payload
                ),
            );
        }
    }
    for id in expected.keys() {
        if !seen.contains_key(id.as_str()) {
            problem(
                &mut v,
                format!(
                    "committed event {id} ({}) never arrived",
                    expected[id].aggregate_id
                ),
            );
        }
    }
    v.distinct = seen.len();
    v.duplicates = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| (id.to_string(), *n))
        .collect();

    // Order per aggregate, in broker order (one key = one partition).
    let mut by_agg: HashMap<&str, Vec<i64>> = HashMap::new();
    for r in records {
        if let Some(e) = r
            .header("id")
            .and_then(|id| expected.get(std::str::from_utf8(id).ok()?))
        {
            by_agg
                .entry(e.aggregate_id.as_str())
                .or_default()
                .push(e.version);
        }
    }
    for (agg, versions) in by_agg {
        let mut first_seen = Vec::new();
        let mut seen_versions = HashSet::new();
        let mut max = 0;
        for &ver in &versions {
            if ver > max + 1 {
                problem(
                    &mut v,
                    format!("aggregate {agg}: version {ver} arrived before {}", max + 1),
                );
            }
            max = max.max(ver);
            if seen_versions.insert(ver) {
                first_seen.push(ver);
            }
        }
        let in_order =
            first_seen.windows(2).all(|w| w[1] == w[0] + 1) && first_seen.first() == Some(&1);
        if !in_order {
            problem(
                &mut v,
                format!(
                    "aggregate {agg}: first appearances out of commit order: {:?}",
                    &first_seen[..first_seen.len().min(20)]
                ),
            );
        }
    }
    v
}
