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
    let kafka = c.sink.kafka.unwrap();
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
    let props = c.sink.kafka.unwrap().producer_properties().unwrap();
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
    assert_eq!(c.sink.kind, SinkKind::Null);
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
