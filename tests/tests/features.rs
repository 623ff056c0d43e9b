//! The relay's surface beyond the main path, each against the real services: several
//! outbox tables, header columns and trace context, logical-message events, protocol
//! version 2, TLS with full verification, JSON logs, the `check` command, schema changes
//! caught on Relation messages, and the telemetry endpoints.

use std::process::Command;
use std::time::Duration;

use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::relay::{http_get, metric_sum, Relay, RelaySetup};
use outbox_relay_tests::{env, pg, unique};

const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn tls_dir() -> String {
    std::env::var("OUTBOX_RELAY_PG_TLS_DIR").unwrap_or_else(|_| "/tmp/outbox-relay/pg-tls".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tables_messages_headers_trace_context_over_verified_tls_with_proto_v2() {
    let name = unique("feat");
    let (t1, t2) = (
        format!("{name}_orders_outbox"),
        format!("{name}_billing_outbox"),
    );
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &t1, "jsonb", false).await;
    pg::create_outbox_table(&client, &t2, "bytea", false).await;
    client
        .batch_execute(&format!("ALTER TABLE {t1} ADD COLUMN tenant text"))
        .await
        .unwrap();

    let mut setup = RelaySetup::new(&name, &t1);
    setup.tables = vec![];
    setup.outbox_extra = format!(
        "  tables:\n    - table: public.{t1}\n      header_columns:\n        - column: tenant\n          header: x-tenant\n    - table: public.{t2}\n  messages:\n    prefix: {name}\n"
    );
    // Verified TLS by host name, pgoutput protocol 2, JSON logs.
    let ca = format!("{}/ca.crt", tls_dir());
    let setup = setup.with_env(&[
        ("RELAY__SOURCE__HOST", "localhost"),
        ("RELAY__SOURCE__SSLMODE", "verify-full"),
        ("RELAY__SOURCE__SSLROOTCERT", &ca),
        ("RELAY__SOURCE__PROTO_VERSION", "2"),
        ("RELAY__TELEMETRY__LOG_FORMAT", "json"),
    ]);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO {t1} (aggregatetype, aggregateid, type, payload, tracingspancontext, tenant)
               VALUES ('Order', 'o-1', 'OrderCreated', '{{\"a\": [1, 2.50, \"ü\"]}}', 'traceparent={TP}', 'acme');
             INSERT INTO {t2} (aggregatetype, aggregateid, type, payload) VALUES ('Invoice', 'i-1', 'InvoiceIssued', '\\x00ff7b7d');
             SELECT pg_logical_emit_message(true, '{name}', '{{\"id\": \"m-1\", \"aggregatetype\": \"Order\", \"aggregateid\": \"o-1\", \"type\": \"OrderPaid\", \"payload\": {{\"paid\":  true}}}}');
             COMMIT;
             SELECT pg_logical_emit_message(true, '{name}', '{{\"id\": \"m-2\", \"aggregatetype\": \"Order\", \"aggregateid\": \"o-1\", \"type\": \"OrderShipped\", \"payload\": \"as text\"}}');"
        ))
        .await
        .unwrap();

    let prefix = setup.topic_prefix.clone();
    let records = tokio::task::spawn_blocking(move || {
        let mut r = TopicReader::new(&prefix);
        r.read_at_least(4, Duration::from_secs(60));
        r.into_records()
    })
    .await
    .unwrap();
    assert_eq!(records.len(), 4, "{records:#?}");
    let orders: Vec<_> = records
        .iter()
        .filter(|r| r.topic.ends_with(".Order"))
        .collect();
    // One aggregate, one partition: commit order, the row first, then the two messages.
    let types: Vec<String> = orders.iter().map(|r| r.header_str("id").unwrap()).collect();
    assert_eq!(
        types[1..],
        ["m-1".to_string(), "m-2".to_string()],
        "{orders:#?}"
    );
    let row = orders[0];
    assert_eq!(
        row.payload.as_deref(),
        Some("{\"a\": [1, 2.50, \"ü\"]}".as_bytes())
    );
    assert_eq!(row.header_str("traceparent").as_deref(), Some(TP));
    assert_eq!(row.header_str("x-tenant").as_deref(), Some("acme"));
    assert_eq!(
        orders[1].payload.as_deref(),
        Some(&br#"{"paid":  true}"#[..]),
        "message payload text kept exactly"
    );
    assert_eq!(orders[2].payload.as_deref(), Some(&br#""as text""#[..]));
    let invoice = records
        .iter()
        .find(|r| r.topic.ends_with(".Invoice"))
        .unwrap();
    assert_eq!(
        invoice.payload.as_deref(),
        Some(&[0x00, 0xff, b'{', b'}'][..]),
        "bytea decoded"
    );
    assert_eq!(invoice.key_str(), "i-1");

    // Logs are JSON, one object per line.
    let log = relay.log_text();
    let json_lines = log.lines().filter(|l| l.starts_with('{')).count();
    assert!(json_lines >= 3, "JSON log lines expected:\n{log}");
    for l in log.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
    // The relay's replication connection really is TLS.
    let ssl: bool = client
        .query_one("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_replication_slots r ON r.active_pid = s.pid WHERE r.slot_name = $1", &[&setup.slot()])
        .await
        .unwrap()
        .get(0);
    assert!(ssl);

    // Telemetry endpoints.
    assert_eq!(http_get(relay.metrics_port, "/healthz").unwrap().0, 200);
    assert_eq!(http_get(relay.metrics_port, "/readyz").unwrap().0, 200);
    assert_eq!(http_get(relay.metrics_port, "/nope").unwrap().0, 404);
    let m = relay.metrics();
    assert_eq!(
        metric_sum(
            &m,
            "outbox_relay_events_published_total",
            &["result=\"ok\""]
        ),
        4.0
    );
    assert_eq!(metric_sum(&m, "outbox_relay_replicating", &[]), 1.0);
    assert_eq!(metric_sum(&m, "outbox_relay_sink_up", &[]), 1.0);
    assert!(metric_sum(&m, "outbox_relay_end_to_end_latency_seconds_count", &[]) >= 4.0);

    // A required column dropped while running: the next Relation message stops the relay
    // with a message naming the table and column, instead of skipping events.
    client
        .batch_execute(&format!(
            "ALTER TABLE {t1} DROP COLUMN aggregateid;
             INSERT INTO {t1} (aggregatetype, type, payload) VALUES ('Order', 'OrderCreated', '{{}}')"
        ))
        .await
        .unwrap();
    let status = relay.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
    let log = relay.log_text();
    assert!(
        log.contains(&format!("outbox table public.{t1}"))
            && log.contains("required column \\\"aggregateid\\\""),
        "{log}"
    );

    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&t1, &t2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_each_prerequisite_and_least_privilege_mode_creates_nothing() {
    let name = unique("check");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let setup = RelaySetup::new(&name, &table);
    let dir = std::env::temp_dir().join("outbox-relay-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join(format!("{name}-check.yaml"));
    std::fs::write(&config, setup.yaml(0)).unwrap();
    let check = |envs: &[(&str, &str)]| {
        let out = Command::new(env::relay_bin())
            .arg("--config")
            .arg(&config)
            .arg("check")
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    let (code, out) = check(&[]);
    assert_eq!(code, Some(0), "{out}");
    for name in [
        "config",
        "connectivity",
        "wal_level",
        "outbox_table",
        "publication",
        "slot",
        "sink",
    ] {
        assert!(out.contains(&format!("PASS {name}:")), "{name} in\n{out}");
    }

    // Least privilege: nothing may be created, so the missing publication and slot fail.
    let (code, out) = check(&[
        ("RELAY__SOURCE__CREATE_SLOT", "false"),
        ("RELAY__SOURCE__CREATE_PUBLICATION", "false"),
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL publication:") && out.contains("does not exist"),
        "{out}"
    );
    assert!(
        out.contains("FAIL slot:") && out.contains("create_slot is false"),
        "{out}"
    );
    // ...and `run` in that mode stops with the same explanation rather than creating them.
    let mut relay = Relay::start(
        &setup
            .clone()
            .with_env(&[("RELAY__SOURCE__CREATE_PUBLICATION", "false")]),
    );
    assert_eq!(relay.wait(Duration::from_secs(30)).code(), Some(1));
    assert!(
        relay.log_text().contains("CREATE PUBLICATION"),
        "{}",
        relay.log_text()
    );
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
            &[&setup.publication()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!exists);

    // Bad values are named.
    let (code, out) = check(&[("RELAY__SOURCE__SSLMODE", "sometimes")]);
    assert_eq!(code, Some(2));
    assert!(
        out.contains("FAIL config:") && out.contains("source.sslmode"),
        "{out}"
    );
    let (code, out) = check(&[("RELAY__SOURCE__PASSWORD", "wrong")]);
    assert_eq!(code, Some(1));
    assert!(out.contains("FAIL connectivity:"), "{out}");
    assert!(
        !out.contains("wrong"),
        "the password must not be printed:\n{out}"
    );

    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_advances_while_only_other_tables_are_written() {
    let name = unique("idle");
    let table = format!("{name}_outbox");
    let other = format!("{name}_other");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    client
        .batch_execute(&format!("CREATE TABLE {other} (v text)"))
        .await
        .unwrap();
    // Heartbeats off: keepalives alone must let the slot advance.
    let setup =
        RelaySetup::new(&name, &table).with_env(&[("RELAY__SOURCE__HEARTBEAT_INTERVAL_MS", "0")]);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    // WAL the publication does not cover: nothing is published, but the slot must not
    // hold this WAL back.
    client
        .batch_execute(&format!(
            "INSERT INTO {other} SELECT repeat('w', 500) FROM generate_series(1, 20000)"
        ))
        .await
        .unwrap();
    let after: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let after = pg::parse_lsn(&after);
    let mut flush = 0;
    for _ in 0..100 {
        flush = pg::confirmed_flush(&client, &setup.slot())
            .await
            .unwrap_or(0);
        if flush >= after {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        flush >= after,
        "confirmed flush {flush:X} did not pass {after:X}: idle slots would pile up WAL"
    );
    assert_eq!(
        metric_sum(&relay.metrics(), "outbox_relay_events_published_total", &[]),
        0.0
    );
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(
        &client,
        &setup.slot(),
        &setup.publication(),
        &[&table, &other],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_stalls_without_acknowledging_reports_lag_and_loses_nothing() {
    let name = unique("down");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    // A broker address nothing listens on: the producer retries forever (message.timeout.ms
    // = 0), the small in-flight budget fills, and the relay stops reading.
    let mut down = RelaySetup::new(&name, &table).with_env(&[
        ("RELAY__SINK__KAFKA__BROKERS", "127.0.0.1:1"),
        ("RELAY__PIPELINE__SHUTDOWN_TIMEOUT_MS", "2000"),
    ]);
    down.inflight_bytes = 64 * 1024;
    let mut relay = Relay::start(&down);
    relay.wait_replicating(Duration::from_secs(10));
    assert_eq!(
        http_get(relay.metrics_port, "/readyz").unwrap().0,
        503,
        "not ready while the sink is unreachable"
    );
    let flush_before = pg::confirmed_flush(&client, &down.slot()).await.unwrap();
    // Two transactions of 2,000 events. While the walsender still reads the first one's
    // WAL it may send a keepalive positioned inside it, before the transaction (sent
    // whole at its commit) has reached the relay; the relay may confirm that position,
    // and PostgreSQL still resends the transaction, whose commit lies beyond it. Nothing
    // of the second transaction can be confirmed: the relay is stuck on the first one.
    for first in [1, 2001] {
        client
            .batch_execute(&format!(
                "INSERT INTO {table} (aggregatetype, aggregateid, type, payload)
                 SELECT 'Order', 'agg-' || (i % 10), 'T', jsonb_build_object('i', i, 'pad', repeat('p', 400)) FROM generate_series({first}, {first} + 1999) i"
            ))
            .await
            .unwrap();
    }
    // Lag is measured against the server's real WAL end.
    let mut lag = 0.0;
    for _ in 0..50 {
        lag = metric_sum(&relay.metrics(), "outbox_relay_replication_lag_bytes", &[]);
        if lag > 500_000.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        lag > 500_000.0,
        "replication_lag_bytes {lag} while nothing can be delivered"
    );
    // The oldest undelivered batch has been waiting since the first insert, and says so
    // whatever the lag (status updates every 200 ms refresh the gauge).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let age = metric_sum(
        &relay.metrics(),
        "outbox_relay_oldest_inflight_age_seconds",
        &[],
    );
    assert!(age >= 1.0, "oldest_inflight_age_seconds {age} while stuck");
    let flush_during = pg::confirmed_flush(&client, &down.slot()).await.unwrap();
    assert!(flush_during >= flush_before);
    assert!(metric_sum(&relay.metrics(), "outbox_relay_inflight_bytes", &[]) <= 64.0 * 1024.0);
    assert_eq!(
        relay.terminate(Duration::from_secs(60)).code(),
        Some(0),
        "{}",
        relay.log_tail()
    );
    // librdkafka reports each failed connection attempt (≈ 200 ERROR lines in these
    // seconds before the relay held repeats back): one line per kind of message per 30 s.
    let log = relay.log_text();
    let kafka_errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("librdkafka"))
        .collect();
    assert!(
        !kafka_errors.is_empty() && kafka_errors.len() <= 4,
        "{} librdkafka ERROR lines:\n{}",
        kafka_errors.len(),
        kafka_errors.join("\n")
    );
    assert!(
        !log.contains("enable.gapless.guarantee is experimental"),
        "the relay's own locked property is not worth a warning at every start"
    );

    // The broker is back (the right address): every event arrives, in order per aggregate.
    let up = RelaySetup::new(&name, &table);
    let mut relay = Relay::start(&up);
    relay.wait_ready(Duration::from_secs(60));
    let prefix = up.topic_prefix.clone();
    let records = tokio::task::spawn_blocking(move || {
        let mut r = TopicReader::new(&prefix);
        r.read_at_least(4000, Duration::from_secs(60));
        r.into_records()
    })
    .await
    .unwrap();
    let mut last: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for r in &records {
        let v: serde_json::Value = serde_json::from_slice(r.payload.as_ref().unwrap()).unwrap();
        let i = v["i"].as_i64().unwrap();
        seen.insert(i);
        let prev = last.insert(r.key_str(), i).unwrap_or(0);
        assert!(i > prev, "aggregate {}: {i} after {prev}", r.key_str());
    }
    assert_eq!(seen.len(), 4000, "every event after the outage");
    // Nothing of the undelivered transaction was confirmed during the outage.
    for r in &records {
        let commit = pg::parse_lsn(&r.header_str("outbox-relay-commit-lsn").unwrap());
        assert!(
            flush_during <= commit,
            "confirmed {flush_during:X} past undelivered commit {commit:X}"
        );
    }
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    pg::cleanup(&client, &up.slot(), &up.publication(), &[&table]).await;
}
