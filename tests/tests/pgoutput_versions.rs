//! pgoutput protocol versions per server (issue 10 item 6): `source.proto_version: 2`
//! delivers on PostgreSQL 14+, and PostgreSQL 13 (protocol 1 only) gets an error naming
//! the setting. Logical-message events (`outbox.messages`) need 14+ as well: 13's
//! pgoutput sends no messages.
//!
//! Which branch runs depends on the server the harness points at (tests/matrix.sh runs
//! this file on 13 to 18); each has its exact expected outcome.

use std::time::Duration;

use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::relay::{Relay, RelaySetup};
use outbox_relay_tests::{pg, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proto_version_2_and_logical_messages_work_from_14_and_are_refused_by_name_on_13() {
    let name = unique("protov2");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    let major = pg::server_major(&client).await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let mut setup =
        RelaySetup::new(&name, &table).with_env(&[("RELAY__SOURCE__PROTO_VERSION", "2")]);
    setup.outbox_extra = format!("  messages:\n    prefix: {name}\n");
    let slot = setup.slot();
    let mut relay = Relay::start(&setup);
    if major < 14 {
        let status = relay.wait(Duration::from_secs(30));
        let log = relay.log_text();
        assert_eq!(status.code(), Some(1), "{log}");
        let expected =
            format!("source.proto_version 2 needs PostgreSQL 14 or newer (the server is {major}.");
        assert!(log.contains(&expected), "no {expected:?} in:\n{log}");
    } else {
        relay.wait_ready(Duration::from_secs(60));
        client
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'row-1', 'T', '{{}}');
                 SELECT pg_logical_emit_message(true, '{name}', json_build_object(
                   'id', gen_random_uuid(), 'aggregatetype', 'Order', 'aggregateid', 'msg-1',
                   'type', 'T', 'payload', '{{}}'::json)::text);
                 COMMIT;"
            ))
            .await
            .unwrap();
        let prefix = setup.topic_prefix.clone();
        let mut keys = tokio::task::spawn_blocking(move || {
            let mut reader = TopicReader::new(&prefix);
            reader.read_at_least(2, Duration::from_secs(30));
            reader.read_until(Duration::from_secs(2), |_| false);
            reader
                .into_records()
                .iter()
                .map(|r| r.key_str())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        keys.sort();
        assert_eq!(
            keys,
            vec!["msg-1".to_string(), "row-1".to_string()],
            "{}",
            relay.log_tail()
        );
        relay.terminate(Duration::from_secs(30));
    }
    pg::cleanup(&client, &slot, &setup.publication(), &[&table]).await;
}
