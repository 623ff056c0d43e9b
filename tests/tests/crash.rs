//! Crash safety: SIGKILL the relay at random points of the end-to-end load, five times,
//! restarting it each time. Nothing committed may be lost; an event may be published
//! twice only if its transaction was above the slot's confirmed flush LSN at a kill; the
//! confirmed flush LSN never decreases.

use std::time::Duration;

use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::relay::{Relay, RelaySetup};
use outbox_relay_tests::workload::{self, WorkloadSpec};
use outbox_relay_tests::{pg, unique};
use rand::Rng;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_at_random_points_loses_nothing_and_replays_only_unconfirmed_work() {
    let name = unique("crash");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    let spec = WorkloadSpec::end_to_end(&table);
    workload::prepare(&client, &spec).await;
    let mut setup = RelaySetup::new(&name, &table);
    setup.inflight_bytes = 1024 * 1024;
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    let load = {
        let spec = spec.clone();
        tokio::spawn(async move { workload::run(&spec).await })
    };
    let big = {
        let table = table.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let c = pg::connect().await;
            workload::big_transaction(&c, &table, 200_000, 100).await;
        })
    };

    let mut flushes: Vec<u64> = Vec::new();
    for kill in 0..5 {
        let wait_ms = rand::rng().random_range(500..3000);
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        relay.kill9();
        let flush = pg::confirmed_flush_when_inactive(&client, &setup.slot()).await;
        eprintln!("kill {kill} after {wait_ms} ms: confirmed flush {flush:X}");
        if let Some(&prev) = flushes.last() {
            assert!(
                flush >= prev,
                "confirmed_flush_lsn went backwards: {prev:X} -> {flush:X}"
            );
        }
        flushes.push(flush);
        relay = Relay::start(&setup);
        relay.wait_ready(Duration::from_secs(60));
    }
    let report = load.await.unwrap();
    big.await.unwrap();
    let expected = workload::committed_rows(&client, &table).await;
    eprintln!("workload: {report:?}; committed rows {}", expected.len());
    assert_eq!(expected.len(), report.committed_events + 200_000);

    let prefix = setup.topic_prefix.clone();
    let want = expected.len();
    let records = tokio::task::spawn_blocking(move || {
        let mut reader = TopicReader::new(&prefix);
        reader.read_distinct_ids(want, Duration::from_secs(120));
        reader.into_records()
    })
    .await
    .unwrap();

    let verdict =
        workload::assert_delivered(&records, &expected, &setup.topic_prefix, "crash", &relay);

    // Every extra copy must be explained by a kill whose confirmed flush was at or below
    // the event's commit: only unconfirmed transactions are replayed.
    let commit_of: std::collections::HashMap<&[u8], u64> = records
        .iter()
        .map(|r| {
            (
                r.header("id").unwrap(),
                pg::parse_lsn(&r.header_str("outbox-relay-commit-lsn").unwrap()),
            )
        })
        .collect();
    let mut explained = 0;
    for (id, copies) in &verdict.duplicates {
        let commit = commit_of[id.as_bytes()];
        let replays_allowed = flushes.iter().filter(|&&f| f <= commit).count();
        assert!(
            copies - 1 <= replays_allowed,
            "event {id} (commit {commit:X}) published {copies} times, but only {replays_allowed} kills had a confirmed flush at or below its commit: {flushes:X?}"
        );
        explained += copies - 1;
    }
    eprintln!(
        "{} records, {} distinct, {explained} replayed copies",
        records.len(),
        verdict.distinct
    );

    let status = relay.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    let final_flush = pg::confirmed_flush_when_inactive(&client, &setup.slot()).await;
    assert!(final_flush >= *flushes.last().unwrap());
    pg::cleanup(
        &client,
        &setup.slot(),
        &setup.publication(),
        &[&table, &workload::versions_table(&table)],
    )
    .await;
}
