//! The chaos write load: concurrent writers committing transactions of mixed sizes (most
//! small, some of a hundred or more events), some rolled back, some with a rolled-back
//! savepoint, table rows and logical-message events mixed, payloads from empty notes to
//! tens of kilobytes with multi-byte characters; and a bulk writer whose transactions hold
//! tens of thousands of rows (beyond `logical_decoding_work_mem`, so PostgreSQL spills
//! them). Each event takes its aggregate's next version under the counter's row lock, in
//! the same transaction, so committed versions 1..n of an aggregate are its commit order.
//!
//! Writers survive server restarts: a lost connection is re-established, and a COMMIT whose
//! answer was lost is recorded as ambiguous.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::{Client, NoTls, Statement};

use super::catalog::{versions_table, Catalog};
use super::ledger::{digest, new_id, parse_uuid, uuid_text, Ledger, Via, Written};

/// The shape of the load.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub writers: usize,
    /// Total events per second the writers aim at (the bulk writer comes on top).
    pub rate: f64,
    /// Percent of transactions rolled back at the end.
    pub rollback_pct: u32,
    /// Percent of transactions with a rolled-back savepoint.
    pub savepoint_pct: u32,
    /// Percent of events written as logical messages.
    pub message_pct: u32,
    /// A bulk transaction this often (0 = none), of this many rows over `bulk_aggregates`.
    pub bulk_every: Duration,
    pub bulk_rows: u32,
    pub bulk_aggregates: usize,
    /// Notes without characters beyond the Basic Multilingual Plane (fauxqs).
    pub bmp_only: bool,
}

/// What the writers share.
pub struct Shared {
    pub conn: String,
    pub table: String,
    pub message_prefix: String,
    pub catalog: Arc<Catalog>,
    pub spec: LoadSpec,
    pub seed: u64,
    pub stop: AtomicBool,
    /// Committed events so far (acknowledged commits).
    pub committed: AtomicU64,
    ticket: AtomicU64,
}

impl Shared {
    pub fn new(
        conn: String,
        table: String,
        message_prefix: String,
        catalog: Arc<Catalog>,
        spec: LoadSpec,
        seed: u64,
    ) -> Shared {
        Shared {
            conn,
            table,
            message_prefix,
            catalog,
            spec,
            seed,
            stop: AtomicBool::new(false),
            committed: AtomicU64::new(0),
            ticket: AtomicU64::new(1),
        }
    }
}

/// Starts the writers and the bulk writer; each returns its ledger when `stop` is set.
pub fn spawn(shared: &Arc<Shared>) -> Vec<tokio::task::JoinHandle<Ledger>> {
    let mut tasks: Vec<tokio::task::JoinHandle<Ledger>> = (0..shared.spec.writers)
        .map(|w| {
            let s = shared.clone();
            tokio::spawn(async move { writer(&s, w).await })
        })
        .collect();
    if !shared.spec.bulk_every.is_zero() && shared.spec.bulk_rows > 0 {
        let s = shared.clone();
        tasks.push(tokio::spawn(async move { bulk_writer(&s).await }));
    }
    tasks
}

