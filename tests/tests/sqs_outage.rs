//! One SQS queue unreachable while another stays healthy and 8 writers keep going (issue
//! 9), with `circuit_breaker.on_open: park`: the failing queue's circuit opens, its events
//! are parked, the healthy queue keeps receiving with its latency unchanged, the slot
//! keeps advancing; after recovery the circuit half-opens and closes, the redriver sends
//! the parked aggregates, and both queues hold every committed event, in order per
//! aggregate.
//!
//! The queue is cut off by an HTTP proxy in front of the emulator (tests/src/http_fault.rs)
//! that drops every request naming it. The writers stay at 40 events/s: moto answers about
//! a dozen requests a second on the test machine, and above its capacity the healthy
//! queue's latency would measure moto's backlog rather than the relay. (fauxqs, the fast
//! emulator, refuses the workload's non-BMP characters, which SQS accepts.) `OUTBOX_RELAY_OUTAGE_SECS` sets the outage
//! (default 30 s; `tests/outage.sh` runs 10 minutes).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_relay_tests::aws::{self, ACCOUNT, REGION};
use outbox_relay_tests::http_fault::HttpFaultProxy;
use outbox_relay_tests::relay::{metric_sum, Relay, RelaySetup};
use outbox_relay_tests::workload::{self, WorkloadSpec};
use outbox_relay_tests::{pg, unique};

