//! `source.slot_failover` (issue 10 item 4): on PostgreSQL 17+ the slot is created with
//! FAILOVER (flagged in pg_replication_slots) and the relay delivers through it; an older
//! server gets a clear error instead of a slot that silently does not fail over.
//! `outbox-relay check` reports the primary's side of failover readiness.
//!
//! Which branch runs depends on the server the harness points at (the version matrix
//! runs this file on 13 to 18); each has its exact expected outcome.

use std::time::Duration;

use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::relay::{Relay, RelaySetup};
use outbox_relay_tests::{pg, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_failover_creates_a_failover_slot_on_17_and_refuses_older_servers() {
    let name = unique("failover");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    let major = pg::server_major(&client).await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let setup =
        RelaySetup::new(&name, &table).with_env(&[("RELAY__SOURCE__SLOT_FAILOVER", "true")]);
    let slot = setup.slot();

    // check first: nothing exists yet, and the primary has no standby configured.
    let mut check = Relay::start_with_args(&setup, &["check"]);
    let status = check.wait(Duration::from_secs(60));
    let report = check.log_text();
    assert!(!status.success(), "{report}");
    let expected = if major >= 17 {
        "FAIL slot_failover: synchronized_standby_slots is empty".to_string()
    } else {
        format!("FAIL slot_failover: source.slot_failover needs PostgreSQL 17 or newer (the server is {major}.")
    };
    assert!(report.contains(&expected), "no {expected:?} in:\n{report}");
    std::fs::remove_file(&check.log).unwrap();

    let mut relay = Relay::start(&setup);
    if major < 17 {
        let status = relay.wait(Duration::from_secs(30));
        let log = relay.log_text();
        assert_eq!(status.code(), Some(1), "{log}");
        let expected = format!(
            "source.slot_failover is true but the server cannot create slot \"{slot}\" with FAILOVER: failover slots need PostgreSQL 17 or newer (the server is {major}."
        );
        assert!(log.contains(&expected), "no {expected:?} in:\n{log}");
        assert!(
            log.contains("failover slots need PostgreSQL 17 or newer"),
            "{log}"
        );
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .unwrap();
        assert!(exists.is_none(), "a slot without FAILOVER was created");
    } else {
        relay.wait_ready(Duration::from_secs(60));
        let failover: bool = client
            .query_one(
                "SELECT (to_jsonb(s) ->> 'failover')::bool FROM pg_replication_slots s WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .unwrap()
            .get(0);
        assert!(failover, "slot {slot} was created without FAILOVER");
        assert_eq!(relay.metric("outbox_relay_slot_created_total"), Some(1.0));
        client
            .execute(
                &format!("INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'fo-1', 'T', '{{}}')"),
                &[],
            )
            .await
            .unwrap();
        let prefix = setup.topic_prefix.clone();
        let keys = tokio::task::spawn_blocking(move || {
            let mut reader = TopicReader::new(&prefix);
            reader.read_at_least(1, Duration::from_secs(30));
            reader.read_until(Duration::from_secs(2), |_| false);
            reader
                .into_records()
                .iter()
                .map(|r| r.key_str())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        assert_eq!(keys, vec!["fo-1".to_string()]);
        relay.terminate(Duration::from_secs(30));
    }
    pg::cleanup(&client, &slot, &setup.publication(), &[&table]).await;
}
