//! The on-call commands and the metrics operators' tooling expects (issue 15), against a
//! live relay on PostgreSQL and Kafka:
//! - `check --output json` next to a running relay: the slot it holds is INFO, exit 0;
//! - `status` (text and JSON): the slot's process, LSNs and lag, the publication's tables,
//!   parked events by reason, the live relay's view; exit 1 once the slot is gone;
//! - `config`: the effective configuration with secrets as `***`, reloadable;
//! - the scrape: unprefixed `process_*`, `build_info{version,revision}`, librdkafka
//!   statistics, and the `destination` label capped by `telemetry.max_destination_labels`.

use std::process::Command;
use std::time::{Duration, Instant};

use outbox_relay_tests::env;
use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::relay::{metric_sum, metric_value, Relay, RelaySetup};
use outbox_relay_tests::{pg, unique};

/// `outbox-relay --config <config> <args>` with extra environment: (exit code, stdout).
fn command(config: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env::relay_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run outbox-relay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: not JSON:\n{text}"))
}

/// Waits until `metrics` satisfies `done`, returning the last scrape.
fn wait_metrics(relay: &Relay, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let m = relay.metrics();
        if done(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "timed out; last scrape:\n{m}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_status_run_next_to_a_live_relay_and_report_what_on_call_needs() {
    let name = unique("oncall");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", true).await;
    let setup = RelaySetup::new(&name, &table).with_env(&[
        // librdkafka statistics every second instead of 10, so the test sees a report.
        (
            "RELAY__SINK__KAFKA__PROPERTIES__STATISTICS_INTERVAL_MS",
            "1000",
        ),
        ("RELAY__TELEMETRY__MAX_DESTINATION_LABELS", "1"),
    ]);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    let config = relay.config.clone();

    // Three aggregate types, one topic each; committed one after the other so the first
    // destination the relay sees is Order's. One event of Order has no aggregate id, so it
    // is parked (null_aggregate_id).
    let insert = |ty: &str, agg: &str| {
        format!(
            "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('{ty}', {agg}, 'T', '{{}}')"
        )
    };
    client
        .batch_execute(&format!(
            "{}; {}",
            insert("Order", "'o-1'"),
            insert("Order", "'o-2'")
        ))
        .await
        .unwrap();
    let order_topic = format!("{}.Order", setup.topic_prefix);
    wait_metrics(&relay, Duration::from_secs(30), |m| {
        metric_sum(
            m,
            "outbox_relay_events_published_total",
            &[&format!("destination=\"{order_topic}\""), "result=\"ok\""],
        ) == 2.0
    });
    client
        .batch_execute(&format!(
            "{}; {}; {}; {}",
            insert("Payment", "'p-1'"),
            insert("Shipment", "'s-1'"),
            insert("Shipment", "'s-2'"),
            insert("Order", "NULL")
        ))
        .await
        .unwrap();
    let m = wait_metrics(&relay, Duration::from_secs(30), |m| {
        metric_sum(
            m,
            "outbox_relay_events_published_total",
            &["destination=\"_other\"", "result=\"ok\""],
        ) == 3.0
            && metric_value(m, "outbox_relay_parked_aggregates") == Some(1.0)
    });
    // The cap: Order keeps its label, Payment and Shipment share `_other`, and no series
    // names them.
    assert!(
        !m.contains(&format!("{}.Payment", setup.topic_prefix))
            && !m.contains(&format!("{}.Shipment", setup.topic_prefix)),
        "{m}"
    );
    assert_eq!(
        metric_sum(
            &m,
            "outbox_relay_end_to_end_latency_seconds_count",
            &["destination=\"_other\""]
        ),
        3.0
    );

    // Conventional series: unprefixed process metrics, build_info with the revision.
    assert!(
        metric_value(&m, "process_cpu_seconds_total").is_some(),
        "{m}"
    );
    assert!(metric_value(&m, "process_resident_memory_bytes").unwrap() > 0.0);
    assert!(!m.contains("outbox_relay_process_"), "{m}");
    let revision = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let build_info = format!(
        "outbox_relay_build_info{{revision=\"{}\",version=\"{}\"}}",
        revision.trim(),
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        metric_value(&m, &build_info),
        Some(1.0),
        "{build_info} in\n{m}"
    );

    // librdkafka's statistics: a round trip to the broker and the batches of the topic.
    let m = wait_metrics(&relay, Duration::from_secs(15), |m| {
        metric_sum(
            m,
            "outbox_relay_kafka_broker_rtt_seconds",
            &["stat=\"avg\""],
        ) > 0.0
            && metric_sum(
                m,
                "outbox_relay_kafka_batch_records",
                &[&format!("topic=\"{order_topic}\""), "stat=\"avg\""],
            ) >= 1.0
    });
    assert!(
        metric_sum(&m, "outbox_relay_kafka_producer_queue_records", &[]) >= 0.0
            && m.contains("outbox_relay_kafka_broker_inflight_records{broker=\"127.0.0.1:"),
        "{m}"
    );

    // check next to the running relay: the slot it holds is INFO, the rest PASS, exit 0.
    let (code, out) = command(&config, &["check", "--output", "json"], &[]);
    assert_eq!(code, 0, "{out}");
    let report = json(&out);
    assert_eq!(report["ok"], true, "{out}");
    let outcome = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {out}"))["outcome"]
            .clone()
    };
    assert_eq!(outcome("slot"), "info", "{out}");
    for name in [
        "config",
        "connectivity",
        "wal_level",
        "outbox_table",
        "publication",
        "sink",
    ] {
        assert_eq!(outcome(name), "pass", "{name}: {out}");
    }
    let (code, text) = command(&config, &["check"], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "INFO slot: slot \"{name}\" is in use by server process"
        )),
        "{text}"
    );

    // status, JSON: the slot's walsender is the relay's, LSNs, lag, tables, parked.
    let walsender: i32 = client
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    let (code, out) = command(&config, &["status", "--output", "json"], &[]);
    assert_eq!(code, 0, "{out}");
    let s = json(&out);
    assert_eq!(s["slot"]["exists"], true);
    assert_eq!(s["slot"]["active"], true);
    assert_eq!(s["slot"]["active_pid"], walsender);
    assert_eq!(s["slot"]["plugin"], "pgoutput");
    assert!(s["slot"]["lag_bytes"].as_i64().unwrap() >= 0, "{out}");
    assert!(s["slot"]["received_lsn"].is_string(), "{out}");
    assert!(s["slot"]["confirmed_flush_lsn"].is_string(), "{out}");
    assert_eq!(
        s["publication"]["tables"],
        serde_json::json!([format!("public.{table}")])
    );
    assert_eq!(s["state"]["parked_events"], 1, "{out}");
    assert_eq!(s["state"]["parked_aggregates"], 1, "{out}");
    assert_eq!(
        s["state"]["parked"][0]["reason"], "null_aggregate_id",
        "{out}"
    );
    assert_eq!(s["relay"]["reachable"], true, "{out}");
    assert_eq!(s["relay"]["ready"], true, "{out}");
    assert_eq!(s["relay"]["replicating"], true, "{out}");
    assert_eq!(s["relay"]["leader"], true, "{out}");
    assert_eq!(s["relay"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["problems"], serde_json::json!([]));
    let (code, text) = command(&config, &["status"], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "slot \"{name}\": active (server process {walsender})"
        )) && text.contains("parked: 1 events of 1 aggregates")
            && text.contains("null_aggregate_id")
            && text.contains(", leader, ready yes, replicating yes")
            && text.contains("problems: none"),
        "{text}"
    );

    // The relay stops: the slot is inactive, nothing answers, still no problem.
    assert!(relay.terminate(Duration::from_secs(30)).success());
    let (code, out) = command(&config, &["status", "--output", "json"], &[]);
    assert_eq!(code, 0, "{out}");
    let s = json(&out);
    assert_eq!(s["slot"]["active"], false);
    assert_eq!(s["relay"]["reachable"], false);

    // The slot is dropped behind the relay's back: status says so and exits 1.
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&name])
        .await
        .unwrap();
    let (code, text) = command(&config, &["status"], &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "PROBLEM slot \"{name}\" does not exist although the relay has a progress record for it"
        )),
        "{text}"
    );
    // Kafka received the five valid events.
    let prefix = setup.topic_prefix.clone();
    let records = tokio::task::spawn_blocking(move || {
        let mut r = TopicReader::new(&prefix);
        r.read_at_least(5, Duration::from_secs(30));
        r.records.len()
    })
    .await
    .unwrap();
    assert_eq!(records, 5);

    client
        .batch_execute(&format!(
            "DELETE FROM outbox_relay.parked WHERE slot = '{name}'; DELETE FROM outbox_relay.progress WHERE slot = '{name}'"
        ))
        .await
        .unwrap();
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}

