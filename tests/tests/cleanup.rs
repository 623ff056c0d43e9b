//! `outbox.cleanup: delete_published` (issue 10 item 3): outbox rows are deleted once
//! their events are delivered, never before, so the table drains; a SIGKILL in the
//! middle of the cleanup loses no event and leaves no row behind for good.
//!
//! Before: the key did not exist (the configuration was refused) and the relay never
//! deleted a row, so the table only grew.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use outbox_relay_tests::relay::{Relay, RelaySetup};
use outbox_relay_tests::{ordered, pg, unique};

const DELETED: &str = "outbox_relay_outbox_rows_deleted_total";

fn setup(name: &str, table: &str, batch_rows: &str) -> RelaySetup {
    RelaySetup::new(name, table).with_env(&[
        ("RELAY__OUTBOX__CLEANUP", "delete_published"),
        ("RELAY__OUTBOX__CLEANUP_BATCH_ROWS", batch_rows),
    ])
}

async fn wait_empty(client: &tokio_postgres::Client, table: &str, timeout: Duration) -> i64 {
    let start = Instant::now();
    loop {
        let n = ordered::count(client, table).await;
        if n == 0 || start.elapsed() > timeout {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_published_drains_the_table_to_empty_under_load() {
    let name = unique("cleanup_drain");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    ordered::create_table(&client, &table).await;
    let setup = setup(&name, &table, "500");
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let writers = ordered::spawn_writers(&table, "agg-", 4, 40, 0, Duration::ZERO, stop_rx);
    // Rows are deleted while the writers are still writing.
    let start = Instant::now();
    let mut deleted_under_load = 0.0;
    while start.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        deleted_under_load = relay.metric(DELETED).unwrap_or(0.0);
    }
    let in_table_under_load = ordered::count(&client, &table).await;
    stop.send(true).unwrap();
    let mut expected = BTreeMap::new();
    for w in writers {
        expected.extend(w.await.unwrap());
    }
    let total: u64 = expected.values().sum();
    assert!(total > 1000, "the writers wrote only {total} rows");

    let records = ordered::read_all(&setup.topic_prefix, &expected, Duration::from_secs(30)).await;
    assert_eq!(
        ordered::check(&records, &expected),
        Ok(0),
        "exact set, in order, no duplicates"
    );
    let left = wait_empty(&client, &table, Duration::from_secs(30)).await;
    assert_eq!(
        left,
        0,
        "rows left in the table; log:\n{}",
        relay.log_tail()
    );
    assert_eq!(relay.metric(DELETED), Some(total as f64));
    assert!(
        deleted_under_load > 0.0,
        "nothing was deleted while the writers wrote"
    );
    eprintln!(
        "{total} rows written in 8 s; {deleted_under_load} deleted while writing, {in_table_under_load} in the table when the writers stopped"
    );
    relay.terminate(Duration::from_secs(30));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_mid_cleanup_loses_nothing_and_the_rest_is_deleted_after_restart() {
    let name = unique("cleanup_kill");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    ordered::create_table(&client, &table).await;
    // Ten rows per DELETE: the cleanup of 20,000 rows takes long enough to be killed in.
    let setup = setup(&name, &table, "10");
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    ordered::prefill(&client, &table, "agg-", 200, 100).await;
    let start = Instant::now();
    let deleted_at_kill = loop {
        let deleted = relay.metric(DELETED).unwrap_or(0.0);
        if deleted > 0.0 {
            break deleted;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no row deleted; log:\n{}",
            relay.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    relay.kill9();
    let left_at_kill = ordered::count(&client, &table).await;
    assert!(
        left_at_kill > 0 && deleted_at_kill < 20_000.0,
        "the kill came after the cleanup ({left_at_kill} rows left)"
    );
    // Written while the relay is down.
    for a in 0..10 {
        ordered::insert(&client, &table, &format!("agg-{a}"), 101).await;
    }

    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    let mut expected: BTreeMap<String, u64> = (0..200).map(|a| (format!("agg-{a}"), 100)).collect();
    for a in 0..10 {
        expected.insert(format!("agg-{a}"), 101);
    }
    let records = ordered::read_all(&setup.topic_prefix, &expected, Duration::from_secs(30)).await;
    let duplicates = ordered::check(&records, &expected);
    assert!(duplicates.is_ok(), "{duplicates:?}");
    let left = wait_empty(&client, &table, Duration::from_secs(30)).await;
    assert_eq!(
        left,
        0,
        "rows left after the restart; log:\n{}",
        relay.log_tail()
    );
    eprintln!(
        "killed with {left_at_kill} rows left ({deleted_at_kill} deleted); {} duplicates after the restart",
        duplicates.unwrap()
    );
    relay.terminate(Duration::from_secs(30));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}
