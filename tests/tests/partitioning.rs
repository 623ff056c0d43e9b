//! Issue 11 item 7: a key must land on the partition the Java client (Debezium, any Java
//! producer) puts it on, or cutting over from Debezium, or sharing a topic with a Java
//! producer, breaks per-aggregate order at the switch.
//!
//! For 1, 3, 7 and 12 partitions the same keys are produced by Kafka's own Java console
//! producer to one topic and by the relay (from outbox rows) to another with the same
//! partition count; every key must be on the same partition in both. The keys include
//! the vectors of Kafka's `UtilsTest.testMurmur2`, whose partitions are also checked
//! against the hash values Kafka's test asserts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use outbox_relay_tests::kafka::{Record, TopicReader};
use outbox_relay_tests::relay::{Relay, RelaySetup};
use outbox_relay_tests::{env, pg, unique};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

const PARTITION_COUNTS: [i32; 4] = [1, 3, 7, 12];

/// Kafka's `UtilsTest.testMurmur2`: key → `Utils.murmur2(key bytes)`.
const JAVA_MURMUR2: [(&str, i32); 6] = [
    ("21", -973932308),
    ("foobar", -790332482),
    ("a-little-bit-long-string", -985981536),
    ("a-little-bit-longer-string", -1486304829),
    (
        "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
        -58897971,
    ),
    ("abc", 479470107),
];

fn keys() -> Vec<String> {
    let mut keys: Vec<String> = JAVA_MURMUR2.iter().map(|(k, _)| k.to_string()).collect();
    keys.extend((1..=40).map(|i| format!("order-{i}")));
    keys.extend(
        [
            "x",
            " ",
            "é",
            "Straße",
            "日本語のキー",
            "🦀 crab",
            "a b  c",
            "9f1c2e4a-6b7d-4c3e-8f21-0a5b6c7d8e9f",
            "{\"json\":1}",
            &"long-".repeat(50),
        ]
        .map(String::from),
    );
    keys
}

/// Java's `Utils.toPositive(murmur2(key)) % partitions`.
fn java_partition(hash: i32, partitions: i32) -> i32 {
    (hash & 0x7fff_ffff) % partitions
}

/// The Kafka install's jars (`deploy/local/kafka.sh` puts them under the cache).
fn kafka_libs() -> PathBuf {
    let cache = std::env::var("OUTBOX_RELAY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/outbox-relay")
        });
    std::fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("{}: {e}; run deploy/local/kafka.sh start", cache.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("libs"))
        .find(|libs| {
            std::fs::read_dir(libs).is_ok_and(|mut d| {
                d.any(|f| {
                    f.is_ok_and(|f| f.file_name().to_string_lossy().starts_with("kafka-tools-"))
                })
            })
        })
        .unwrap_or_else(|| panic!("no kafka-*/libs with kafka-tools under {}", cache.display()))
}

/// Produces `key<TAB>key` lines with Kafka's Java console producer (default partitioner).
fn produce_with_java(topic: &str, keys: &[String]) {
    let mut child = Command::new("java")
        .arg("-cp")
        .arg(format!("{}/*", kafka_libs().display()))
        .arg("org.apache.kafka.tools.ConsoleProducer")
        .args([
            "--bootstrap-server",
            &env::kafka_bootstrap(),
            "--topic",
            topic,
        ])
        .args(["--reader-property", "parse.key=true"])
        .args(["--reader-property", "key.separator=\t"])
        .args(["--producer-property", "acks=all"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("java (Kafka's console producer)");
    let mut stdin = child.stdin.take().unwrap();
    for k in keys {
        writeln!(stdin, "{k}\t{k}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "console producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn create_topics(topics: &[(String, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .create()
        .expect("admin client");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(t, n)| NewTopic::new(t, *n, TopicReplication::Fixed(1)))
        .collect();
    for r in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .expect("create topics")
    {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

/// key → partition for the records of `topic`, each key on exactly one partition.
fn partitions_by_key(records: &[Record], topic: &str) -> BTreeMap<String, i32> {
    let mut out = BTreeMap::new();
    for r in records.iter().filter(|r| r.topic == topic) {
        let key = r.key_str();
        if let Some(p) = out.insert(key.clone(), r.partition) {
            assert_eq!(p, r.partition, "{topic}: key {key:?} on two partitions");
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_on_the_partition_the_java_client_puts_them_on() {
    let name = unique("partitioning");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let setup = RelaySetup::new(&name, &table);
    let prefix = setup.topic_prefix.clone();
    let relay_topic = |n: i32| format!("{prefix}.relay-p{n}");
    let java_topic = |n: i32| format!("{prefix}.java-p{n}");
    let topics: Vec<(String, i32)> = PARTITION_COUNTS
        .iter()
        .flat_map(|&n| [(relay_topic(n), n), (java_topic(n), n)])
        .collect();
    create_topics(&topics).await;

    let keys = keys();
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    for n in PARTITION_COUNTS {
        for k in &keys {
            client
                .execute(
                    &format!(
                        "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) \
                         VALUES ($1, $2, 'KeyPlaced', '{{}}')"
                    ),
                    &[&format!("relay-p{n}"), k],
                )
                .await
                .unwrap();
        }
    }
    let java_keys = keys.clone();
    let java_topics: Vec<String> = PARTITION_COUNTS.iter().map(|&n| java_topic(n)).collect();
    tokio::task::spawn_blocking(move || {
        for t in &java_topics {
            produce_with_java(t, &java_keys);
        }
    })
    .await
    .unwrap();

    let want = keys.len() * topics.len();
    let reader_prefix = prefix.clone();
    let records = tokio::task::spawn_blocking(move || {
        let mut reader = TopicReader::new(&reader_prefix);
        reader.read_at_least(want, Duration::from_secs(60));
        reader.into_records()
    })
    .await
    .unwrap();
    assert_eq!(records.len(), want, "relay log:\n{}", relay.log_tail());

    let mut moved = Vec::new();
    for n in PARTITION_COUNTS {
        let by_relay = partitions_by_key(&records, &relay_topic(n));
        let by_java = partitions_by_key(&records, &java_topic(n));
        assert_eq!(by_relay.len(), keys.len(), "{n} partitions: relay keys");
        assert_eq!(by_java.len(), keys.len(), "{n} partitions: java keys");
        for k in &keys {
            if by_relay[k] != by_java[k] {
                moved.push(format!(
                    "{n} partitions: key {k:?} relay {} java {}",
                    by_relay[k], by_java[k]
                ));
            }
        }
        for (k, hash) in JAVA_MURMUR2 {
            assert_eq!(
                by_java[k],
                java_partition(hash, n),
                "the Java producer itself follows murmur2 ({n} partitions, key {k:?})"
            );
        }
    }
    assert!(
        moved.is_empty(),
        "{} of {} keys on a different partition than the Java client puts them:\n{}",
        moved.len(),
        keys.len() * PARTITION_COUNTS.len(),
        moved.join("\n")
    );

    relay.terminate(Duration::from_secs(30));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}
