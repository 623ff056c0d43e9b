//! Per-aggregate ordered outbox workloads (snapshot and cleanup tests): every row's
//! payload is `{"n": k}`, its aggregate's k-th event, and a `seq bigserial` column gives
//! the order a snapshot reads them in.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::kafka::Record;
use crate::pg;

/// Debezium's outbox shape plus `seq bigserial`.
pub async fn create_table(client: &Client, table: &str) {
    pg::create_outbox_table(client, table, "jsonb", false).await;
    client
        .batch_execute(&format!("ALTER TABLE {table} ADD COLUMN seq bigserial"))
        .await
        .unwrap();
}

/// Writes `aggregates` × `rows` events in one statement: aggregate `{prefix}{a}` gets
/// n = 1..=rows, in `seq` order.
pub async fn prefill(client: &Client, table: &str, prefix: &str, aggregates: u64, rows: u64) {
    client
        .batch_execute(&format!(
            "INSERT INTO {table} (aggregatetype, aggregateid, type, payload)
             SELECT 'Order', '{prefix}' || (g % {aggregates}), 'T', jsonb_build_object('n', g / {aggregates} + 1)
               FROM generate_series(0, {aggregates} * {rows} - 1) g ORDER BY g"
        ))
        .await
        .unwrap();
}

/// One transaction per row.
pub async fn insert(client: &Client, table: &str, aggregate: &str, n: u64) {
    client
        .execute(
            &format!(
                "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', $1, 'T', jsonb_build_object('n', $2::int8))"
            ),
            &[&aggregate, &(n as i64)],
        )
        .await
        .unwrap();
}

/// `writers` tasks; writer w owns the aggregates `{prefix}{a}` with a % writers == w
/// (a < aggregates), continues each from n = `from` + 1 and writes round-robin until
/// `stop` is set, pausing `pause` between rows. Returns each aggregate's last n.
pub fn spawn_writers(
    table: &str,
    prefix: &str,
    writers: u64,
    aggregates: u64,
    from: u64,
    pause: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<JoinHandle<BTreeMap<String, u64>>> {
    (0..writers)
        .map(|w| {
            let table = table.to_string();
            let prefix = prefix.to_string();
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = pg::connect().await;
                let mine: Vec<String> = (0..aggregates)
                    .filter(|a| a % writers == w)
                    .map(|a| format!("{prefix}{a}"))
                    .collect();
                let mut last: BTreeMap<String, u64> =
                    mine.iter().map(|a| (a.clone(), from)).collect();
                'outer: loop {
                    for a in &mine {
                        if *stop.borrow() {
                            break 'outer;
                        }
                        let n = last[a] + 1;
                        insert(&client, &table, a, n).await;
                        last.insert(a.clone(), n);
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                }
                last
            })
        })
        .collect()
}

/// The `n` of a record's payload.
pub fn n_of(r: &Record) -> u64 {
    let v: serde_json::Value =
        serde_json::from_slice(r.payload.as_deref().unwrap_or_default()).expect("json payload");
    v["n"].as_u64().expect("payload has n")
}

/// What arrived, checked against `expected` (aggregate → last n): each aggregate's
/// events 1..=last, first copies in order, and every further copy one of an event
/// already published (a duplicate). Returns the number of duplicates. A record the
/// consumer read twice (same topic, partition and offset, after a rebalance of its
/// pattern subscription) is one record, not a duplicate the relay published.
pub fn check(records: &[Record], expected: &BTreeMap<String, u64>) -> Result<usize, String> {
    let mut max: BTreeMap<String, u64> = BTreeMap::new();
    let mut duplicates = 0;
    let mut read = std::collections::HashSet::new();
    for r in records {
        if !read.insert((r.topic.clone(), r.partition, r.offset)) {
            continue;
        }
        let key = r.key_str();
        let n = n_of(r);
        let seen = max.entry(key.clone()).or_insert(0);
        if n == *seen + 1 {
            *seen = n;
        } else if n <= *seen {
            duplicates += 1;
        } else {
            return Err(format!(
                "aggregate {key}: event {n} arrived after {seen} (a gap or a reordering)"
            ));
        }
    }
    let expected: BTreeMap<String, u64> = expected
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    if max != expected {
        let wrong: Vec<String> = expected
            .iter()
            .filter(|(k, n)| max.get(*k) != Some(n))
            .take(5)
            .map(|(k, n)| format!("{k}: expected {n}, got {:?}", max.get(k)))
            .collect();
        let extra = max.keys().filter(|k| !expected.contains_key(*k)).count();
        return Err(format!(
            "the published set differs: {} aggregates wrong (first: {wrong:?}), {extra} unexpected aggregates",
            expected.iter().filter(|(k, n)| max.get(*k) != Some(n)).count()
        ));
    }
    Ok(duplicates)
}

/// Reads every topic under `prefix` until each aggregate of `expected` reached its
/// last n (or `idle` without progress), then two seconds more for copies right behind.
pub async fn read_all(
    prefix: &str,
    expected: &BTreeMap<String, u64>,
    idle: Duration,
) -> Vec<Record> {
    let prefix = prefix.to_string();
    let expected = expected.clone();
    tokio::task::spawn_blocking(move || {
        let mut reader = crate::kafka::TopicReader::new(&prefix);
        let mut max: BTreeMap<String, u64> = BTreeMap::new();
        let mut complete = 0;
        let mut counted = 0;
        reader.read_until(idle, |records| {
            for r in &records[counted..] {
                let n = n_of(r);
                let m = max.entry(r.key_str()).or_insert(0);
                if n > *m {
                    if expected.get(&r.key_str()) == Some(&n) {
                        complete += 1;
                    }
                    *m = n;
                }
            }
            counted = records.len();
            complete >= expected.len()
        });
        reader.read_until(Duration::from_secs(2), |_| false);
        reader.into_records()
    })
    .await
    .unwrap()
}

/// Rows still in the table.
pub async fn count(client: &Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}
