//! `source.shards` (issue 17, docs/scaling.md): one outbox table read through 4 slots and
//! 4 publications whose row filters split it by a hash of the aggregate id.
//!
//! - Under a multi-writer load with a big transaction spanning every shard, the relay is
//!   SIGKILLed at random points and restarted: nothing committed is lost, every
//!   aggregate's events arrive in commit order, and every extra copy is explained by a
//!   kill at which *the aggregate's own shard's* slot had not confirmed the event's
//!   commit. An aggregate read by two shards (or none) fails this: its events arrive
//!   twice with no kill to explain it (or never).
//! - Every shard's slot advances, `/metrics` has a `slot`-labelled position per shard, and
//!   `status` reports every shard.
//! - A publication whose row filter is another shard count's is refused by `check` and by
//!   `run`, never read.
//! - A uuid aggregate id is split by its own hash; `parked` commands see every shard;
//!   exactly-once and a standby's take-over work for every shard.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use outbox_relay_tests::env;
use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::relay::{metric_value, Relay, RelaySetup};
use outbox_relay_tests::workload::{self, WorkloadSpec};
use outbox_relay_tests::{ordered, pg, unique};
use rand::Rng;

const SHARDS: u32 = 4;

/// `outbox-relay --config <config> <args>`: (exit code, stdout).
fn command(config: &std::path::Path, args: &[&str], envs: &[(String, String)]) -> (i32, String) {
    let out = Command::new(env::relay_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run outbox-relay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn sharded(name: &str, table: &str) -> RelaySetup {
    RelaySetup::new(name, table).with_env(&[("RELAY__SOURCE__SHARDS", &SHARDS.to_string())])
}

fn shard_slots(setup: &RelaySetup) -> Vec<String> {
    (0..SHARDS)
        .map(|i| format!("{}_{i}", setup.slot()))
        .collect()
}

async fn cleanup_shards(client: &tokio_postgres::Client, setup: &RelaySetup, tables: &[&str]) {
    for i in 0..SHARDS {
        pg::cleanup(
            client,
            &format!("{}_{i}", setup.slot()),
            &format!("{}_{i}", setup.publication()),
            &[],
        )
        .await;
    }
    for t in tables {
        let _ = client
            .batch_execute(&format!("DROP TABLE IF EXISTS {t}"))
            .await;
    }
}

/// The shard each aggregate belongs to, computed by PostgreSQL with the documented
/// formula (docs/scaling.md), independently of the relay's filter.
async fn shard_of_aggregates(
    client: &tokio_postgres::Client,
    table: &str,
) -> HashMap<String, usize> {
    client
        .query(
            &format!(
                "SELECT agg, ((hashtextextended(agg, 0) & 9223372036854775807) % {SHARDS})::int4
                   FROM (SELECT DISTINCT aggregateid AS agg FROM {table}) a"
            ),
            &[],
        )
        .await
        .expect("shard of aggregates")
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i32>(1) as usize))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_shards_survive_sigkills_with_nothing_lost_order_kept_and_one_shard_per_aggregate() {
    let name = unique("shards");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    let spec = WorkloadSpec {
        writers: 6,
        events: 20_000,
        aggregates: 200,
        ..WorkloadSpec::end_to_end(&table)
    };
    workload::prepare(&client, &spec).await;
    let mut setup = sharded(&name, &table);
    setup.inflight_bytes = 1024 * 1024;
    let slots = shard_slots(&setup);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    let created: Vec<u64> = {
        let mut v = Vec::new();
        for slot in &slots {
            v.push(
                pg::confirmed_flush(&client, slot)
                    .await
                    .expect("shard slot exists"),
            );
        }
        v
    };

    let load = {
        let spec = spec.clone();
        tokio::spawn(async move { workload::run(&spec).await })
    };
    // One transaction whose rows fall in every shard: each shard delivers its part.
    let big = {
        let table = table.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            let c = pg::connect().await;
            workload::big_transaction(&c, &table, 20_000, 40).await;
        })
    };

    // flushes[k][shard]: each shard slot's confirmed flush after kill k.
    let mut flushes: Vec<Vec<u64>> = Vec::new();
    for kill in 0..4 {
        let wait_ms = rand::rng().random_range(500..3000);
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        relay.kill9();
        let mut at_kill = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            let flush = pg::confirmed_flush_when_inactive(&client, slot).await;
            if let Some(prev) = flushes.last() {
                assert!(
                    flush >= prev[i],
                    "{slot}: confirmed_flush_lsn went backwards: {:X} -> {flush:X}",
                    prev[i]
                );
            }
            at_kill.push(flush);
        }
        eprintln!("kill {kill} after {wait_ms} ms: confirmed flush per shard {at_kill:X?}");
        flushes.push(at_kill);
        relay = Relay::start(&setup);
        relay.wait_ready(Duration::from_secs(60));
    }
    let report = load.await.unwrap();
    big.await.unwrap();
    let expected = workload::committed_rows(&client, &table).await;
    eprintln!("workload: {report:?}; committed rows {}", expected.len());
    assert_eq!(expected.len(), report.committed_events + 20_000);

    let shard_of = shard_of_aggregates(&client, &table).await;
    for s in 0..SHARDS as usize {
        assert!(
            shard_of.values().any(|&x| x == s),
            "no aggregate hashes to shard {s}: the test would not exercise it"
        );
    }

    let prefix = setup.topic_prefix.clone();
    let want = expected.len();
    let records = tokio::task::spawn_blocking(move || {
        let mut reader = TopicReader::new(&prefix);
        reader.read_distinct_ids(want, Duration::from_secs(120));
        reader.into_records()
    })
    .await
    .unwrap();
    // Nothing lost, nothing foreign, byte-exact, and per-aggregate order = commit order.
    let verdict =
        workload::assert_delivered(&records, &expected, &setup.topic_prefix, "shards", &relay);

    // An extra copy needs a kill at which the event's own shard had not confirmed its
    // commit: an aggregate read by two shards has copies no kill explains.
    let commit_of: HashMap<&[u8], u64> = records
        .iter()
        .map(|r| {
            (
                r.header("id").unwrap(),
                pg::parse_lsn(&r.header_str("outbox-relay-commit-lsn").unwrap()),
            )
        })
        .collect();
    let mut replayed = vec![0usize; SHARDS as usize];
    for (id, copies) in &verdict.duplicates {
        let commit = commit_of[id.as_bytes()];
        let aggregate = &expected[id].aggregate_id;
        let shard = shard_of[aggregate];
        let allowed = flushes.iter().filter(|f| f[shard] <= commit).count();
        assert!(
            copies - 1 <= allowed,
            "event {id} of {aggregate} (shard {shard}, commit {commit:X}) published {copies} times, but only {allowed} kills had shard {shard}'s confirmed flush at or below its commit: {flushes:X?}"
        );
        replayed[shard] += copies - 1;
    }
    eprintln!(
        "{} records, {} distinct, replayed copies per shard {replayed:?}",
        records.len(),
        verdict.distinct
    );

    // Every shard read its part and confirmed it; the scrape has each shard's position.
    let metrics = relay.metrics();
    for (i, slot) in slots.iter().enumerate() {
        let flush = pg::confirmed_flush(&client, slot).await.unwrap();
        assert!(
            flush > created[i],
            "{slot} never advanced past its creation ({flush:X})"
        );
        let series = format!("outbox_relay_confirmed_flush_lsn{{slot=\"{slot}\"}}");
        assert!(
            metric_value(&metrics, &series).is_some_and(|v| v > 0.0),
            "{series} missing from:\n{metrics}"
        );
    }
    assert_eq!(
        metric_value(&metrics, "outbox_relay_replicating"),
        Some(1.0)
    );

    // `status` reports every shard's slot and publication.
    let (code, out) = command(&relay.config, &["status", "--output", "json"], &setup.env);
    let status: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: status output:\n{out}"));
    assert_eq!(code, 0, "status problems: {}", status["problems"]);
    let shards = status["shards"].as_array().expect("status lists shards");
    let names: Vec<&str> = shards
        .iter()
        .map(|s| s["slot"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, slots.iter().map(String::as_str).collect::<Vec<_>>());
    for s in shards {
        assert_eq!(s["slot"]["active"], true, "{s}");
        assert_eq!(s["publication"]["exists"], true, "{s}");
    }

    let status = relay.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    cleanup_shards(
        &client,
        &setup,
        &[&table, &workload::versions_table(&table)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_filtered_for_another_shard_count_is_refused_not_read() {
    let name = unique("shards_mismatch");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let setup = sharded(&name, &table);
    // Shard 1's publication as an 8-shard relay made it.
    client
        .batch_execute(&format!(
            "CREATE PUBLICATION {name}_1 FOR TABLE {table}
               WHERE ((hashtextextended(aggregateid, 0) & 9223372036854775807) % 8 = 1)
               WITH (publish = 'insert')"
        ))
        .await
        .unwrap();

    let mut relay = Relay::start(&setup);
    let exit = relay.wait(Duration::from_secs(60));
    assert!(!exit.success(), "run read a mismatched publication");
    let log = relay.log_text();
    let want = format!(
        "publication \"{name}_1\" (shard 1 of 4) filters public.{table} with the row filter"
    );
    assert!(log.contains(&want), "log lacks {want:?}:\n{log}");
    assert!(log.contains("% (8)::bigint"), "{log}");

    let (code, out) = command(&relay.config, &["check"], &setup.env);
    assert_ne!(code, 0, "check passed a mismatched publication:\n{out}");
    let fail: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("FAIL publication"))
        .collect();
    assert_eq!(fail.len(), 1, "{out}");
    assert!(fail[0].contains(&want), "{out}");
    // The other shards' publications are reported (created by `run` before it stopped
    // at shard 1, or to be created).
    let publication_lines = out.lines().filter(|l| l.contains(" publication: ")).count();
    assert_eq!(publication_lines, SHARDS as usize, "{out}");
    let slot_lines = out.lines().filter(|l| l.contains(" slot: ")).count();
    assert_eq!(slot_lines, SHARDS as usize, "{out}");

    cleanup_shards(&client, &setup, &[&table]).await;
}

/// A `uuid` aggregate id cannot be cast to text in a row filter; its own hash function
/// splits it. Every event arrives exactly once (no shard lost or doubled an aggregate),
/// in order per aggregate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uuid_aggregate_id_is_split_by_its_own_hash() {
    let name = unique("shards_uuid");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                aggregatetype text NOT NULL, aggregateid uuid NOT NULL, type text NOT NULL,
                payload jsonb, timestamp timestamptz NOT NULL DEFAULT now()
            )"
        ))
        .await
        .unwrap();
    let setup = sharded(&name, &table);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    // 40 aggregates, 10 versions each, 10 transactions touching every aggregate.
    for version in 1..=10 {
        client
            .batch_execute(&format!(
                "INSERT INTO {table} (aggregatetype, aggregateid, type, payload)
                 SELECT 'Thing', ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid, 'Changed',
                        jsonb_build_object('version', {version})
                   FROM generate_series(1, 40) i"
            ))
            .await
            .unwrap();
    }
    let per_shard: Vec<i64> = client
        .query(
            &format!(
                "SELECT count(DISTINCT aggregateid) FROM {table}
                  GROUP BY (uuid_hash_extended(aggregateid, 0) & 9223372036854775807) % {SHARDS}"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(per_shard.len(), SHARDS as usize, "{per_shard:?}");

    let topic = format!("{}.Thing", setup.topic_prefix);
    let records = tokio::task::spawn_blocking(move || {
        let mut reader = TopicReader::exact(&topic);
        reader.read_at_least(400, Duration::from_secs(60));
        // Anything beyond 400 would be a duplicate: wait a little for it.
        reader.read_at_least(401, Duration::from_secs(3));
        reader.into_records()
    })
    .await
    .unwrap();
    assert_eq!(records.len(), 400, "{}", relay.log_tail());
    let mut versions: HashMap<String, Vec<i64>> = HashMap::new();
    for r in &records {
        let payload: serde_json::Value =
            serde_json::from_slice(r.payload.as_ref().unwrap()).unwrap();
        versions
            .entry(r.key_str())
            .or_default()
            .push(payload["version"].as_i64().unwrap());
    }
    assert_eq!(versions.len(), 40);
    for (aggregate, v) in &versions {
        assert_eq!(*v, (1..=10).collect::<Vec<_>>(), "{aggregate}");
    }
    let status = relay.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    cleanup_shards(&client, &setup, &[&table]).await;
}

/// Parked events are kept per slot: `parked list` and `parked discard` see every shard's,
/// and the per-slot parked gauges carry each shard's slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_commands_cover_every_shard() {
    let name = unique("shards_park");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", true).await;
    let setup = sharded(&name, &table);
    let slots = shard_slots(&setup);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    // Two aggregates in different shards.
    let shard_of = |agg: String| {
        let client = &client;
        async move {
            let r = client
                .query_one(
                    &format!(
                        "SELECT ((hashtextextended($1, 0) & 9223372036854775807) % {SHARDS})::int4"
                    ),
                    &[&agg],
                )
                .await
                .unwrap();
            r.get::<_, i32>(0) as usize
        }
    };
    let first = "agg-0".to_string();
    let first_shard = shard_of(first.clone()).await;
    let mut second = None;
    for i in 1..100 {
        let agg = format!("agg-{i}");
        let shard = shard_of(agg.clone()).await;
        if shard != first_shard {
            second = Some((agg, shard));
            break;
        }
    }
    let (second, second_shard) = second.unwrap();
    // Each: event 1 valid, event 2 invalid (NULL type), events 3..5 parked behind it.
    let mut sql = String::new();
    for n in 1..=5 {
        for agg in [&first, &second] {
            let ty = if n == 2 { "NULL" } else { "'T'" };
            sql += &format!(
                "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', '{agg}', {ty}, '{{\"n\": {n}}}');"
            );
        }
    }
    client.batch_execute(&sql).await.unwrap();

    let parked = |args: &[&str]| {
        let mut all = vec!["parked"];
        all.extend_from_slice(args);
        command(&relay.config, &all, &setup.env)
    };
    let mut listed = serde_json::Value::Null;
    for _ in 0..100 {
        let (code, out) = parked(&["list", "--output", "json"]);
        assert_eq!(code, 0, "{out}");
        listed = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        if listed.as_array().unwrap().len() >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let aggregates = |v: &serde_json::Value| {
        let mut a: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["aggregate_id"].as_str().unwrap().to_string())
            .collect();
        a.sort();
        a
    };
    let mut want = vec![first.clone(); 4];
    want.extend(vec![second.clone(); 4]);
    want.sort();
    assert_eq!(aggregates(&listed), want, "{listed}");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let metrics = relay.metrics();
    for (shard, slot) in slots.iter().enumerate() {
        let series = format!("outbox_relay_parked_aggregates{{slot=\"{slot}\"}}");
        let expected = f64::from(u8::from(shard == first_shard || shard == second_shard));
        assert_eq!(metric_value(&metrics, &series), Some(expected), "{series}");
    }

    let (code, out) = parked(&["discard", "--aggregate", &second]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("discarded 4 parked events"), "{out}");
    let (_, out) = parked(&["list", "--output", "json"]);
    let listed: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(aggregates(&listed), vec![first.clone(); 4], "{listed}");

    let status = relay.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    cleanup_shards(&client, &setup, &[&table]).await;
}