async fn connect(conn: &str) -> Client {
    let start = std::time::Instant::now();
    loop {
        match tokio_postgres::connect(conn, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                // Acknowledged must mean durable: the cluster's default is off.
                if client
                    .batch_execute("SET synchronous_commit = on")
                    .await
                    .is_ok()
                {
                    return client;
                }
            }
            Err(e) if start.elapsed() > Duration::from_secs(300) => {
                panic!("writer: PostgreSQL unreachable for 5 minutes: {e}")
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Statements {
    row: Statement,
    message: Statement,
}

async fn session(s: &Shared) -> (Client, Statements) {
    let vt = versions_table(&s.table);
    let row = format!(
        "WITH v AS (UPDATE {vt} SET version = version + 1 WHERE agg = $1 RETURNING atype, version)
         INSERT INTO {t} (id, aggregatetype, aggregateid, type, payload, tracingspancontext)
         SELECT $2::text::uuid, v.atype, $1, v.atype || 'Changed',
                jsonb_build_object('aggregate', $1::text, 'version', v.version, 'writer', $3::int, 'note', $4::text),
                $5::text
           FROM v
         RETURNING (payload->>'version')::int, payload::text",
        t = s.table
    );
    // The payload is built as json (not jsonb), so its text is kept as built, and the
    // message embeds that same text: what the relay must publish byte for byte.
    let message = format!(
        "WITH v AS (UPDATE {vt} SET version = version + 1 WHERE agg = $1 RETURNING atype, version),
              p AS (SELECT v.atype, v.version,
                           json_build_object('aggregate', $1::text, 'version', v.version, 'writer', $3::int, 'note', $4::text, 'via', 'message') AS payload
                      FROM v)
         SELECT p.version, p.payload::text,
                pg_logical_emit_message(true, $5::text,
                    json_build_object('id', $2::text, 'aggregatetype', p.atype, 'aggregateid', $1::text,
                                      'type', p.atype || 'Noted', 'payload', p.payload)::text)::text
           FROM p"
    );
    loop {
        let client = connect(&s.conn).await;
        let prepared = async {
            Ok::<_, tokio_postgres::Error>(Statements {
                row: client.prepare(&row).await?,
                message: client.prepare(&message).await?,
            })
        }
        .await;
        match prepared {
            Ok(st) => return (client, st),
            Err(_) if client.is_closed() => continue,
            Err(e) => panic!("prepare writer statements: {e}"),
        }
    }
}

/// One event to write.
struct Item {
    agg: u32,
    via: Via,
    note: String,
    trace: Option<String>,
}

struct Plan {
    items: Vec<Item>,
    /// Before item `at`, a savepoint with these items, rolled back.
    savepoint: Option<(usize, Vec<Item>)>,
    rollback: bool,
}

const PALETTE: [&str; 10] = ["a", "ü", "✓", "\"", "\\", "\t", "注", "é", " ", "x"];

fn note(rng: &mut StdRng, bmp_only: bool) -> String {
    let r = rng.random_range(0..100);
    let len = if r < 80 {
        rng.random_range(0..200)
    } else if r < 98 {
        rng.random_range(200..2000)
    } else {
        rng.random_range(10_000..30_000)
    };
    let mut s = String::with_capacity(len * 2);
    for _ in 0..len {
        if !bmp_only && rng.random_range(0..50) == 0 {
            s.push('🚀');
        } else {
            s.push_str(PALETTE[rng.random_range(0..PALETTE.len())]);
        }
    }
    s
}

fn item(rng: &mut StdRng, s: &Shared) -> Item {
    let agg = rng.random_range(0..s.catalog.len()) as u32;
    let via = if rng.random_range(0..100) < s.spec.message_pct {
        Via::Message
    } else {
        Via::Row
    };
    let trace = (via == Via::Row && rng.random_range(0..3) == 0).then(|| {
        format!(
            "00-{:032x}-{:016x}-01",
            rng.random::<u128>() | 1,
            rng.random::<u64>() | 1
        )
    });
    Item {
        agg,
        via,
        note: note(rng, s.spec.bmp_only),
        trace,
    }
}

fn plan(rng: &mut StdRng, s: &Shared) -> Plan {
    let r = rng.random_range(0..100);
    let n = if r < 60 {
        rng.random_range(1..=3)
    } else if r < 95 {
        rng.random_range(4..=40)
    } else {
        rng.random_range(41..=200)
    };
    let mut items: Vec<Item> = (0..n).map(|_| item(rng, s)).collect();
    let savepoint = (rng.random_range(0..100) < s.spec.savepoint_pct).then(|| {
        let k = rng.random_range(1..=5);
        (
            rng.random_range(0..n),
            (0..k).map(|_| item(rng, s)).collect(),
        )
    });
    // Row locks in one global order (the names' byte order, which is the database's
    // C.UTF-8 collation and the order `= ANY` locks in) keep deadlocks rare; those left
    // (savepoint items) roll back like any failed transaction.
    items.sort_by(|a, b| s.catalog.names[a.agg as usize].cmp(&s.catalog.names[b.agg as usize]));
    Plan {
        items,
        savepoint,
        rollback: rng.random_range(0..100) < s.spec.rollback_pct,
    }
}

async fn write_one(
    client: &Client,
    st: &Statements,
    s: &Shared,
    w: usize,
    it: &Item,
    id: u128,
) -> Result<(u32, [u8; 16]), tokio_postgres::Error> {
    let name = &s.catalog.names[it.agg as usize];
    let idt = uuid_text(id);
    let row = match it.via {
        Via::Row => {
            client
                .query_one(&st.row, &[name, &idt, &(w as i32), &it.note, &it.trace])
                .await?
        }
        Via::Message => {
            client
                .query_one(
                    &st.message,
                    &[name, &idt, &(w as i32), &it.note, &s.message_prefix],
                )
                .await?
        }
    };
    let version: i32 = row.get(0);
    let payload: String = row.get(1);
    Ok((version as u32, digest(payload.as_bytes())))
}

async fn writer(s: &Shared, w: usize) -> Ledger {
    let mut rng = StdRng::seed_from_u64(s.seed ^ (0x9e37_79b9 * (w as u64 + 1)));
    let mut ledger = Ledger::default();
    let (mut client, mut st) = session(s).await;
    let secs_per_event = s.spec.writers as f64 / s.spec.rate.max(1.0);
    while !s.stop.load(Ordering::Relaxed) {
        let p = plan(&mut rng, s);
        let mut written: Vec<Written> = Vec::new();
        let mut discarded: Vec<u128> = Vec::new();
        let mut committing = false;
        let mut ticket = 0;
        let result: Result<(), tokio_postgres::Error> = async {
            client.batch_execute("BEGIN").await?;
            for (i, it) in p.items.iter().enumerate() {
                if let Some((at, sp)) = &p.savepoint {
                    if *at == i {
                        client.batch_execute("SAVEPOINT sp").await?;
                        for x in sp {
                            let id = new_id(&mut rng);
                            discarded.push(id);
                            write_one(&client, &st, s, w, x, id).await?;
                        }
                        client.batch_execute("ROLLBACK TO SAVEPOINT sp").await?;
                    }
                }
                let id = new_id(&mut rng);
                let (version, digest) = write_one(&client, &st, s, w, it, id).await?;
                written.push(Written {
                    id,
                    agg: it.agg,
                    version,
                    via: it.via,
                    digest,
                    traceparent: it.trace.as_deref().map(Into::into),
                    txn: 0,
                });
            }
            if p.rollback {
                client.batch_execute("ROLLBACK").await
            } else {
                ticket = s.ticket.fetch_add(1, Ordering::SeqCst);
                committing = true;
                client.batch_execute("COMMIT").await
            }
        }
        .await;
        for e in &mut written {
            e.txn = ticket;
        }
        let n = written.len() as u64;
        match result {
            Ok(()) if p.rollback => {
                ledger.counts.rolled_back_txns += 1;
                ledger.rolled_back.extend(discarded);
                ledger.rolled_back.extend(written.iter().map(|e| e.id));
            }
            Ok(()) => {
                let c = &mut ledger.counts;
                c.committed_txns += 1;
                c.committed_events += n;
                c.message_events += written.iter().filter(|e| e.via == Via::Message).count() as u64;
                c.savepoint_rollbacks += u64::from(p.savepoint.is_some());
                c.largest_txn = c.largest_txn.max(n);
                ledger.rolled_back.extend(discarded);
                ledger.committed.extend(written);
                s.committed.fetch_add(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs_f64(secs_per_event * n as f64)).await;
            }
            Err(_) => {
                ledger.rolled_back.extend(discarded);
                if committing {
                    // The COMMIT was sent and its answer lost: committed or not, only
                    // PostgreSQL knows (the checker asks the versions and the table).
                    ledger.counts.ambiguous_txns += 1;
                    ledger.counts.ambiguous_events += n;
                    ledger.ambiguous.extend(written);
                } else {
                    ledger.counts.failed_txns += 1;
                    ledger.rolled_back.extend(written.iter().map(|e| e.id));
                }
                if client.is_closed() || client.batch_execute("ROLLBACK").await.is_err() {
                    ledger.counts.reconnects += 1;
                    (client, st) = session(s).await;
                }
            }
        }
    }
    ledger
}

/// One transaction of `bulk_rows` rows every `bulk_every`, over `bulk_aggregates` random
/// aggregates: each aggregate's counter moves by rows/aggregates under one UPDATE, and its
/// rows are inserted in version order.
async fn bulk_writer(s: &Shared) -> Ledger {
    let mut rng = StdRng::seed_from_u64(s.seed ^ 0xb01c);
    let mut ledger = Ledger::default();
    let vt = versions_table(&s.table);
    let sql = format!(
        "WITH v AS (UPDATE {vt} SET version = version + $2 WHERE agg = ANY($1::text[])
                    RETURNING agg, atype, version - $2 AS base)
         INSERT INTO {t} (aggregatetype, aggregateid, type, payload)
         SELECT v.atype, v.agg, 'BulkLoaded',
                jsonb_build_object('aggregate', v.agg, 'version', v.base + g, 'bulk', true, 'note', repeat('y', 100))
           FROM v CROSS JOIN generate_series(1, $2) g
          ORDER BY g, v.agg
         RETURNING id::text, aggregateid, (payload->>'version')::int, payload::text",
        t = s.table
    );
    let mut client = connect(&s.conn).await;
    loop {
        // Sleep in small steps so that a stop is seen promptly.
        let until = tokio::time::Instant::now() + s.spec.bulk_every;
        while tokio::time::Instant::now() < until {
            if s.stop.load(Ordering::Relaxed) {
                return ledger;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let k = s.spec.bulk_aggregates.min(s.catalog.len());
        let per = (s.spec.bulk_rows as usize / k).max(1) as i32;
        let mut aggs: Vec<String> = rand::seq::index::sample(&mut rng, s.catalog.len(), k)
            .into_iter()
            .map(|i| s.catalog.names[i].clone())
            .collect();
        aggs.sort();
        let mut ticket = 0;
        let mut committing = false;
        let mut rows: Vec<tokio_postgres::Row> = Vec::new();
        let result: Result<(), tokio_postgres::Error> = async {
            client.batch_execute("BEGIN").await?;
            rows = client.query(&sql, &[&aggs, &per]).await?;
            ticket = s.ticket.fetch_add(1, Ordering::SeqCst);
            committing = true;
            client.batch_execute("COMMIT").await
        }
        .await;
        let written: Vec<Written> = rows
            .iter()
            .map(|r| {
                let id: String = r.get(0);
                let agg: String = r.get(1);
                let version: i32 = r.get(2);
                let payload: String = r.get(3);
                Written {
                    id: parse_uuid(&id).expect("uuid"),
                    agg: s.catalog.index[&agg],
                    version: version as u32,
                    via: Via::Row,
                    digest: digest(payload.as_bytes()),
                    traceparent: None,
                    txn: ticket,
                }
            })
            .collect();
        let n = written.len() as u64;
        match result {
            Ok(()) => {
                let c = &mut ledger.counts;
                c.committed_txns += 1;
                c.committed_events += n;
                c.bulk_txns += 1;
                c.bulk_events += n;
                c.largest_txn = c.largest_txn.max(n);
                ledger.committed.extend(written);
                s.committed.fetch_add(n, Ordering::Relaxed);
            }
            Err(_) => {
                if committing {
                    ledger.counts.ambiguous_txns += 1;
                    ledger.counts.ambiguous_events += n;
                    ledger.ambiguous.extend(written);
                } else {
                    // Rolled back before COMMIT; the ids, if the statement answered, were
                    // never committed.
                    ledger.counts.failed_txns += 1;
                    ledger.rolled_back.extend(written.iter().map(|e| e.id));
                }
                if client.is_closed() || client.batch_execute("ROLLBACK").await.is_err() {
                    ledger.counts.reconnects += 1;
                    client = connect(&s.conn).await;
                }
            }
        }
    }
}
