//! Server settings that change how pgoutput prints values (issue 11, item 2). The
//! walsender formats every column with its own session settings, and a role or database
//! may set them to anything: the relay must pin them in its startup packet as
//! PostgreSQL's own apply worker does, or timestamps stop parsing and bytea arrives as
//! escape text.

use std::time::Duration;

use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::relay::{Relay, RelaySetup};
use outbox_relay_tests::{env, pg, unique};

/// 2026-11-25 11:56:08.123 UTC in Unix milliseconds.
const TS1_MS: i64 = 1_795_607_768_123;
/// 2026-01-02 03:04:05.006 UTC: day and month both fit either way round.
const TS2_MS: i64 = 1_767_323_045_006;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_exact_when_the_relay_role_sets_every_output_style_the_other_way() {
    let name = unique("srvset");
    let table = format!("{name}_outbox");
    let role = name.clone();
    let password = format!("pw_{name}");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "bytea", false).await;
    // A least-privilege login of its own (roles are cluster-wide, hence the unique name),
    // owning the table so that it may create the publication, with every setting that
    // changes pgoutput's text set away from what the relay parses.
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN REPLICATION PASSWORD '{password}';
             GRANT CREATE ON DATABASE {db} TO {role};
             ALTER TABLE {table} OWNER TO {role};
             ALTER ROLE {role} SET datestyle = 'SQL, DMY';
             ALTER ROLE {role} SET intervalstyle = 'sql_standard';
             ALTER ROLE {role} SET bytea_output = 'escape';
             ALTER ROLE {role} SET extra_float_digits = 0;
             ALTER ROLE {role} SET timezone = 'Asia/Kolkata';",
            db = env::pg_database(),
        ))
        .await
        .unwrap();

    let setup = RelaySetup::new(&name, &table).with_env(&[
        ("RELAY__SOURCE__USER", role.as_str()),
        ("RELAY__SOURCE__PASSWORD", password.as_str()),
        // This role may not write the state tables: no parking.
        ("RELAY__OUTBOX__ON_INVALID", "dead_letter"),
    ]);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    client
        .batch_execute(&format!(
            "INSERT INTO {table} (aggregatetype, aggregateid, type, payload, timestamp)
               VALUES ('Order', 'o-1', 'OrderCreated', '\\x00ff5c7b7d0a'::bytea, '2026-11-25 11:56:08.123+00');
             INSERT INTO {table} (aggregatetype, aggregateid, type, payload, timestamp)
               VALUES ('Order', 'o-1', 'OrderPaid', '\\x5c7830'::bytea, '2026-01-02 03:04:05.006+00');"
        ))
        .await
        .unwrap();

    let topic = format!("{}.Order", setup.topic_prefix);
    let records = tokio::task::spawn_blocking(move || {
        let mut r = TopicReader::exact(&topic);
        r.read_at_least(2, Duration::from_secs(60));
        r.read_until(Duration::from_secs(2), |_| false);
        r.into_records()
    })
    .await
    .unwrap();
    let got: Vec<(String, Option<Vec<u8>>, Option<i64>)> = records
        .iter()
        .map(|r| (r.key_str(), r.payload.clone(), r.timestamp_ms))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "o-1".to_string(),
                Some(vec![0x00, 0xff, b'\\', b'{', b'}', b'\n']),
                Some(TS1_MS)
            ),
            ("o-1".to_string(), Some(b"\\x0".to_vec()), Some(TS2_MS)),
        ],
        "events byte-exact with their timestamps; relay log:\n{}",
        relay.log_tail()
    );
    let dead = tokio::task::spawn_blocking({
        let dlq = setup.dead_letter_topic();
        move || {
            let mut r = TopicReader::exact(&dlq);
            r.read_until(Duration::from_secs(2), |_| false);
            r.records.len()
        }
    })
    .await
    .unwrap();
    assert_eq!(dead, 0, "nothing dead-lettered");

    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
    client
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role};"))
        .await
        .unwrap();
}
