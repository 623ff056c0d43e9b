//! Phase 1: a backlog drained by pg_recvlogical, the relay and Debezium, one after another;
//! each Kafka output checked against the committed backlog.

use super::*;
use crate::kafka::{
    create_topics, delete_topics, fnv, json_int, read_topic, topic_count, watermark_consumer,
};
use crate::processes::{debezium_message_topic, start_debezium, start_relay, usage, Proc};

pub(crate) struct DrainReport {
    pub(crate) avg_payload: f64,
    pub(crate) recvlogical: Usage,
    pub(crate) relay: (Usage, Check),
    pub(crate) dbz: (Usage, Check),
}

pub(crate) async fn drain_phase(
    args: &Args,
    client: &tokio_postgres::Client,
    run: &str,
    topic_base: &str,
) -> DrainReport {
    let table = format!("{run}_drain");
    let publication = table.clone();
    let slots = [
        format!("{run}_recvlogical"),
        format!("{run}_relay"),
        format!("{run}_dbz"),
    ];
    let relay_prefix = format!("{topic_base}-drain-relay");
    let dbz_prefix = format!("{topic_base}-drain-dbz");
    create_topics(&[
        format!("{relay_prefix}.Order"),
        format!("{dbz_prefix}.Order"),
    ])
    .await;
    pg::create_outbox_table(client, &table, "jsonb", false).await;
    client
        .batch_execute(&format!(
            "CREATE PUBLICATION {publication} FOR TABLE {table} WITH (publish = 'insert');"
        ))
        .await
        .expect("drain schema");
    backlog::define_fill(client, &format!("{run}_fill"), &table).await;
    let slot_names: Vec<&str> = slots.iter().map(String::as_str).collect();
    backlog::create_slots(client, &slot_names).await;
    let t = Instant::now();
    args.backlog
        .write(client, &format!("{run}_fill"), "compare")
        .await;
    let end_lsn: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let avg_payload: f64 = client
        .query_one(
            &format!("SELECT avg(octet_length(payload::text))::float8 FROM {table}"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    eprintln!(
        "compare: backlog written in {:.1}s, end LSN {end_lsn}, average payload {avg_payload:.0} bytes",
        t.elapsed().as_secs_f64()
    );
    let ids: HashSet<String> = client
        .query(&format!("SELECT id::text FROM {table}"), &[])
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();

    let recv = recvlogical(&slots[0], &publication, &end_lsn);
    eprintln!("compare: pg_recvlogical {recv:?}");

    let mut relay = start_relay(args, &slots[1], &publication, &table, &relay_prefix, false);
    let relay_usage = wait_drained(
        &mut relay,
        args.backlog.events,
        &format!("{relay_prefix}.Order"),
    );
    relay.stop();
    eprintln!("compare: relay {relay_usage:?}");

    let mut dbz = start_debezium(args, "drain", &slots[2], &publication, &table, &dbz_prefix);
    let dbz_usage = wait_drained(
        &mut dbz,
        args.backlog.events,
        &format!("{dbz_prefix}.Order"),
    );
    dbz.stop();
    eprintln!("compare: Debezium {dbz_usage:?}");

    eprintln!("compare: checking the relay's output");
    let (relay_check, relay_payloads) =
        check_drain(&format!("{relay_prefix}.Order"), args, &ids, None);
    eprintln!("compare: relay {}", relay_check.verdict());
    eprintln!("compare: checking Debezium's output");
    let (dbz_check, _) = check_drain(
        &format!("{dbz_prefix}.Order"),
        args,
        &ids,
        Some(&relay_payloads),
    );
    eprintln!("compare: Debezium {}", dbz_check.verdict());

    for slot in &slots {
        pg::cleanup(client, slot, &publication, &[]).await;
    }
    let _ = client
        .batch_execute(&format!(
            "DROP PROCEDURE IF EXISTS {run}_fill; DROP TABLE IF EXISTS {table}"
        ))
        .await;
    delete_topics(&[
        format!("{relay_prefix}.Order"),
        format!("{dbz_prefix}.Order"),
        debezium_message_topic(&slots[2]),
    ])
    .await;
    DrainReport {
        avg_payload,
        recvlogical: recv,
        relay: (relay_usage, relay_check),
        dbz: (dbz_usage, dbz_check),
    }
}

/// Reads a drain topic and checks it against the committed backlog: seq 0..events-1 each
/// once, key `order-<seq % aggregates>`, per key increasing seq, every committed id.
/// Returns the payload hash per seq (to compare bytes between systems).
pub(crate) fn check_drain(
    topic: &str,
    args: &Args,
    ids: &HashSet<String>,
    compare_to: Option<&Vec<u64>>,
) -> (Check, Vec<u64>) {
    let mut check = Check::default();
    let mut seen = vec![false; args.backlog.events];
    let mut hashes = vec![0u64; args.backlog.events];
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut seen_ids: HashSet<String> = HashSet::with_capacity(args.backlog.events);
    let mut payload_diff = 0usize;
    read_topic(topic, |key, payload, id, _ts| {
        check.records += 1;
        let Some(seq) = json_int(payload, "\"seq\":") else {
            check.wrong_key += 1;
            return;
        };
        if seq < 0 || seq as usize >= args.backlog.events {
            check.wrong_key += 1;
            return;
        }
        let s = seq as usize;
        if key != format!("order-{}", s % args.backlog.aggregates).as_bytes() {
            check.wrong_key += 1;
        }
        if seen[s] {
            check.duplicates += 1;
        } else {
            seen[s] = true;
            hashes[s] = fnv(payload);
            if let Some(other) = compare_to {
                if other[s] != hashes[s] {
                    payload_diff += 1;
                }
            }
            let k = String::from_utf8_lossy(key).into_owned();
            let e = last.entry(k).or_insert(-1);
            if seq < *e {
                check.reordered += 1;
            } else {
                *e = seq;
            }
        }
        if let Some(id) = id {
            seen_ids.insert(String::from_utf8_lossy(id).into_owned());
        }
    });
    check.missing = seen.iter().filter(|s| !**s).count();
    check.missing_ids = ids.iter().filter(|id| !seen_ids.contains(*id)).count();
    if compare_to.is_some() {
        check.payload_diff = Some(payload_diff);
    }
    (check, hashes)
}

/// `pg_recvlogical` to /dev/null until the end of the backlog, under GNU time.
pub(crate) fn recvlogical(slot: &str, publication: &str, end_lsn: &str) -> Usage {
    let bin = outbox_relay_tests::pg::recvlogical_binary();
    let out = std::env::temp_dir().join(format!("compare-recvlogical-{}.time", std::process::id()));
    let started = Instant::now();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%e %U %S %M", "-o"])
        .arg(&out)
        .arg(bin)
        .args([
            "-h",
            &env::pg_host(),
            "-p",
            &env::pg_port().to_string(),
            "-U",
            &env::pg_user(),
            "-d",
            &env::pg_database(),
        ])
        .args([
            "--slot",
            slot,
            "--start",
            "--endpos",
            end_lsn,
            "--no-loop",
            "-f",
            "/dev/null",
        ])
        .args([
            "-o",
            "proto_version=1",
            "-o",
            &format!("publication_names={publication}"),
        ])
        .env("PGPASSWORD", env::pg_password())
        .status()
        .expect("run pg_recvlogical");
    let wall = started.elapsed().as_secs_f64();
    assert!(status.success(), "pg_recvlogical failed: {status}");
    let text = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    Usage {
        wall,
        cpu: f[1] + f[2],
        peak_rss_kb: f[3] as u64,
        first_event: None,
    }
}

/// Waits until `topic` holds `events` records (the relay: until its metrics say so),
/// measured from process start.
pub(crate) fn wait_drained(p: &mut Proc, events: usize, topic: &str) -> Usage {
    let counter = watermark_consumer();
    let mut first_event = None;
    let wall = loop {
        let n = match p.metrics_port {
            Some(port) => http_get(port, "/metrics")
                .map(|(_, body)| {
                    metric_sum(
                        &body,
                        "outbox_relay_events_published_total",
                        &["result=\"ok\""],
                    ) as usize
                })
                .unwrap_or(0),
            None => topic_count(&counter, topic) as usize,
        };
        if n > 0 && first_event.is_none() {
            first_event = Some(p.started.elapsed().as_secs_f64());
        }
        if n >= events {
            break p.started.elapsed().as_secs_f64();
        }
        p.assert_alive();
        assert!(
            p.started.elapsed() < Duration::from_secs(3600),
            "{} did not finish draining",
            p.name
        );
        std::thread::sleep(Duration::from_millis(if p.metrics_port.is_some() {
            20
        } else {
            50
        }));
    };
    let ProcessUsage {
        cpu_seconds: cpu,
        peak_rss_kb,
        ..
    } = usage(p.pid());
    Usage {
        wall,
        cpu,
        peak_rss_kb,
        first_event,
    }
}
