//! End to end against real PostgreSQL and Kafka: 20k events over 500 aggregates from 8
//! concurrent writers (some transactions rolled back, some with savepoint rollbacks)
//! plus one 200k-row transaction, far beyond logical_decoding_work_mem.

use std::time::Duration;

use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::relay::{metric_sum, Relay, RelaySetup};
use outbox_relay_tests::workload::{self, WorkloadSpec};
use outbox_relay_tests::{pg, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivers_exactly_the_committed_events_in_commit_order_per_aggregate() {
    let name = unique("e2e");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    let spec = WorkloadSpec::end_to_end(&table);
    workload::prepare(&client, &spec).await;

    let mut setup = RelaySetup::new(&name, &table);
    // A small budget: the 200k-row transaction must stream through it, not pile up.
    setup.inflight_bytes = 1024 * 1024;
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    let report = workload::run(&spec).await;
    workload::big_transaction(&client, &table, 200_000, 100).await;
    let expected = workload::committed_rows(&client, &table).await;
    eprintln!("workload: {report:?}; committed rows {}", expected.len());
    assert!(report.committed_events >= 20_000);
    assert!(
        report.rolled_back_txns > 0 && report.savepoint_rollbacks > 0,
        "{report:?}"
    );
    assert_eq!(expected.len(), report.committed_events + 200_000);

    let prefix = setup.topic_prefix.clone();
    let want = expected.len();
    let records = tokio::task::spawn_blocking(move || {
        let mut reader = TopicReader::new(&prefix);
        reader.read_at_least(want, Duration::from_secs(90));
        // Anything extra (a duplicate) would arrive right behind; give it a moment.
        reader.read_until(Duration::from_secs(2), |_| false);
        reader.into_records()
    })
    .await
    .unwrap();

    let verdict =
        workload::assert_delivered(&records, &expected, &setup.topic_prefix, "e2e", &relay);
    assert!(
        verdict.duplicates.is_empty(),
        "duplicates without a crash: {:?}",
        &verdict.duplicates[..verdict.duplicates.len().min(5)]
    );
    assert_eq!(records.len(), expected.len());
    for r in &records {
        assert!(
            r.header("outbox-relay-commit-lsn").is_some(),
            "commit LSN header on {r:?}"
        );
    }

    let metrics = relay.metrics();
    let published = metric_sum(
        &metrics,
        "outbox_relay_events_published_total",
        &["result=\"ok\""],
    );
    assert_eq!(published as usize, expected.len(), "events_published_total");
    assert_eq!(
        metric_sum(&metrics, "outbox_relay_invalid_events_total", &[]),
        0.0
    );
    assert_eq!(
        metric_sum(&metrics, "outbox_relay_inflight_events", &[]),
        0.0
    );
    // Refreshed by each status update (200 ms): nothing has been waiting since the last
    // batch, seconds ago.
    let age = metric_sum(&metrics, "outbox_relay_oldest_inflight_age_seconds", &[]);
    assert!(
        age < 1.0,
        "oldest_inflight_age_seconds {age} with nothing in flight"
    );
    let txns = metric_sum(&metrics, "outbox_relay_transactions_total", &[]) as usize;
    assert!(
        txns > report.committed_txns,
        "transactions_total {txns} counts every committed transaction"
    );
    let peak_kb = relay.peak_rss_kb().unwrap();
    eprintln!("relay peak RSS {} MiB (debug build)", peak_kb / 1024);
    assert!(
        peak_kb < 150 * 1024,
        "peak RSS {peak_kb} kB: memory is not bounded by the in-flight budget"
    );

    // Graceful shutdown: exit 0, and the final status update confirms past the last commit.
    let status = relay.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        relay.log_tail()
    );
    let flush = pg::confirmed_flush_when_inactive(&client, &setup.slot()).await;
    let last_commit = records
        .iter()
        .map(|r| pg::parse_lsn(&r.header_str("outbox-relay-commit-lsn").unwrap()))
        .max()
        .unwrap();
    assert!(
        flush > last_commit,
        "confirmed flush {flush:X} is not past the last commit {last_commit:X}"
    );

    pg::cleanup(
        &client,
        &setup.slot(),
        &setup.publication(),
        &[&table, &workload::versions_table(&table)],
    )
    .await;
}
