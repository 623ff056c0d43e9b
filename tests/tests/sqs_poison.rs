//! Issue 9.2, SNS/SQS: with `raw_payload: true` a row with a NULL payload has no body the
//! sink can carry, and neither has its dead-letter copy. Before, the dead-letter publish
//! failed the same check, the session restarted into the same failure (6 restarts in
//! 20 s) and the next valid row of another aggregate was never delivered. Now the sink's
//! pre-flight check gives the row its policy's outcome in commit order: parked (the
//! default), or, with `dead_letter`, a summary record the dead-letter queue can carry.

use std::time::Duration;

use outbox_relay_tests::aws::{self, ACCOUNT, REGION};
use outbox_relay_tests::relay::{metric_sum, Relay, RelaySetup};
use outbox_relay_tests::{pg, unique};

async fn run(policy: &str) {
    let name = unique(&format!("sqspoison{policy}").replace('_', ""));
    let sdk = aws::sdk().await;
    let (queue_url, _) = aws::create_queue(&sdk, &format!("{name}-Order")).await;
    let (dl_url, _) = aws::create_queue(&sdk, &format!("{name}-dlq")).await;
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    client
        .batch_execute(&format!(
            "ALTER TABLE {table} ALTER COLUMN payload DROP NOT NULL"
        ))
        .await
        .unwrap();
    let mut setup = RelaySetup::new(&name, &table).with_env(&aws::relay_env());
    setup.sink_yaml = Some(format!(
        "  kind: sqs\n  sqs:\n    region: {REGION}\n    endpoint: {}\n    raw_payload: true\n",
        aws::endpoint()
    ));
    setup.route_template = Some(format!(
        "{}/{ACCOUNT}/{name}-{{aggregatetype}}",
        aws::endpoint()
    ));
    setup.dead_letter = Some(dl_url.clone());
    setup.outbox_extra = format!("  on_invalid: {policy}\n");
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    client
        .batch_execute(&format!(
            "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'x', 'T', NULL);
             INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'y', 'T', '{{\"n\": 1}}');"
        ))
        .await
        .unwrap();
    let received = aws::receive(&sdk, &queue_url, "q", Duration::from_secs(30), |r| {
        !r.is_empty()
    })
    .await;
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].key_str(),
        "y",
        "the next row, of another aggregate, is delivered"
    );

    if policy == "park" {
        let mut parked = 0.0;
        for _ in 0..50 {
            parked = metric_sum(&relay.metrics(), "outbox_relay_parked_events", &[]);
            if parked == 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(parked, 1.0, "{}", relay.log_tail());
    } else {
        let dead = aws::receive(&sdk, &dl_url, "dlq", Duration::from_secs(30), |r| {
            !r.is_empty()
        })
        .await;
        assert_eq!(dead.len(), 1);
        let doc: serde_json::Value =
            serde_json::from_slice(dead[0].payload.as_ref().unwrap()).unwrap();
        assert_eq!(doc["aggregateid"], "x", "{doc}");
        assert_eq!(doc["payload_bytes"], serde_json::Value::Null);
        assert!(
            doc["error"].as_str().unwrap().contains("NULL")
                || doc["error"].as_str().unwrap().contains("null"),
            "{doc}"
        );
    }
    assert_eq!(
        metric_sum(&relay.metrics(), "outbox_relay_restarts_total", &[]),
        0.0,
        "no restart loop:\n{}",
        relay.log_tail()
    );
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_payload_on_a_raw_sqs_sink_is_parked_and_the_stream_goes_on() {
    run("park").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_payload_on_a_raw_sqs_sink_is_dead_lettered_as_a_summary() {
    run("dead_letter").await;
}
