//! Debezium Outbox Event Router options the relay maps (docs/migrating-from-debezium.md)
//! against the real Kafka: `route.topic.regex` / `route.topic.replacement` as
//! `outbox.route.{regex,replacement}` (set from the environment as a deployment would),
//! and `column:partition` as `outbox.tables[].partition_column`, including an event
//! parked behind an invalid one and redriven to the partition its row names, and a
//! partition the topic does not have.

use std::process::Command;
use std::time::Duration;

use outbox_relay_tests::kafka::{Record, TopicReader};
use outbox_relay_tests::relay::{Relay, RelaySetup};
use outbox_relay_tests::{env, pg, unique};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

/// Runs `outbox-relay parked <args> --output json` with the relay's configuration (its
/// file and its environment); (exit code, parsed JSON).
fn parked(relay: &Relay, setup: &RelaySetup, args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(env::relay_bin())
        .envs(setup.env.iter().map(|(k, v)| (k, v)))
        .arg("--config")
        .arg(&relay.config)
        .arg("parked")
        .args(args)
        .args(["--output", "json"])
        .output()
        .expect("run outbox-relay parked");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with('[') || l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(line).unwrap(),
    )
}

async fn create_topic(topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .create()
        .expect("admin client");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for r in admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .expect("create topic")
    {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

fn n_of(r: &Record) -> i64 {
    let v: serde_json::Value = serde_json::from_slice(r.payload.as_ref().unwrap()).unwrap();
    v["n"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_routes_and_partition_column_including_parked_and_redriven_events() {
    let name = unique("dbzopt");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", true).await;
    client
        .batch_execute(&format!("ALTER TABLE {table} ADD COLUMN shard integer"))
        .await
        .unwrap();
    let mut setup = RelaySetup::new(&name, &table);
    let topic = format!("{}.Order.events", setup.topic_prefix);
    create_topic(&topic, 4).await;
    // Debezium's defaults for the regex, a replacement of the deployment's own.
    setup.route_template = Some(String::new());
    setup.table_extra = "      partition_column: shard\n".into();
    let replacement = format!("{}.${{routedByValue}}.events", setup.topic_prefix);
    let setup = setup.with_env(&[
        ("RELAY__OUTBOX__ROUTE__REGEX", "(?<routedByValue>.*)"),
        ("RELAY__OUTBOX__ROUTE__REPLACEMENT", &replacement),
    ]);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    let row = |agg: &str, n: i64, ty: &str, shard: &str| {
        format!("INSERT INTO {table} (aggregatetype, aggregateid, type, payload, shard) VALUES ('Order', '{agg}', {ty}, '{{\"n\": {n}}}', {shard});")
    };
    // A on partition 2 by its column, B by key (NULL), C1 invalid (NULL type) so C2 is
    // parked behind it, D names a partition the 4-partition topic lacks.
    client
        .batch_execute(&format!(
            "BEGIN; {} {} {} {} COMMIT; BEGIN; {} {} {} {} COMMIT;",
            row("A", 1, "'T'", "2"),
            row("B", 1, "'T'", "NULL"),
            row("C", 1, "NULL", "3"),
            row("D", 1, "'T'", "9"),
            row("A", 2, "'T'", "2"),
            row("B", 2, "'T'", "NULL"),
            row("C", 2, "'T'", "3"),
            row("A", 3, "'T'", "2"),
        ))
        .await
        .unwrap();
    let direct = {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            let mut r = TopicReader::exact(&topic);
            r.read_at_least(5, Duration::from_secs(60));
            r.read_until(Duration::from_secs(2), |_| false);
            r.into_records()
        })
        .await
        .unwrap()
    };
    let of = |records: &[Record], agg: &str| -> Vec<(i32, i64)> {
        records
            .iter()
            .filter(|r| r.key_str() == agg)
            .map(|r| (r.partition, n_of(r)))
            .collect()
    };
    assert_eq!(
        of(&direct, "A"),
        vec![(2, 1), (2, 2), (2, 3)],
        "{direct:#?}"
    );
    let b = of(&direct, "B");
    assert_eq!(b.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(b[0].0, b[1].0, "by key: one partition");
    assert!(of(&direct, "C").is_empty() && of(&direct, "D").is_empty());
    assert_eq!(direct.len(), 5);

    // The parked rows keep their partitions.
    let parked_rows: Vec<(String, Option<i32>, String)> = client
        .query(
            "SELECT aggregate_id, kafka_partition, reason FROM outbox_relay.parked
              WHERE slot = $1 ORDER BY aggregate_id, commit_lsn, seq",
            &[&setup.slot()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        parked_rows,
        vec![
            ("C".to_string(), None, "null_event_type".to_string()),
            ("C".to_string(), Some(3), "behind_parked".to_string()),
            ("D".to_string(), Some(9), "unknown_topic".to_string()),
        ]
    );

    // Discard C1, redrive C: C2 goes to partition 3, as its row says.
    let (_, listed) = parked(&relay, &setup, &["list", "--aggregate", "C"]);
    let c1 = listed[0]["event_id"].as_str().unwrap().to_string();
    let (code, out) = parked(&relay, &setup, &["discard", "--event-id", &c1]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = parked(&relay, &setup, &["redrive", "--aggregate", "C"]);
    assert_eq!(code, 0, "{out}");
    let all = tokio::task::spawn_blocking(move || {
        let mut r = TopicReader::exact(&topic);
        r.read_at_least(6, Duration::from_secs(60));
        r.read_until(Duration::from_secs(2), |_| false);
        r.into_records()
    })
    .await
    .unwrap();
    assert_eq!(of(&all, "C"), vec![(3, 2)]);
    assert_eq!(all.len(), 6);

    relay.terminate(Duration::from_secs(30));
    let _ = parked(&relay, &setup, &["discard", "--all"]);
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}

/// The cut-over's core (docs/migrating-from-debezium.md, steps 2, 6 and 7): a slot
/// created while the old publisher runs, then advanced to the old publisher's confirmed
/// position, is exactly where the relay starts: nothing committed before it is published,
/// everything after it is, in order, including what was written before the relay started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_slot_advanced_to_the_old_publishers_position_starts_exactly_there() {
    let name = unique("dbzcut");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let setup = RelaySetup::new(&name, &table);
    // The publication exists before the slot, so the slot can decode from its start.
    client
        .batch_execute(&format!(
            "CREATE PUBLICATION {} FOR TABLE {table} WITH (publish = 'insert')",
            setup.publication()
        ))
        .await
        .unwrap();
    // Its own statement: a slot cannot be created in a transaction that wrote.
    client
        .batch_execute(&format!(
            "SELECT * FROM pg_create_logical_replication_slot('{}', 'pgoutput')",
            setup.slot()
        ))
        .await
        .unwrap();
    let insert = |n: i64| {
        format!("INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'A', 'T', '{{\"n\": {n}}}');")
    };
    // Commits durable at once (the test cluster runs with synchronous_commit off): a slot
    // is advanced no further than the WAL flushed.
    client
        .batch_execute("SET synchronous_commit = on")
        .await
        .unwrap();
    // 1..3: the old publisher's, confirmed by it up to `old_confirmed`.
    for n in 1..=3 {
        client.batch_execute(&insert(n)).await.unwrap();
    }
    let old_confirmed: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    // 4..5: committed after the old publisher stopped, before the relay starts.
    for n in 4..=5 {
        client.batch_execute(&insert(n)).await.unwrap();
    }
    let advanced: String = client
        .query_one(
            "SELECT end_lsn::text FROM pg_replication_slot_advance($1, $2::text::pg_lsn)",
            &[&setup.slot(), &old_confirmed],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(advanced, old_confirmed);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    client.batch_execute(&insert(6)).await.unwrap();
    let topic = format!("{}.Order", setup.topic_prefix);
    let records = tokio::task::spawn_blocking(move || {
        let mut r = TopicReader::exact(&topic);
        r.read_at_least(3, Duration::from_secs(60));
        r.read_until(Duration::from_secs(2), |_| false);
        r.into_records()
    })
    .await
    .unwrap();
    assert_eq!(
        records.iter().map(n_of).collect::<Vec<_>>(),
        vec![4, 5, 6],
        "{records:#?}"
    );
    relay.terminate(Duration::from_secs(30));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}