/// `sink.kafka.exactly_once` and `ha.enabled` with shards: each shard's producer has its
/// own transactional id, and one leadership lock covers every shard. The leader is
/// SIGKILLed three times and a standby takes over every shard's slot each time; a
/// `read_committed` consumer sees every event exactly once, in order per aggregate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_and_a_standby_take_over_every_shard() {
    let name = unique("shards_eos");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    ordered::create_table(&client, &table).await;
    let setup = sharded(&name, &table).with_env(&[
        ("RELAY__SINK__KAFKA__EXACTLY_ONCE", "true"),
        ("RELAY__HA__ENABLED", "true"),
    ]);
    let stems = [format!("{name}-a"), format!("{name}-b")];
    let wait_leading = |relay: &mut Relay| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while relay.metric("outbox_relay_replicating") != Some(1.0) {
            assert!(Instant::now() < deadline, "{}", relay.log_tail());
            if let Some(status) = relay.try_wait() {
                panic!("replica exited with {status}: {}", relay.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut leader = Relay::start_replica(&setup, &stems[0]);
    wait_leading(&mut leader);
    let mut standby = Relay::start_replica(&setup, &stems[1]);
    standby.wait_ready(Duration::from_secs(60));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writers =
        ordered::spawn_writers(&table, "agg-", 4, 40, 0, Duration::from_millis(4), stop_rx);
    let mut leading = 0;
    for round in 0..3 {
        let ms = rand::rng().random_range(800..2000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        leader.kill9();
        let started = Instant::now();
        wait_leading(&mut standby);
        eprintln!(
            "round {round}: the standby leads every shard after {:?}",
            started.elapsed()
        );
        // The killed replica comes back as the new standby.
        leading = 1 - leading;
        leader = standby;
        standby = Relay::start_replica(&setup, &stems[1 - leading]);
        standby.wait_ready(Duration::from_secs(60));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop_tx.send(true);
    let mut expected = BTreeMap::new();
    for w in writers {
        expected.extend(w.await.unwrap());
    }
    let total: u64 = expected.values().sum();
    let topic = format!("{}.Order", setup.topic_prefix);
    let committed = tokio::task::spawn_blocking(move || {
        let mut r = TopicReader::exact(&topic);
        r.read_distinct_ids(total as usize, Duration::from_secs(60));
        r.into_records()
    })
    .await
    .unwrap();
    let duplicates = ordered::check(&committed, &expected).unwrap();
    assert_eq!(duplicates, 0, "read_committed saw duplicates");
    assert_eq!(committed.len() as u64, total);
    let metrics = leader.metrics();
    for slot in shard_slots(&setup) {
        let series = format!("outbox_relay_confirmed_flush_lsn{{slot=\"{slot}\"}}");
        assert!(
            metric_value(&metrics, &series).is_some_and(|v| v > 0.0),
            "{series}"
        );
    }
    eprintln!("{total} events through 3 leader kills: 0 duplicates read_committed");

    assert!(standby.terminate(Duration::from_secs(30)).success());
    assert!(leader.terminate(Duration::from_secs(30)).success());
    cleanup_shards(&client, &setup, &[&table]).await;
}

/// docs/scaling.md's re-sharding without a write pause (procedure B), from one slot to 4
/// shards under load: the new publications and slots are created while the old relay
/// runs, the old relay stops once its slot passed the new slots' start T, and the
/// sharded relay takes over. Nothing is lost, order holds, and every duplicate was
/// committed between its new shard slot's start and the old relay's exit (the documented
/// replay window).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resharding_under_load_loses_nothing_and_replays_only_the_window() {
    let name = unique("shards_reshard");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    let spec = WorkloadSpec {
        writers: 4,
        events: 15_000,
        aggregates: 200,
        ..WorkloadSpec::end_to_end(&table)
    };
    workload::prepare(&client, &spec).await;
    let old_setup = RelaySetup::new(&name, &table);
    let mut old = Relay::start(&old_setup);
    old.wait_ready(Duration::from_secs(60));
    let load = {
        let spec = spec.clone();
        tokio::spawn(async move { workload::run(&spec).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // 1. New publications first, then the new slots; T = the latest slot start.
    let new_base = format!("{name}_v2");
    let mut starts = Vec::new();
    for i in 0..SHARDS {
        client
            .batch_execute(&format!(
                "CREATE PUBLICATION {new_base}_{i} FOR TABLE {table}
                   WHERE ((hashtextextended(aggregateid, 0) & 9223372036854775807) % {SHARDS} = {i})
                   WITH (publish = 'insert')"
            ))
            .await
            .unwrap();
    }
    for i in 0..SHARDS {
        let lsn: String = client
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&format!("{new_base}_{i}")],
            )
            .await
            .unwrap()
            .get(0);
        starts.push(pg::parse_lsn(&lsn));
    }
    let t = *starts.iter().max().unwrap();
    // 2. The old slot passes T; 3. the old relay stops and the sharded one starts.
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg::confirmed_flush(&client, &old_setup.slot())
        .await
        .unwrap()
        < t
    {
        assert!(Instant::now() < deadline, "old slot never reached {t:X}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(old.terminate(Duration::from_secs(30)).success());
    // What the old relay published was committed before it exited. Its confirmed flush
    // can be lower: a transaction cut off by the shutdown may be partly published and not
    // confirmed, and is then published again, in full, by its new shard.
    let old_final = pg::parse_lsn(
        &client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
    );
    let new_setup = RelaySetup::new(&name, &table).with_env(&[
        ("RELAY__SOURCE__SHARDS", &SHARDS.to_string()),
        ("RELAY__SOURCE__SLOT", &new_base),
        ("RELAY__SOURCE__PUBLICATION", &new_base),
    ]);
    let mut new = Relay::start_replica(&new_setup, &format!("{name}-sharded"));
    new.wait_ready(Duration::from_secs(60));
    eprintln!("new slots start at {starts:X?}, old relay stopped at {old_final:X}");

    let report = load.await.unwrap();
    let expected = workload::committed_rows(&client, &table).await;
    assert_eq!(expected.len(), report.committed_events);
    let prefix = old_setup.topic_prefix.clone();
    let want = expected.len();
    let records = tokio::task::spawn_blocking(move || {
        let mut reader = TopicReader::new(&prefix);
        reader.read_distinct_ids(want, Duration::from_secs(120));
        reader.into_records()
    })
    .await
    .unwrap();
    let verdict = workload::assert_delivered(
        &records,
        &expected,
        &old_setup.topic_prefix,
        "reshard",
        &new,
    );
    let commit_of: HashMap<&[u8], u64> = records
        .iter()
        .map(|r| {
            (
                r.header("id").unwrap(),
                pg::parse_lsn(&r.header_str("outbox-relay-commit-lsn").unwrap()),
            )
        })
        .collect();
    // The window is per shard: from its new slot's start to the old relay's stop.
    let shard_of = shard_of_aggregates(&client, &table).await;
    for (id, copies) in &verdict.duplicates {
        let commit = commit_of[id.as_bytes()];
        let shard = shard_of[&expected[id].aggregate_id];
        let start = starts[shard];
        assert!(
            *copies == 2 && commit >= start && commit <= old_final,
            "event {id} (shard {shard}, commit {commit:X}) arrived {copies} times; only events committed between its new slot's start {start:X} and the old relay's stop {old_final:X} may arrive twice"
        );
    }
    eprintln!(
        "{} records, {} distinct, {} replayed in the window",
        records.len(),
        verdict.distinct,
        verdict.duplicates.len()
    );

    assert!(new.terminate(Duration::from_secs(30)).success());
    let new_shards = RelaySetup::new(&new_base, &table);
    cleanup_shards(&client, &new_shards, &[]).await;
    pg::cleanup(
        &client,
        &old_setup.slot(),
        &old_setup.publication(),
        &[&table, &workload::versions_table(&table)],
    )
    .await;
}
