//! Exactly-once into Kafka (issue 14.1), against PostgreSQL and Kafka: with
//! `sink.kafka.exactly_once` a `read_committed` consumer sees every event exactly once,
//! in order per aggregate, through SIGKILLs at random points (between produce and commit
//! too), and through a frozen leader that resumes after a standby fenced it. A
//! `read_uncommitted` consumer of the same topic sees the aborted transactions' records:
//! proof that the kills did land mid-transaction and that aborting hid them. A broker
//! SIGKILLed mid-transaction (a private one, so the shared broker stays up) aborts the
//! open transaction and nothing is lost or duplicated either.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use outbox_relay_tests::kafka::{Record, TopicReader};
use outbox_relay_tests::relay::{metric_sum, Relay, RelaySetup};
use outbox_relay_tests::{ordered, pg, unique};

/// Each event id and how often it arrived.
fn copies(records: &[Record]) -> HashMap<Vec<u8>, usize> {
    let mut seen = HashMap::new();
    for r in records {
        *seen.entry(r.header("id").unwrap().to_vec()).or_default() += 1;
    }
    seen
}

async fn read_all(topic: String, total: u64, uncommitted: bool) -> Vec<Record> {
    tokio::task::spawn_blocking(move || {
        let mut r = if uncommitted {
            TopicReader::exact_uncommitted(&topic)
        } else {
            TopicReader::exact(&topic)
        };
        r.read_distinct_ids(total as usize, Duration::from_secs(60));
        r.into_records()
    })
    .await
    .unwrap()
}