#[test]
fn config_prints_the_effective_configuration_with_secrets_redacted() {
    let name = unique("config");
    let setup = RelaySetup::new(&name, &format!("{name}_outbox"));
    let dir = std::env::temp_dir().join("outbox-relay-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(&config, setup.yaml(0)).unwrap();
    let envs = [
        ("RELAY__SOURCE__PASSWORD", "s3cr3t-pw"),
        (
            "RELAY__SINK__KAFKA__PROPERTIES__SASL_PASSWORD",
            "kafka-s3cr3t",
        ),
        ("RELAY__SINK__KAFKA__PROPERTIES__LINGER_MS", "7"),
    ];

    let (code, out) = command(&config, &["config", "--output", "json"], &envs);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("s3cr3t"), "a secret was printed:\n{out}");
    let c = json(&out);
    assert_eq!(c["source"]["password"], "***");
    assert_eq!(c["sink"]["kind"], "kafka");
    assert_eq!(c["sink"]["kafka"]["properties"]["sasl_password"], "***");
    assert_eq!(c["sink"]["kafka"]["properties"]["linger_ms"], "7");
    // From the file, from the environment and from the defaults, under the keys they are
    // written with.
    assert_eq!(c["source"]["status_interval_ms"], 200);
    assert_eq!(c["source"]["slot"], name.as_str());
    assert_eq!(c["telemetry"]["listen"], "127.0.0.1:0");
    assert_eq!(c["pipeline"]["shutdown_timeout_ms"], 30000);
    assert_eq!(c["telemetry"]["max_destination_labels"], 100);

    // The YAML form loads back into the same configuration (the password aside).
    let (code, yaml) = command(&config, &["config"], &envs);
    assert_eq!(code, 0, "{yaml}");
    assert!(!yaml.contains("s3cr3t"), "{yaml}");
    let again = dir.join(format!("{name}-again.yaml"));
    std::fs::write(&again, &yaml).unwrap();
    let (code, out_again) = command(&again, &["config", "--output", "json"], &[]);
    assert_eq!(code, 0, "{out_again}");
    assert_eq!(json(&out_again), c);
}
