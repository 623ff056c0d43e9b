//! Snapshots (issue 10 item 2): `source.snapshot: initial` publishes the rows already in
//! the outbox table, `source.on_slot_lost: snapshot` repairs a lost slot from the rows
//! still there; both then stream from the new slot's consistent point. Every row
//! arrives, each aggregate in order, and the only duplicates are of events already
//! published.
//!
//! Before: rows written before the slot existed were never published, and
//! `on_slot_lost: snapshot` was refused by the configuration.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use outbox_relay_tests::relay::{Relay, RelaySetup};
use outbox_relay_tests::{ordered, pg, unique};
use tokio_postgres::Client;

const COMPLETED: &str = "outbox_relay_snapshots_completed_total";
const SNAPSHOT_ROWS: &str = "outbox_relay_snapshot_rows_total";

fn setup(name: &str, table: &str, env: &[(&str, &str)]) -> RelaySetup {
    let mut setup = RelaySetup::new(name, table).with_env(env);
    setup.table_extra = "      snapshot_order_by: [seq]\n".into();
    setup
}

fn wait_metric(relay: &mut Relay, series: &str, at_least: f64, timeout: Duration) -> f64 {
    let start = Instant::now();
    loop {
        let v = relay.metric(series).unwrap_or(0.0);
        if v >= at_least {
            return v;
        }
        if let Some(status) = relay.try_wait() {
            panic!("relay exited with {status}; log:\n{}", relay.log_tail());
        }
        assert!(
            start.elapsed() < timeout,
            "{series} stayed at {v} (want {at_least}); log:\n{}",
            relay.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn join(
    writers: Vec<tokio::task::JoinHandle<BTreeMap<String, u64>>>,
) -> BTreeMap<String, u64> {
    let mut expected = BTreeMap::new();
    for w in writers {
        expected.extend(w.await.unwrap());
    }
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_initial_publishes_100k_existing_rows_while_8_writers_write() {
    let name = unique("snap_initial");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    ordered::create_table(&client, &table).await;
    ordered::prefill(&client, &table, "agg-", 1000, 100).await;
    let setup = setup(&name, &table, &[("RELAY__SOURCE__SNAPSHOT", "initial")]);

    // The writers continue the same aggregates, before, during and after the slot's
    // creation and the snapshot.
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let writers = ordered::spawn_writers(&table, "agg-", 8, 1000, 100, Duration::ZERO, stop_rx);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let mut relay = Relay::start(&setup);
    wait_metric(&mut relay, COMPLETED, 1.0, Duration::from_secs(60));
    let snapshot_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.send(true).unwrap();
    let expected = join(writers).await;
    let total: u64 = expected.values().sum();

    let records = ordered::read_all(&setup.topic_prefix, &expected, Duration::from_secs(30)).await;
    assert_eq!(
        ordered::check(&records, &expected),
        Ok(0),
        "exact set, each aggregate in order, no duplicates"
    );
    let snapshot_rows = relay.metric(SNAPSHOT_ROWS).unwrap();
    assert!(
        (100_000.0..total as f64).contains(&snapshot_rows),
        "{snapshot_rows} snapshot rows of {total}"
    );
    assert_eq!(relay.metric(COMPLETED), Some(1.0));
    eprintln!(
        "{total} events ({snapshot_rows} from the snapshot), snapshot delivered {snapshot_secs:.1} s after the start"
    );
    relay.terminate(Duration::from_secs(30));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_the_snapshot_leads_to_a_new_one_and_nothing_is_lost() {
    let name = unique("snap_crash");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    ordered::create_table(&client, &table).await;
    ordered::prefill(&client, &table, "agg-", 500, 100).await;
    let mut setup = setup(&name, &table, &[("RELAY__SOURCE__SNAPSHOT", "initial")]);
    // A small budget: the snapshot is handed over in many steps.
    setup.inflight_bytes = 64 * 1024;
    let mut relay = Relay::start(&setup);
    // Killed with part of the snapshot delivered (the budget holds a few hundred
    // events), most of it not.
    wait_metric(&mut relay, SNAPSHOT_ROWS, 10_000.0, Duration::from_secs(60));
    relay.kill9();
    assert_ne!(relay.metric(COMPLETED), Some(1.0));
    let pending: i64 = client
        .query_one(
            "SELECT count(*) FROM outbox_relay.snapshot WHERE slot = $1",
            &[&setup.slot()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 1, "the incomplete snapshot is marked");
    // Written after the first slot's consistent point: in its stream only.
    for a in 0..10 {
        ordered::insert(&client, &table, &format!("agg-{a}"), 101).await;
    }

    let mut relay = Relay::start(&setup);
    wait_metric(&mut relay, COMPLETED, 1.0, Duration::from_secs(60));
    let mut expected: BTreeMap<String, u64> = (0..500).map(|a| (format!("agg-{a}"), 100)).collect();
    for a in 0..10 {
        expected.insert(format!("agg-{a}"), 101);
    }
    let records = ordered::read_all(&setup.topic_prefix, &expected, Duration::from_secs(30)).await;
    let duplicates = ordered::check(&records, &expected);
    assert!(
        duplicates.as_ref().is_ok_and(|d| *d > 0 && *d < 50_000),
        "duplicates: {duplicates:?} (some of the first snapshot's events, not the whole table)"
    );
    let pending: i64 = client
        .query_one(
            "SELECT count(*) FROM outbox_relay.snapshot WHERE slot = $1",
            &[&setup.slot()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        pending, 0,
        "the mark is cleared once the snapshot is delivered"
    );
    assert!(relay
        .log_text()
        .contains("a snapshot of this slot did not finish"));
    eprintln!(
        "{} duplicates of the first, killed snapshot",
        duplicates.unwrap()
    );
    relay.terminate(Duration::from_secs(30));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

async fn drop_slot(client: &Client, slot: &str) {
    for _ in 0..100 {
        client
            .execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL",
                &[&slot],
            )
            .await
            .unwrap();
        if client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("could not drop slot {slot}");
}

/// aggregates agg-0..agg-9, events from+1..=to each.
async fn write_range(client: &Client, table: &str, from: u64, to: u64) {
    for n in from + 1..=to {
        for a in 0..10 {
            ordered::insert(client, table, &format!("agg-{a}"), n).await;
        }
    }
}

fn upto(n: u64) -> BTreeMap<String, u64> {
    (0..10).map(|a| (format!("agg-{a}"), n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_dropped_while_the_relay_runs_is_repaired_by_a_snapshot() {
    let name = unique("snap_lost_run");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    ordered::create_table(&client, &table).await;
    let setup = setup(
        &name,
        &table,
        &[("RELAY__SOURCE__ON_SLOT_LOST", "snapshot")],
    );
    let slot = setup.slot();
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    write_range(&client, &table, 0, 5).await;
    let records = ordered::read_all(&setup.topic_prefix, &upto(5), Duration::from_secs(30)).await;
    assert_eq!(ordered::check(&records, &upto(5)), Ok(0));

    // Frozen, so it cannot reconnect in between; the slot dropped; rows written while
    // no slot exists.
    signal(relay.pid(), "-STOP");
    drop_slot(&client, &slot).await;
    write_range(&client, &table, 5, 8).await;
    signal(relay.pid(), "-CONT");
    wait_metric(&mut relay, COMPLETED, 1.0, Duration::from_secs(60));
    write_range(&client, &table, 8, 10).await;

    let records = ordered::read_all(&setup.topic_prefix, &upto(10), Duration::from_secs(30)).await;
    // Every row still in the table is published again: the 50 delivered before the
    // loss are the only duplicates.
    assert_eq!(ordered::check(&records, &upto(10)), Ok(50));
    assert!(relay
        .log_text()
        .contains("replication slot lost; creating a new one"));
    relay.terminate(Duration::from_secs(30));
    pg::cleanup(&client, &slot, &setup.publication(), &[&table]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_dropped_while_the_relay_is_down_is_repaired_and_cleanup_leaves_no_duplicates() {
    let name = unique("snap_lost_down");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    ordered::create_table(&client, &table).await;
    let setup = setup(
        &name,
        &table,
        &[
            ("RELAY__SOURCE__ON_SLOT_LOST", "snapshot"),
            ("RELAY__OUTBOX__CLEANUP", "delete_published"),
        ],
    );
    let slot = setup.slot();
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    write_range(&client, &table, 0, 5).await;
    let records = ordered::read_all(&setup.topic_prefix, &upto(5), Duration::from_secs(30)).await;
    assert_eq!(ordered::check(&records, &upto(5)), Ok(0));
    // Delivered rows are deleted.
    let start = Instant::now();
    while ordered::count(&client, &table).await > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "rows not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = relay.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    pg::confirmed_flush_when_inactive(&client, &slot).await;
    drop_slot(&client, &slot).await;
    write_range(&client, &table, 5, 8).await;

    let mut relay = Relay::start(&setup);
    wait_metric(&mut relay, COMPLETED, 1.0, Duration::from_secs(60));
    write_range(&client, &table, 8, 10).await;
    let records = ordered::read_all(&setup.topic_prefix, &upto(10), Duration::from_secs(30)).await;
    // Only the undelivered rows were still in the table: no duplicate at all.
    assert_eq!(ordered::check(&records, &upto(10)), Ok(0));
    assert_eq!(relay.metric(SNAPSHOT_ROWS), Some(30.0));
    let start = Instant::now();
    while ordered::count(&client, &table).await > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "rows not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    relay.terminate(Duration::from_secs(30));
    pg::cleanup(&client, &slot, &setup.publication(), &[&table]).await;
}
