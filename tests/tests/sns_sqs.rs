//! The relay with the SNS and SQS sinks, against the emulator (moto, started by
//! `deploy/local/aws.sh`): committed rows from concurrent writers reach the queue as
//! exactly the committed set, in commit order per aggregate, with a SIGKILL and restart in
//! the middle; oversized events take the dead-letter outcome and later events flow.

use std::time::Duration;

use outbox_relay_tests::aws::{self, ACCOUNT, REGION};
use outbox_relay_tests::relay::{metric_sum, Relay, RelaySetup};
use outbox_relay_tests::workload::{self, WorkloadSpec};
use outbox_relay_tests::{pg, unique};

fn spec(table: &str, events: usize, aggregates: usize) -> WorkloadSpec {
    WorkloadSpec {
        table: table.to_string(),
        writers: 4,
        events,
        aggregates,
        aggregate_types: vec!["Order".into()],
        rollback_pct: 10,
        savepoint_pct: 15,
    }
}

fn sink_yaml(service: &str, fifo: bool, endpoint: &str) -> String {
    format!(
        "  kind: {service}\n  {service}:\n    region: {REGION}\n    endpoint: {}\n    fifo: {fifo}\n    retry_initial_backoff_ms: 50\n    max_concurrency: 32\n",
        endpoint
    )
}

/// Where and how much a run writes.
struct Target<'a> {
    service: &'a str,
    fifo: bool,
    endpoint: String,
    template: String,
    dead_letter: String,
    queue_url: String,
    events: usize,
    aggregates: usize,
}

