//! The whole Kafka broker down while 8 writers keep going (issue 9): with
//! `circuit_breaker.on_open: park` the circuit opens, what is bound for Kafka goes to the
//! parking table, and the slot keeps advancing, so WAL does not pile up; when the broker
//! is back the circuit half-opens and closes, the redriver sends every parked aggregate
//! again, and every committed event arrives, in order per aggregate.
//!
//! With `on_open: stall` the same outage parks nothing: events wait, the slot holds the
//! WAL, and after recovery everything arrives in order; the circuit's metrics are the same.
//!
//! `OUTBOX_RELAY_OUTAGE_SECS` sets the outage (default 60 s with park, 30 s with stall;
//! `tests/outage.sh` runs the 10-minute variant).
//!
//! These tests stop and start the shared local broker (deploy/local/kafka.sh): they take
//! turns (`BROKER`), and cargo runs test binaries one after another.

use std::process::Command;
use std::time::{Duration, Instant};

use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::relay::{metric_sum, Relay, RelaySetup};
use outbox_relay_tests::workload::{self, WorkloadSpec};
use outbox_relay_tests::{env, pg, unique};

fn kafka_sh(cmd: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/kafka.sh");
    let status = Command::new(script).arg(cmd).status().expect("kafka.sh");
    assert!(status.success(), "kafka.sh {cmd} failed");
}

/// Starts the broker again even when the test fails half-way.
struct BrokerBack;
impl Drop for BrokerBack {
    fn drop(&mut self) {
        kafka_sh("start");
    }
}

async fn retained_wal(client: &tokio_postgres::Client, slot: &str) -> i64 {
    client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0)
}

/// One outage at a time: both tests stop the broker.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn outage_secs(default: u64) -> Duration {
    Duration::from_secs(
        std::env::var("OUTBOX_RELAY_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_broker_down_for_a_while_parks_diverted_events_and_redrives_them_in_order() {
    let _turn = BROKER.lock().await;
    outage("park", outage_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_on_open_stall_the_same_outage_parks_nothing_and_loses_nothing() {
    let _turn = BROKER.lock().await;
    outage("stall", outage_secs(30)).await;
}

async fn outage(on_open: &str, outage: Duration) {
    let parks = on_open == "park";
    let name = unique("outage");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    let mut spec = WorkloadSpec::end_to_end(&table);
    // Enough for the writers to keep going through the outage (they stop at the count).
    spec.events = 400 * outage.as_secs() as usize + 10_000;
    workload::prepare(&client, &spec).await;
    let mut setup = RelaySetup::new(&name, &table);
    setup.sink_yaml = Some(format!(
        "  kind: kafka
  kafka:
    brokers: {}
    circuit_breaker:
      failure_threshold: 3
      open_initial_ms: 1000
      open_max_ms: 4000
      on_open: {on_open}
",
        env::kafka_bootstrap()
    ));
    let mut relay = Relay::start(&setup);
    relay.wait_replicating(Duration::from_secs(60));

    // Writers at a steady pace for the whole outage: 8 writers, ~400 events/s.
    let writers = {
        let mut spec = spec.clone();
        spec.events = usize::MAX;
        let rate_limited = spec.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = tokio::spawn(async move { workload::run_paced(&rate_limited, 400, s).await });
        (handle, stop)
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    let back = BrokerBack;
    kafka_sh("stop");
    let down_at = Instant::now();

    // The circuit opens; with park, events are parked instead of waiting.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = relay.metrics();
        let opened = metric_sum(
            &m,
            "outbox_relay_circuit_transitions_total",
            &["state=\"open\""],
        ) >= 1.0;
        let parked = metric_sum(&m, "outbox_relay_parked_events", &[]) > 0.0;
        if opened && (parked || !parks) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "opened {opened}, parked {parked}:\n{}",
            relay.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let first = pg::confirmed_flush(&client, &setup.slot()).await.unwrap();
    let mut retained = Vec::new();
    while down_at.elapsed() < outage {
        tokio::time::sleep(Duration::from_secs(5)).await;
        retained.push(retained_wal(&client, &setup.slot()).await);
    }
    let last = pg::confirmed_flush(&client, &setup.slot()).await.unwrap();
    // (+ 0.0: an absent gauge sums to -0.0, which would print as "-0")
    let parked_during = metric_sum(&relay.metrics(), "outbox_relay_parked_events", &[]) + 0.0;
    let max_retained = *retained.iter().max().unwrap();
    if parks {
        // The slot keeps advancing while the broker is down, and retained WAL stays
        // bounded (a few status intervals' worth, not the whole outage).
        assert!(last > first, "the slot stood still during the outage");
        assert!(
            max_retained < 32 * 1024 * 1024,
            "retained WAL grew to {max_retained} bytes: {retained:?}"
        );
    } else {
        assert_eq!(parked_during, 0.0, "stall parks nothing");
        assert!(
            *retained.last().unwrap() > retained[0],
            "with stall the slot holds the WAL: {retained:?}"
        );
    }

    drop(back);
    writers.1.store(true, std::sync::atomic::Ordering::SeqCst);
    let report = writers.0.await.unwrap();
    assert!(report.committed_events > 0);

    // After recovery: the circuit closes, the redriver empties the parking table.
    relay.wait_recovered(Duration::from_secs(180), &[]).await;

    let expected = workload::committed_rows(&client, &table).await;
    let prefix = setup.topic_prefix.clone();
    let n = expected.len();
    let records = tokio::task::spawn_blocking(move || {
        let mut r = TopicReader::new(&prefix);
        r.read_distinct_ids(n, Duration::from_secs(120));
        r.into_records()
    })
    .await
    .unwrap();
    let verdict = workload::assert_delivered(
        &records,
        &expected,
        &setup.topic_prefix,
        "after the outage",
        &relay,
    );
    eprintln!(
        "on_open {on_open}, outage {outage:?}: {} events committed, {parked_during:.0} parked at the end of the outage, {} delivered twice, max retained WAL {max_retained} B",
        expected.len(),
        verdict.duplicates.len()
    );
    if !parks {
        // The idempotent producer's own retries: nothing sent twice.
        assert!(verdict.duplicates.is_empty(), "{:?}", verdict.duplicates);
    }
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}