fn outage_secs() -> Duration {
    Duration::from_secs(
        std::env::var("OUTBOX_RELAY_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30),
    )
}

/// Events published to `destination` so far.
fn published(metrics: &str, destination: &str) -> f64 {
    metric_sum(
        metrics,
        "outbox_relay_events_published_total",
        &[&format!("destination=\"{destination}\""), "result=\"ok\""],
    )
}

/// Mean end-to-end latency of `destination`'s events so far, in seconds.
fn mean_latency(metrics: &str, destination: &str) -> (f64, f64) {
    let label = format!("destination=\"{destination}\"");
    (
        metric_sum(
            metrics,
            "outbox_relay_end_to_end_latency_seconds_sum",
            &[&label],
        ),
        metric_sum(
            metrics,
            "outbox_relay_end_to_end_latency_seconds_count",
            &[&label],
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_queue_down_parks_its_events_while_the_other_queue_keeps_flowing() {
    let outage = outage_secs();
    let name = unique("sqsdown");
    let sdk = aws::sdk().await;
    let (down_url, _) = aws::create_queue(&sdk, &format!("{name}-Order")).await;
    let (up_url, _) = aws::create_queue(&sdk, &format!("{name}-Customer")).await;
    let (dl_url, _) = aws::create_queue(&sdk, &format!("{name}-dlq")).await;
    let moto = aws::endpoint();
    let proxy = HttpFaultProxy::start(
        moto.trim_start_matches("http://")
            .parse()
            .expect("emulator address"),
    )
    .await;

    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    let spec = WorkloadSpec {
        table: table.clone(),
        writers: 8,
        events: usize::MAX,
        aggregates: 200,
        aggregate_types: vec!["Order".into(), "Customer".into()],
        rollback_pct: 10,
        savepoint_pct: 15,
    };
    workload::prepare(&client, &spec).await;
    let mut setup = RelaySetup::new(&name, &table).with_env(&aws::relay_env());
    setup.sink_yaml = Some(format!(
        "  kind: sqs
  sqs:
    region: {REGION}
    endpoint: {}
    retry_initial_backoff_ms: 50
    retry_max_backoff_ms: 1000
    max_concurrency: 32
    circuit_breaker:
      failure_threshold: 3
      open_initial_ms: 1000
      open_max_ms: 4000
      on_open: park
",
        proxy.endpoint()
    ));
    setup.route_template = Some(format!("{moto}/{ACCOUNT}/{name}-{{aggregatetype}}"));
    setup.dead_letter = Some(dl_url);
    let mut relay = Relay::start(&setup);
    relay.wait_replicating(Duration::from_secs(60));

    let stop = Arc::new(AtomicBool::new(false));
    let writers = {
        let (spec, stop) = (spec.clone(), stop.clone());
        tokio::spawn(async move { workload::run_paced(&spec, 40, stop).await })
    };
    // The healthy queue's latency before the outage, over a window of its own.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let b0 = mean_latency(&relay.metrics(), &up_url);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let b1 = mean_latency(&relay.metrics(), &up_url);
    let before_mean = (b1.0 - b0.0) / (b1.1 - b0.1).max(1.0);
    // The count of the latency histogram is the events delivered.
    let before_rate = (b1.1 - b0.1) / 8.0;

    proxy.cut(&format!("{name}-Order"));
    let down_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = relay.metrics();
        let opened = metric_sum(
            &m,
            "outbox_relay_circuit_transitions_total",
            &[&format!("destination=\"{down_url}\""), "state=\"open\""],
        ) >= 1.0;
        if opened && metric_sum(&m, "outbox_relay_parked_events", &[]) > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "{m}\n{}", relay.log_tail());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The healthy queue keeps receiving, and the slot keeps advancing, all along.
    let first_flush = pg::confirmed_flush(&client, &setup.slot()).await.unwrap();
    let mut healthy = vec![published(&relay.metrics(), &up_url)];
    let during_start = mean_latency(&relay.metrics(), &up_url);
    let watched = Instant::now();
    while down_at.elapsed() < outage {
        tokio::time::sleep(Duration::from_secs(5)).await;
        healthy.push(published(&relay.metrics(), &up_url));
    }
    let during_end = mean_latency(&relay.metrics(), &up_url);
    let during_rate = (during_end.1 - during_start.1) / watched.elapsed().as_secs_f64();
    let last_flush = pg::confirmed_flush(&client, &setup.slot()).await.unwrap();
    assert!(last_flush > first_flush, "the slot stood still");
    // Receiving all along (each half of the outage), at its rate from before, with its
    // latency from before — within what a loaded 2-core test machine makes of either.
    let half = healthy.len() / 2;
    assert!(
        healthy[half] > healthy[0] && healthy[healthy.len() - 1] > healthy[half],
        "the healthy queue stalled: {healthy:?}"
    );
    assert!(
        during_rate >= 0.5 * before_rate,
        "healthy queue: {during_rate:.1} events/s during the outage, {before_rate:.1} before"
    );
    let during_mean = (during_end.0 - during_start.0) / (during_end.1 - during_start.1).max(1.0);
    // moto answers about 12 requests/s on this machine and its latency swings with
    // whatever else runs: a healthy queue blocked behind the failing one would wait for
    // the breaker (seconds), which this bound still catches.
    assert!(
        during_mean < 2.0 * before_mean + 1.0,
        "healthy queue's mean latency during the outage {during_mean:.3} s (before: {before_mean:.3} s)"
    );
    let parked_during = metric_sum(&relay.metrics(), "outbox_relay_parked_events", &[]);
    assert!(proxy.refused() > 0);

    proxy.heal();
    stop.store(true, Ordering::SeqCst);
    writers.await.unwrap();
    relay
        .wait_recovered(
            Duration::from_secs(180),
            &[&format!("destination=\"{down_url}\"")],
        )
        .await;

    let expected = workload::committed_rows(&client, &table).await;
    let mut records = Vec::new();
    for (url, ty) in [(&down_url, "Order"), (&up_url, "Customer")] {
        let want: HashSet<&str> = expected
            .iter()
            .filter(|(_, e)| e.aggregate_type == ty)
            .map(|(id, _)| id.as_str())
            .collect();
        let label = format!("{}.{ty}", setup.topic_prefix);
        records.extend(
            aws::receive(&sdk, url, &label, Duration::from_secs(60), |r| {
                let ids: HashSet<&[u8]> = r.iter().filter_map(|x| x.header("id")).collect();
                ids.len() >= want.len()
            })
            .await,
        );
    }
    let verdict = workload::assert_delivered(
        &records,
        &expected,
        &setup.topic_prefix,
        "after the queue came back",
        &relay,
    );
    eprintln!(
        "outage {outage:?}: {} events, {parked_during} parked at its end, {} replayed, {} requests refused; healthy queue {before_rate:.1} events/s and {before_mean:.3} s mean latency before, {during_rate:.1} events/s and {during_mean:.3} s during",
        expected.len(),
        verdict.duplicates.len(),
        proxy.refused()
    );
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(
        &client,
        &setup.slot(),
        &setup.publication(),
        &[&table, &workload::versions_table(&table)],
    )
    .await;
}