/// Runs the workload through a relay into `destination_template`, killing the relay once
/// mid-stream, and checks what `queue_url` received.
async fn relay_into(name: &str, t: Target<'_>) {
    let Target {
        service,
        fifo,
        endpoint,
        template,
        dead_letter,
        queue_url,
        events,
        aggregates,
    } = t;
    let queue_url = queue_url.as_str();
    let sdk = aws::sdk_at(&endpoint).await;
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    let spec = spec(&table, events, aggregates);
    workload::prepare(&client, &spec).await;
    let mut setup = RelaySetup::new(name, &table).with_env(&aws::relay_env());
    setup.sink_yaml = Some(sink_yaml(service, fifo, &endpoint));
    setup.route_template = Some(template);
    setup.dead_letter = Some(dead_letter);
    setup.outbox_extra = "  on_invalid: dead_letter\n".into();
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    let load = {
        let spec = spec.clone();
        tokio::spawn(async move { workload::run(&spec).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    relay.kill9();
    let flush = pg::confirmed_flush_when_inactive(&client, &setup.slot()).await;
    relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    let report = load.await.unwrap();
    let expected = workload::committed_rows(&client, &table).await;
    assert_eq!(expected.len(), report.committed_events);

    let label = format!("{}.Order", setup.topic_prefix);
    let want = expected.len();
    let records = aws::receive(&sdk, queue_url, &label, Duration::from_secs(90), |r| {
        let ids: std::collections::HashSet<&[u8]> =
            r.iter().filter_map(|x| x.header("id")).collect();
        ids.len() >= want
    })
    .await;
    let verdict = workload::assert_delivered(
        &records,
        &expected,
        &setup.topic_prefix,
        &format!("{service} fifo={fifo}"),
        &relay,
    );
    // Copies only of transactions the slot had not confirmed at the kill.
    for (id, _) in &verdict.duplicates {
        let r = records
            .iter()
            .find(|r| r.header("id") == Some(id.as_bytes()))
            .unwrap();
        let commit = pg::parse_lsn(&r.header_str("outbox-relay-commit-lsn").unwrap_or_default());
        assert!(
            commit >= flush,
            "event {id} (commit {commit:X}) was replayed although confirmed ({flush:X})"
        );
    }
    // Attributes carry the event's identity.
    let first = &records[0];
    for attr in ["id", "type", "aggregatetype", "aggregateid"] {
        assert!(
            first.header(attr).is_some(),
            "attribute {attr} on {first:?}"
        );
    }
    eprintln!(
        "{service} fifo={fifo}: {} records, {} distinct, {} duplicated",
        records.len(),
        verdict.distinct,
        verdict.duplicates.len()
    );

    // An event over 256 KiB is dead-lettered (as a note of its size) and events after it
    // still flow.
    client
        .batch_execute(&format!(
            "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'big', 'Huge', jsonb_build_object('z', repeat('z', 300000)));
             INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'after', 'Small', '{{\"ok\": true}}');"
        ))
        .await
        .unwrap();
    let after = aws::receive(&sdk, queue_url, &label, Duration::from_secs(60), |r| {
        r.iter().any(|x| x.key_str() == "after")
    })
    .await;
    assert!(
        after
            .iter()
            .any(|r| r.payload.as_deref() == Some(&br#"{"ok": true}"#[..])),
        "{after:?}"
    );
    assert!(after.iter().all(|r| r.key_str() != "big"));
    let mut dead = 0.0;
    for _ in 0..100 {
        dead = metric_sum(
            &relay.metrics(),
            "outbox_relay_dead_letter_events_total",
            &["reason=\"message_too_large\""],
        );
        if dead > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead, 1.0, "the oversized event is dead-lettered");
    // Connector counters are copied into the metrics every second.
    let mut metrics = relay.metrics();
    for _ in 0..50 {
        if metric_sum(&metrics, "outbox_relay_sink_requests_total", &[]) > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        metrics = relay.metrics();
    }
    assert!(
        metric_sum(&metrics, "outbox_relay_sink_requests_total", &[]) > 0.0,
        "sink_requests_total is exported"
    );
    assert!(
        metric_sum(
            &metrics,
            "outbox_relay_publish_batch_events_count",
            &[&format!("sink=\"{service}\"")]
        ) > 0.0
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sns_fifo_topic_to_sqs_fifo_queue() {
    let name = unique("snsfifo");
    let sdk = aws::sdk().await;
    let (queue_url, queue_arn) = aws::create_queue(&sdk, &format!("{name}-q.fifo")).await;
    let topic = aws::create_topic_into(&sdk, &format!("{name}-Order.fifo"), &queue_arn).await;
    let (_, dl_arn) = aws::create_queue(&sdk, &format!("{name}-dlq-q.fifo")).await;
    let dl_topic = aws::create_topic_into(&sdk, &format!("{name}-dlq.fifo"), &dl_arn).await;
    // Emulators differ in the account they put in ARNs: take it from the created topic.
    let template = topic.replace("-Order.fifo", "-{aggregatetype}.fifo");
    let endpoint = aws::endpoint();
    relay_into(
        &name,
        Target {
            service: "sns",
            fifo: true,
            endpoint,
            template,
            dead_letter: dl_topic,
            queue_url,
            events: 400,
            aggregates: 20,
        },
    )
    .await;
}

/// The issue's size, 10k events over 200 aggregates, on the fast emulator (fauxqs).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sns_fifo_topic_to_sqs_fifo_queue_10k_events_over_200_aggregates() {
    let name = unique("snsfifo10k");
    let endpoint = aws::fauxqs_endpoint();
    let sdk = aws::sdk_at(&endpoint).await;
    let (queue_url, queue_arn) = aws::create_queue(&sdk, &format!("{name}-q.fifo")).await;
    let topic = aws::create_topic_into(&sdk, &format!("{name}-Order.fifo"), &queue_arn).await;
    let (_, dl_arn) = aws::create_queue(&sdk, &format!("{name}-dlq-q.fifo")).await;
    let dl_topic = aws::create_topic_into(&sdk, &format!("{name}-dlq.fifo"), &dl_arn).await;
    // Emulators differ in the account they put in ARNs: take it from the created topic.
    let template = topic.replace("-Order.fifo", "-{aggregatetype}.fifo");
    relay_into(
        &name,
        Target {
            service: "sns",
            fifo: true,
            endpoint,
            template,
            dead_letter: dl_topic,
            queue_url,
            events: 10_000,
            aggregates: 200,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqs_standard_queue_keeps_per_aggregate_order() {
    let name = unique("sqsstd");
    let sdk = aws::sdk().await;
    let (queue_url, _) = aws::create_queue(&sdk, &format!("{name}-Order")).await;
    let (dl_url, _) = aws::create_queue(&sdk, &format!("{name}-dlq")).await;
    let template = format!("{}/{ACCOUNT}/{name}-{{aggregatetype}}", aws::endpoint());
    let endpoint = aws::endpoint();
    relay_into(
        &name,
        Target {
            service: "sqs",
            fifo: false,
            endpoint,
            template,
            dead_letter: dl_url,
            queue_url,
            events: 400,
            aggregates: 20,
        },
    )
    .await;
}