async fn finish_writers(
    stop: tokio::sync::watch::Sender<bool>,
    writers: Vec<tokio::task::JoinHandle<BTreeMap<String, u64>>>,
) -> BTreeMap<String, u64> {
    let _ = stop.send(true);
    let mut expected = BTreeMap::new();
    for w in writers {
        expected.extend(w.await.unwrap());
    }
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_at_random_points_leave_no_duplicate_for_read_committed_consumers() {
    let name = unique("eos");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    ordered::create_table(&client, &table).await;
    let setup =
        RelaySetup::new(&name, &table).with_env(&[("RELAY__SINK__KAFKA__EXACTLY_ONCE", "true")]);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writers =
        ordered::spawn_writers(&table, "agg-", 4, 40, 0, Duration::from_millis(4), stop_rx);
    let mut skipped = 0.0;
    let started = Instant::now();
    for kill in 0..20u64 {
        // 0.3 to 1.5 s of delivery, then SIGKILL wherever the relay is.
        let ms = 300 + (kill * 7919 + rand::random::<u64>()) % 1200;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        relay.kill9();
        relay = Relay::start(&setup);
        relay.wait_ready(Duration::from_secs(60));
        skipped += metric_sum(
            &relay.metrics(),
            "outbox_relay_committed_events_skipped_total",
            &[],
        );
    }
    eprintln!("20 kills in {:?}", started.elapsed());
    let expected = finish_writers(stop_tx, writers).await;
    let total: u64 = expected.values().sum();
    let topic = format!("{}.Order", setup.topic_prefix);
    let t = Instant::now();
    let committed = read_all(topic.clone(), total, false).await;
    eprintln!(
        "read_committed: {} records in {:?}",
        committed.len(),
        t.elapsed()
    );
    let duplicates = ordered::check(&committed, &expected).unwrap();
    assert_eq!(duplicates, 0, "read_committed saw duplicates");
    let ids = copies(&committed);
    assert_eq!(ids.len() as u64, total);
    assert!(ids.values().all(|n| *n == 1));

    // The same topic read_uncommitted: the aborted transactions' records are there.
    let t = Instant::now();
    let uncommitted = read_all(topic, total, true).await;
    eprintln!(
        "read_uncommitted: {} records in {:?}",
        uncommitted.len(),
        t.elapsed()
    );
    let aborted = uncommitted.len() - committed.len();
    println!(
        "{total} events through 20 SIGKILLs: 0 duplicates read_committed, {aborted} records of aborted transactions visible only read_uncommitted, {skipped} replayed events skipped at starts"
    );
    assert!(aborted > 0, "no kill landed inside a transaction");

    assert!(relay.terminate(Duration::from_secs(30)).success());
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_resumed_after_a_standby_took_over_is_fenced_and_duplicates_nothing() {
    let name = unique("eoszombie");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    ordered::create_table(&client, &table).await;
    let setup = RelaySetup::new(&name, &table).with_env(&[
        ("RELAY__SINK__KAFKA__EXACTLY_ONCE", "true"),
        ("RELAY__HA__ENABLED", "true"),
    ]);
    let (a, b) = (format!("{name}-a"), format!("{name}-b"));
    let mut old = Relay::start_replica(&setup, &a);
    old.wait_ready(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(60);
    while old.metric("outbox_relay_replicating") != Some(1.0) {
        assert!(Instant::now() < deadline, "{}", old.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut new = Relay::start_replica(&setup, &b);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writers =
        ordered::spawn_writers(&table, "agg-", 4, 40, 0, Duration::from_millis(4), stop_rx);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Frozen with a transaction open (there always is one under this load).
    old.freeze();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(new.metric("outbox_relay_leader") == Some(1.0)
        && metric_sum(&new.metrics(), "outbox_relay_events_published_total", &[]) > 0.0)
    {
        assert!(Instant::now() < deadline, "{}", new.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    old.thaw();
    let status = old.wait(Duration::from_secs(30));
    assert_ne!(status.code(), Some(0), "{}", old.log_tail());

    let expected = finish_writers(stop_tx, writers).await;
    let total: u64 = expected.values().sum();
    let topic = format!("{}.Order", setup.topic_prefix);
    let committed = read_all(topic, total, false).await;
    assert_eq!(ordered::check(&committed, &expected).unwrap(), 0);
    assert!(copies(&committed).values().all(|n| *n == 1));

    assert!(new.terminate(Duration::from_secs(30)).success());
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}

/// A broker of this test's own (deploy/local/kafka.sh with its own port and directory),
/// stopped on drop.
struct PrivateKafka {
    run: String,
}

const PRIVATE_PORT: u16 = 39092;

impl PrivateKafka {
    fn kafka_sh(&self, cmd: &str) {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/kafka.sh");
        let status = std::process::Command::new(script)
            .arg(cmd)
            .env("OUTBOX_RELAY_RUN", &self.run)
            .env("OUTBOX_RELAY_KAFKA_PORT", PRIVATE_PORT.to_string())
            .env(
                "OUTBOX_RELAY_KAFKA_CONTROLLER_PORT",
                (PRIVATE_PORT + 1).to_string(),
            )
            .env("OUTBOX_RELAY_KAFKA_BOOTSTRAP", Self::bootstrap())
            .env("OUTBOX_RELAY_KAFKA_HEAP_OPTS", "-Xms512m -Xmx512m")
            .status()
            .expect("kafka.sh");
        assert!(status.success(), "kafka.sh {cmd}");
    }

    fn bootstrap() -> String {
        format!("127.0.0.1:{PRIVATE_PORT}")
    }

    fn start() -> Self {
        let k = PrivateKafka {
            run: "/tmp/outbox-relay-eos-broker".into(),
        };
        k.kafka_sh("start");
        k
    }

    fn kill9(&self) {
        let pid = std::fs::read_to_string(format!("{}/kafka/kafka.pid", self.run)).unwrap();
        let _ = std::process::Command::new("kill")
            .args(["-9", pid.trim()])
            .status();
        std::thread::sleep(Duration::from_millis(500));
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        self.kafka_sh("stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_transaction_aborts_it_and_loses_or_duplicates_nothing() {
    let broker = PrivateKafka::start();
    let name = unique("eosbroker");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    ordered::create_table(&client, &table).await;
    let mut setup = RelaySetup::new(&name, &table);
    setup.sink_yaml = Some(format!(
        "  kind: kafka\n  kafka:\n    brokers: {}\n    exactly_once: true\n",
        PrivateKafka::bootstrap()
    ));
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writers =
        ordered::spawn_writers(&table, "agg-", 4, 40, 0, Duration::from_millis(4), stop_rx);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Under this load a transaction is always open.
    broker.kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.kafka_sh("start");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let expected = finish_writers(stop_tx, writers).await;
    let total: u64 = expected.values().sum();
    let topic = format!("{}.Order", setup.topic_prefix);
    let committed = tokio::task::spawn_blocking(move || {
        let mut r = TopicReader::exact_on(&PrivateKafka::bootstrap(), &topic);
        r.read_distinct_ids(total as usize, Duration::from_secs(120));
        r.into_records()
    })
    .await
    .unwrap();
    assert_eq!(ordered::check(&committed, &expected).unwrap(), 0);
    assert!(copies(&committed).values().all(|n| *n == 1));
    println!("{total} events through a broker SIGKILL mid-transaction: 0 duplicates, 0 lost");
    assert!(
        relay.terminate(Duration::from_secs(60)).success(),
        "{}",
        relay.log_tail()
    );
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
    drop(broker);
}
