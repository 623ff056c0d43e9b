use std::io::Write;

use super::*;

fn write(content: &str, ext: &str) -> tempfile_path::TempPath {
    tempfile_path::TempPath::new(content, ext)
}

/// A tiny temp-file helper so the test needs no extra crate.
mod tempfile_path {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct TempPath(PathBuf);
    static N: AtomicU32 = AtomicU32::new(0);

    impl TempPath {
        pub fn new(content: &str, ext: &str) -> Self {
            let n = N.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "outbox-relay-config-test-{}-{n}.{ext}",
                std::process::id()
            ));
            let mut f = std::fs::File::create(&path).unwrap();
            super::Write::write_all(&mut f, content.as_bytes()).unwrap();
            TempPath(path)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

const MINIMAL: &str = "
source:
  host: db
  database: app
  user: relay
  password: hunter2
sink:
  kind: kafka
  kafka:
    brokers: k:9092
    properties:
      compression.type: lz4
";

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_debezium_compatible() {
    let f = write(MINIMAL, "yaml");
    let c = Config::load_from(Some(f.path()), env(&[])).unwrap();
    assert_eq!(c.source.port, 5432);
    assert_eq!(c.outbox.tables.len(), 1);
    assert_eq!(c.outbox.tables[0].qualified(), ("public", "outbox"));
    assert_eq!(c.outbox.tables[0].columns.aggregate_id, "aggregateid");
    assert_eq!(c.outbox.route.template, "outbox.event.{aggregatetype}");
    let SinkConfig::Kafka(kafka) = c.sink else {
        panic!("kafka sink expected: {:?}", c.sink)
    };
    assert_eq!(kafka.properties["compression.type"], "lz4");
}

#[test]
fn environment_overrides_the_file() {
    let f = write(MINIMAL, "yaml");
    let c = Config::load_from(
        Some(f.path()),
        env(&[
            ("RELAY__SOURCE__HOST", "other"),
            ("RELAY__SOURCE__PORT", "6543"),
            ("RELAY__PIPELINE__INFLIGHT_BYTES", "1048576"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(c.source.host, "other");
    assert_eq!(c.source.port, 6543);
    assert_eq!(c.pipeline.inflight_bytes, 1_048_576);
}

#[test]
fn environment_sets_librdkafka_properties_with_underscores_for_dots() {
    let f = write(MINIMAL, "yaml");
    let c = Config::load_from(
        Some(f.path()),
        env(&[
            ("RELAY__SINK__KAFKA__PROPERTIES__SASL_PASSWORD", "s3cret"),
            ("RELAY__SINK__KAFKA__PROPERTIES__LINGER_MS", "20"),
            ("RELAY__SINK__KAFKA__PROPERTIES__ENABLE_IDEMPOTENCE", "true"),
        ]),
    )
    .unwrap();
    let props = kafka_of(&c).producer_properties().unwrap();
    assert_eq!(props["sasl.password"], "s3cret");
    assert_eq!(props["linger.ms"], "20");
    assert_eq!(props["compression.type"], "lz4", "file properties stay");
    assert!(!format!("{:?}", props.keys()).contains("sasl_password"));
}

#[test]
fn toml_files_work_too() {
    let f = write(
        "[source]\nhost='h'\ndatabase='d'\nuser='u'\n[sink]\nkind='null'\n",
        "toml",
    );
    let c = Config::load_from(Some(f.path()), env(&[])).unwrap();
    assert_eq!(c.sink.kind(), SinkKind::Null);
}

#[test]
fn errors_name_the_bad_key() {
    let cases = [
        (
            MINIMAL.replace("user: relay", "user: relay\n  sslmode: sometimes"),
            "source.sslmode",
        ),
        (
            MINIMAL.replace("host: db", "host: db\n  colour: blue"),
            "colour",
        ),
        (
            MINIMAL.replace("kind: kafka", "kind: carrier-pigeon"),
            "carrier-pigeon",
        ),
        (
            MINIMAL.replace("user: relay", "user: relay\n  slot: Bad-Slot"),
            "source.slot",
        ),
        (
            MINIMAL.replace("compression.type: lz4", "enable.idempotence: 'false'"),
            "enable.idempotence",
        ),
        (
            format!("{MINIMAL}pipeline:\n  inflight_bytes: 10\n"),
            "pipeline.inflight_bytes",
        ),
        (
            format!("{MINIMAL}outbox:\n  route:\n    template: ''\n"),
            "outbox.route",
        ),
        (
            format!("{MINIMAL}telemetry:\n  listen: nowhere\n"),
            "telemetry.listen",
        ),
        (MINIMAL.replace("kind: kafka", "kind: sqs"), "sink.sqs"),
        (
            MINIMAL.replace("kind: kafka", "kind: sns\n  sns:\n    max_concurrency: 0"),
            "sink.sns.max_concurrency",
        ),
    ];
    for (yaml, key) in cases {
        let f = write(&yaml, "yaml");
        let e = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "error {e:?} should name {key}");
    }
}

#[test]
fn secrets_are_not_printed() {
    let f = write(MINIMAL, "yaml");
    let c = Config::load_from(Some(f.path()), env(&[])).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("***"));
}

#[test]
fn missing_file_is_named() {
    let e = Config::load_from(
        Some(std::path::Path::new("/nonexistent/relay.yaml")),
        env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("/nonexistent/relay.yaml"), "{e}");
}

#[test]
fn authentication_policy_defaults_are_strict() {
    let f = write(MINIMAL, "yaml");
    let c = Config::load_from(Some(f.path()), env(&[])).unwrap();
    let o = c.source.connect_options().unwrap();
    assert_eq!(o.require_auth, outbox_pgwire::RequireAuth::ANY);
    assert_eq!(o.channel_binding, outbox_pgwire::ChannelBinding::Prefer);
    assert!(!o.allow_password_without_verified_tls);
}

#[test]
fn authentication_policy_keys_map_to_the_connection() {
    let f = write(
        &MINIMAL.replace(
            "user: relay",
            "user: relay\n  sslmode: verify-full\n  require_auth: scram-sha-256\n  channel_binding: require",
        ),
        "yaml",
    );
    let c = Config::load_from(
        Some(f.path()),
        env(&[("RELAY__SOURCE__ALLOW_PASSWORD_WITHOUT_VERIFIED_TLS", "true")]),
    )
    .unwrap();
    let o = c.source.connect_options().unwrap();
    assert_eq!(
        o.require_auth,
        outbox_pgwire::RequireAuth::only(&[outbox_pgwire::AuthMethod::ScramSha256])
    );
    assert_eq!(o.channel_binding, outbox_pgwire::ChannelBinding::Require);
    assert!(o.allow_password_without_verified_tls);
}

#[test]
fn authentication_policy_errors_name_the_key() {
    let cases = [
        (
            "require_auth: scram",
            "source.require_auth: invalid require_auth \"scram\"",
        ),
        ("require_auth: md5,!password", "cannot be mixed"),
        (
            "channel_binding: always",
            "source.channel_binding: invalid channel_binding \"always\"",
        ),
        (
            "sslmode: disable\n  channel_binding: require",
            "source.channel_binding: require needs TLS, but source.sslmode is disable",
        ),
    ];
    for (extra, expected) in cases {
        let f = write(
            &MINIMAL.replace("user: relay", &format!("user: relay\n  {extra}")),
            "yaml",
        );
        let e = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{extra}: {e}");
    }
}

/// Issue 11 item 3: the environment is text, and a string key must get that text
/// unchanged; the deserializer coerces it only where the key is a number or a boolean.
#[test]
fn environment_values_reach_string_keys_byte_for_byte() {
    let f = write(MINIMAL, "yaml");
    for value in [
        "007",
        "1e3",
        "1.50",
        "True",
        "null",
        "  spaced ",
        "-0",
        "0x10",
    ] {
        let c = Config::load_from(
            Some(f.path()),
            env(&[
                ("RELAY__SOURCE__PASSWORD", value),
                ("RELAY__SINK__KAFKA__PROPERTIES__SASL_PASSWORD", value),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.source.password.as_ref().map(Secret::expose),
            Some(value),
            "source.password"
        );
        let props = kafka_of(&c).producer_properties().unwrap();
        assert_eq!(props["sasl.password"], value, "sasl.password");
    }
}

#[test]
fn environment_values_still_parse_into_numeric_and_boolean_keys() {
    let f = write(MINIMAL, "yaml");
    let c = Config::load_from(
        Some(f.path()),
        env(&[
            ("RELAY__PIPELINE__MAX_BATCH_EVENTS", "10"),
            ("RELAY__SOURCE__PORT", "6543"),
            ("RELAY__SOURCE__CREATE_SLOT", "false"),
            ("RELAY__SOURCE__CREATE_PUBLICATION", "False"),
            ("RELAY__OUTBOX__COMMIT_LSN_HEADER", "true"),
            ("RELAY__SINK__KIND", "null"),
        ]),
    )
    .unwrap();
    assert_eq!(c.pipeline.max_batch_events, 10);
    assert_eq!(c.source.port, 6543);
    assert!(!c.source.create_slot);
    assert!(!c.source.create_publication);
    assert!(c.outbox.commit_lsn_header);
    assert_eq!(c.sink.kind(), SinkKind::Null);

    let e = Config::load_from(
        Some(f.path()),
        env(&[("RELAY__PIPELINE__MAX_BATCH_EVENTS", "ten")]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("max_batch_events"), "{e}");
}

/// YAML reads a bare `null` as "no value", not as the string; the sink that discards
/// everything must be asked for explicitly, so a bare null (or an empty `kind:`) is an
/// error that says how to spell it.
#[test]
fn sink_kind_null_is_spelled_quoted_or_none() {
    for kind in ["'null'", "\"null\"", "none"] {
        let f = write(
            &MINIMAL.replace("kind: kafka", &format!("kind: {kind}")),
            "yaml",
        );
        let c = Config::load_from(Some(f.path()), env(&[])).unwrap();
        assert_eq!(c.sink.kind(), SinkKind::Null, "kind: {kind}");
    }
    for kind in ["null", "~", ""] {
        let f = write(
            &MINIMAL.replace("kind: kafka", &format!("kind: {kind}")),
            "yaml",
        );
        let e = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sink.kind") && e.contains("\"null\"") && e.contains("none"),
            "kind: {kind} gives {e:?}"
        );
    }
}

#[test]
fn dead_connection_settings_default_and_override() {
    let f = write(MINIMAL, "yaml");
    let c = Config::load_from(Some(f.path()), env(&[])).unwrap();
    let l = c.source.connect_options().unwrap().liveness;
    assert_eq!(l, outbox_pgwire::Liveness::default());
    assert_eq!(l.receive_timeout, Some(std::time::Duration::from_secs(40)));
    assert_eq!(c.outbox.max_event_bytes, 8 * 1024 * 1024);

    let c = Config::load_from(
        Some(f.path()),
        env(&[
            ("RELAY__SOURCE__RECEIVE_TIMEOUT_MS", "0"),
            ("RELAY__SOURCE__TCP_USER_TIMEOUT_MS", "0"),
            ("RELAY__SOURCE__TCP_KEEPALIVE_IDLE_MS", "0"),
            ("RELAY__OUTBOX__MAX_EVENT_BYTES", "65536"),
        ]),
    )
    .unwrap();
    let l = c.source.connect_options().unwrap().liveness;
    assert_eq!(
        l,
        outbox_pgwire::Liveness {
            keepalive: None,
            tcp_user_timeout: None,
            receive_timeout: None
        }
    );
    assert_eq!(c.outbox.max_event_bytes, 65536);

    for (pairs, key) in [
        (
            &[("RELAY__SOURCE__RECEIVE_TIMEOUT_MS", "3000")][..],
            "source.receive_timeout_ms",
        ),
        (
            &[("RELAY__SOURCE__TCP_KEEPALIVE_COUNT", "0")][..],
            "source.tcp_keepalive_count",
        ),
        (
            &[("RELAY__OUTBOX__MAX_EVENT_BYTES", "10")][..],
            "outbox.max_event_bytes",
        ),
    ] {
        let e = Config::load_from(Some(f.path()), env(pairs))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "error {e:?} should name {key}");
    }
}

fn kafka_of(c: &Config) -> &outbox_connectors::kafka::KafkaConfig {
    match &c.sink {
        SinkConfig::Kafka(kafka) => kafka,
        other => panic!("kafka sink expected: {other:?}"),
    }
}

/// `sink.kind` names the section that must be present; after loading, the sink holds
/// exactly that connector's settings.
#[test]
fn sink_kind_selects_its_section() {
    for kind in ["kafka", "sns", "sqs"] {
        let yaml =
            format!("source:\n  host: db\n  database: app\n  user: relay\nsink:\n  kind: {kind}\n");
        let f = write(&yaml, "yaml");
        let e = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("sink.{kind}: required when sink.kind is {kind}")),
            "kind {kind}: {e}"
        );
    }
    let f = write(
        &MINIMAL.replace(
            "kind: kafka",
            "kind: sqs\n  sqs:\n    region: eu-west-1\n    max_concurrency: 3",
        ),
        "yaml",
    );
    let c = Config::load_from(Some(f.path()), env(&[])).unwrap();
    match c.sink {
        SinkConfig::Sqs(sqs) => assert_eq!(sqs.max_concurrency, 3),
        other => panic!("sqs sink expected: {other:?}"),
    }
}

#[test]
fn slot_safety_keys_default_to_halt_and_no_failover() {
    let f = write(MINIMAL, "yaml");
    let c = Config::load_from(Some(f.path()), env(&[])).unwrap();
    assert_eq!(c.source.on_slot_lost, crate::config::SlotLostPolicy::Halt);
    assert!(!c.source.slot_failover);
    let f = write(
        &MINIMAL.replace(
            "user: relay",
            "user: relay\n  slot_failover: true\n  on_slot_lost: halt",
        ),
        "yaml",
    );
    let c = Config::load_from(Some(f.path()), env(&[])).unwrap();
    assert!(c.source.slot_failover);
}

#[test]
fn snapshot_keys_parse_and_need_the_state_tables() {
    let f = write(
        &MINIMAL.replace(
            "user: relay",
            "user: relay\n  on_slot_lost: snapshot\n  snapshot: initial",
        ),
        "yaml",
    );
    let c = Config::load_from(Some(f.path()), env(&[])).unwrap();
    assert_eq!(
        c.source.on_slot_lost,
        crate::config::SlotLostPolicy::Snapshot
    );
    assert_eq!(c.source.snapshot, crate::config::SnapshotMode::Initial);
    assert!(c.source.snapshot_on_loss());
    assert_eq!(c.outbox.tables[0].snapshot_order(), vec!["timestamp", "id"]);
    let f = write(
        &MINIMAL.replace("user: relay", "user: relay\n  snapshot: when_needed"),
        "yaml",
    );
    let c = Config::load_from(
        Some(f.path()),
        env(&[
            ("RELAY__STATE__MODE", "off"),
            ("RELAY__OUTBOX__ON_INVALID", "dead_letter"),
        ]),
    );
    assert_eq!(
        c.unwrap_err().to_string(),
        "configuration: source.snapshot / source.on_slot_lost: a snapshot needs the state tables (they record that it is incomplete, so a crash during it leads to a new one), but state.mode is off"
    );
    let f = write(
        &MINIMAL.replace("user: relay", "user: relay\n  on_slot_lost: ignore"),
        "yaml",
    );
    let e = Config::load_from(Some(f.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ignore"), "{e}");
}

#[test]
fn cleanup_defaults_to_none_and_bounds_its_batches() {
    let f = write(MINIMAL, "yaml");
    let c = Config::load_from(Some(f.path()), env(&[])).unwrap();
    assert_eq!(c.outbox.cleanup, crate::config::CleanupPolicy::None);
    let c = Config::load_from(
        Some(f.path()),
        env(&[("RELAY__OUTBOX__CLEANUP", "delete_published")]),
    )
    .unwrap();
    assert_eq!(
        c.outbox.cleanup,
        crate::config::CleanupPolicy::DeletePublished
    );
    assert_eq!(c.outbox.cleanup_batch_rows, 1000);
    let e = Config::load_from(
        Some(f.path()),
        env(&[("RELAY__OUTBOX__CLEANUP_BATCH_ROWS", "0")]),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "configuration: outbox.cleanup_batch_rows: must be 1 to 100000 (got 0)"
    );
}

#[test]
fn debezium_placements_routes_and_cloudevents_load_and_are_checked() {
    let sqs = MINIMAL.replace(
        "kind: kafka",
        "kind: sqs\n  sqs:\n    region: eu-west-1\n    raw_payload: false",
    );
    let cases = [
        // Partitions are Kafka's.
        (
            format!("{sqs}outbox:\n  tables:\n    - table: outbox\n      partition_column: shard\n"),
            "outbox.tables[0].partition_column: only Kafka",
        ),
        (
            format!("{MINIMAL}outbox:\n  tables:\n    - table: outbox\n      partition_column: ''\n"),
            "outbox.tables[0].partition_column: must not be empty",
        ),
        (
            format!("{MINIMAL}outbox:\n  route:\n    regex: '(x'\n    replacement: y\n"),
            "outbox.route.regex:",
        ),
        (
            format!("{MINIMAL}outbox:\n  route:\n    regex: '(x)'\n    replacement: 'y.$2'\n"),
            "outbox.route.replacement:",
        ),
        (
            format!("{MINIMAL}outbox:\n  cloudevents:\n    mode: binary\n"),
            "source",
        ),
        (
            format!("{MINIMAL}outbox:\n  cloudevents:\n    source: 'not a uri'\n"),
            "outbox.cloudevents.source",
        ),
        (
            format!("{MINIMAL}outbox:\n  cloudevents:\n    source: /s\n    mode: batch\n"),
            "batch",
        ),
        (
            format!("{sqs}outbox:\n  cloudevents:\n    source: /s\n"),
            "outbox.cloudevents: needs sink.<kind>.raw_payload: true",
        ),
        (
            format!("{MINIMAL}outbox:\n  cloudevents:\n    source: /s\n  tables:\n    - table: outbox\n      header_columns:\n        - column: kind\n          header: ce_kind\n"),
            "outbox.tables[0].header_columns[0]: header \"ce_kind\" is reserved",
        ),
    ];
    for (yaml, key) in cases {
        let f = write(&yaml, "yaml");
        let e = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "error {e:?} should name {key}");
    }
    // What Debezium users copy over, set from the environment as a deployment would.
    let f = write(MINIMAL, "yaml");
    let c = Config::load_from(
        Some(f.path()),
        env(&[
            ("RELAY__OUTBOX__ROUTE__REGEX", "(?<routedByValue>.*)"),
            (
                "RELAY__OUTBOX__ROUTE__REPLACEMENT",
                "${routedByValue}.events",
            ),
            ("RELAY__OUTBOX__CLOUDEVENTS__SOURCE", "/orders-service"),
            ("RELAY__OUTBOX__CLOUDEVENTS__MODE", "structured"),
        ]),
    )
    .unwrap();
    assert_eq!(
        c.outbox.route.regex.as_deref(),
        Some("(?<routedByValue>.*)")
    );
    let ce = c.outbox.cloudevents.unwrap();
    assert_eq!(ce.mode, CloudEventsMode::Structured);
    assert_eq!(ce.data_content_type, "application/json");
    // Off unless configured.
    let c = Config::load_from(Some(f.path()), env(&[])).unwrap();
    assert!(c.outbox.cloudevents.is_none() && c.outbox.tables[0].partition_column.is_none());
}
