//! PostgreSQL restarts under load. The relay must ride through them on its own: the same
//! process, not ready while the source is gone, reconnecting with backoff, resuming from
//! the slot's confirmed flush; and in the end every committed event published, byte-exact
//! and in per-aggregate commit order. Replays are allowed (at-least-once).
//!
//! Six restarts, while eight writers commit: three `fast` (sessions terminated,
//! walsenders cut off after the shutdown checkpoint) and three `immediate` (a crash: no
//! checkpoint, recovery from WAL; the slot comes back as of the last checkpoint). In both
//! cases PostgreSQL 15 resends from an older slot position than the relay confirmed; the
//! relay's own durable progress record makes it skip what it already delivered (issue
//! 19), so the only duplicates left are events delivered after the record's last write
//! before the restart — each one is checked against the record read just before it.
//! This binary restarts the shared project cluster, so it holds no other test: cargo
//! runs test binaries one after another.

use std::time::{Duration, Instant};

use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::relay::{metric_sum, Relay, RelaySetup};
use outbox_relay_tests::workload::{self, WorkloadSpec};
use outbox_relay_tests::{pg, unique};

async fn committed_count(table: &str) -> i64 {
    let client = pg::connect_retrying(Duration::from_secs(60)).await;
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

/// Waits (up to a minute) until `metric` (summed over its series) is at least `min`.
fn wait_metric(relay: &mut Relay, metric: &str, min: f64) {
    let start = Instant::now();
    loop {
        if let Some(status) = relay.try_wait() {
            panic!("relay exited with {status}; log:\n{}", relay.log_tail());
        }
        if metric_sum(&relay.metrics(), metric, &[]) >= min {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{metric} did not reach {min}; log:\n{}",
            relay.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarts_under_load_lose_nothing_and_the_relay_rides_through() {
    let name = unique("pgrestart");
    let table = format!("{name}_outbox");
    let mut spec = WorkloadSpec::end_to_end(&table);
    spec.events = 30_000;
    {
        let client = pg::connect().await;
        workload::prepare(&client, &spec).await;
    }
    let mut setup = RelaySetup::new(&name, &table);
    setup.inflight_bytes = 1024 * 1024;
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    let pid = relay.pid();

    let load = {
        let spec = spec.clone();
        tokio::spawn(async move { workload::run(&spec).await })
    };
    let published = "outbox_relay_events_published_total";
    let modes = [
        "fast",
        "immediate",
        "fast",
        "immediate",
        "fast",
        "immediate",
    ];
    // Per restart: the relay's record just before it, and the server's WAL insert
    // position just after it. A replayed event must have been committed between the two
    // for one of the restarts (the record only grows until the restart happens).
    let mut windows: Vec<(u64, u64)> = Vec::new();
    for (k, mode) in modes.into_iter().enumerate() {
        // Restart at k/7 of the load, so events are in flight and more follow.
        let at = (k as i64 + 1) * spec.events as i64 / (modes.len() as i64 + 1);
        while committed_count(&table).await < at {
            assert!(!load.is_finished(), "the load ended before {at} events");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let sent_before = metric_sum(&relay.metrics(), published, &[]);
        let client = pg::connect_retrying(Duration::from_secs(60)).await;
        let recorded = pg::recorded_progress(&client, &setup.slot())
            .await
            .unwrap_or(0);
        drop(client);
        let t = Instant::now();
        tokio::task::spawn_blocking(move || pg::restart(mode))
            .await
            .unwrap();
        eprintln!(
            "restart {mode} at {at} committed rows took {:.1}s; relay had published {sent_before}",
            t.elapsed().as_secs_f64()
        );
        let client = pg::connect_retrying(Duration::from_secs(60)).await;
        let after: String = client
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .unwrap()
            .get(0);
        windows.push((recorded, pg::parse_lsn(&after)));
        drop(client);
        // The relay noticed (a session restart), came back by itself, and publishes again.
        wait_metric(&mut relay, "outbox_relay_restarts_total", k as f64 + 1.0);
        relay.wait_ready(Duration::from_secs(60));
        wait_metric(&mut relay, published, sent_before + 1.0);
        assert_eq!(relay.pid(), pid);
    }
    let report = load.await.unwrap();
    let client = pg::connect_retrying(Duration::from_secs(60)).await;
    let expected = workload::committed_rows(&client, &table).await;
    eprintln!("workload: {report:?}; committed rows {}", expected.len());
    // A COMMIT cut off by the restart may have landed (at most 100 rows each): the table
    // is the ground truth, but it must agree with what the writers saw otherwise.
    assert!(
        expected.len() >= report.committed_events
            && expected.len() <= report.committed_events + 100 * report.ambiguous_commits,
        "{} rows in the table, writers committed {} (+ {} ambiguous commits)",
        expected.len(),
        report.committed_events,
        report.ambiguous_commits
    );

    let prefix = setup.topic_prefix.clone();
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
        &setup.topic_prefix,
        "pg_restart",
        &relay,
    );
    let replayed: usize = verdict.duplicates.iter().map(|(_, n)| n - 1).sum();
    let skipped = relay.metric("outbox_relay_replayed_transactions_skipped_total");
    eprintln!(
        "{} records, {} distinct, {replayed} replayed copies, {skipped:?} replayed transactions skipped, relay restarts {:?}",
        records.len(),
        verdict.distinct,
        relay.metric("outbox_relay_restarts_total")
    );
    // Every duplicate is explained: its commit lies between the relay's record before one
    // of the restarts and the end of WAL right after it (delivered after the record's last
    // write before the restart, or in flight).
    let duplicated: std::collections::HashSet<&str> = verdict
        .duplicates
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    for r in &records {
        let id = r.header_str("id").unwrap();
        if !duplicated.contains(id.as_str()) {
            continue;
        }
        let commit = pg::parse_lsn(&r.header_str("outbox-relay-commit-lsn").unwrap());
        assert!(
            windows.iter().any(|(from, to)| (*from..*to).contains(&commit)),
            "event {id} (commit {commit:X}) was replayed although the relay had recorded it delivered (record, WAL end per restart: {windows:X?})"
        );
    }
    assert!(
        skipped.unwrap_or(0.0) > 0.0,
        "the server resent delivered transactions after the restarts and the relay skipped none"
    );

    let status = relay.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    pg::cleanup(
        &client,
        &setup.slot(),
        &setup.publication(),
        &[&table, &workload::versions_table(&table)],
    )
    .await;
}
