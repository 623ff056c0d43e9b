//! The configurations in `examples/config/` load as they are (no environment), so they
//! cannot rot as keys change; each is checked for the settings it exists to show.

use std::collections::BTreeSet;
use std::path::PathBuf;

use outbox_relay::config::{Config, SinkConfig};

fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/config"))
}

fn load(name: &str) -> Config {
    let path = dir().join(name);
    Config::load_from(Some(&path), std::iter::empty())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A new example must get a test here too.
#[test]
fn every_example_is_tested() {
    let found: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let tested: BTreeSet<String> = [
        "kafka.yaml",
        "sns.yaml",
        "sqs-fifo.yaml",
        "tls-verify-full.yaml",
    ]
    .map(String::from)
    .into();
    assert_eq!(found, tested);
}

#[test]
fn kafka_example() {
    let c = load("kafka.yaml");
    let SinkConfig::Kafka(kafka) = &c.sink else {
        panic!("kafka sink expected: {:?}", c.sink)
    };
    let props = kafka.producer_properties().unwrap();
    assert_eq!(
        props["bootstrap.servers"],
        "kafka-0.internal:9093,kafka-1.internal:9093,kafka-2.internal:9093"
    );
    assert_eq!(props["security.protocol"], "SASL_SSL");
    assert_eq!(
        props["enable.idempotence"], "true",
        "the relay's defaults stay"
    );
    assert_eq!(c.outbox.route.template, "outbox.event.{aggregatetype}");
    assert!(c.outbox.commit_lsn_header);
    assert_eq!(c.source.sslmode, "verify-full");
}

#[test]
fn sns_example() {
    let c = load("sns.yaml");
    let SinkConfig::Sns(sns) = &c.sink else {
        panic!("sns sink expected: {:?}", c.sink)
    };
    assert_eq!(sns.region.as_deref(), Some("eu-west-1"));
    assert_eq!(sns.max_concurrency, 32);
    assert!(!sns.raw_payload);
    assert!(!sns.fifo);
    assert_eq!(c.outbox.route.overrides.len(), 1);
    assert_eq!(c.outbox.route.overrides[0].aggregate_type, "Payment");
    assert!(c
        .outbox
        .dead_letter_destination
        .starts_with("arn:aws:sns:eu-west-1:"));
}

#[test]
fn sqs_fifo_example() {
    let c = load("sqs-fifo.yaml");
    let SinkConfig::Sqs(sqs) = &c.sink else {
        panic!("sqs sink expected: {:?}", c.sink)
    };
    assert!(sqs.fifo);
    assert!(c.outbox.route.template.ends_with(".fifo"));
    assert!(c.outbox.dead_letter_destination.ends_with(".fifo"));
    assert_eq!(c.outbox.tables[0].qualified(), ("sales", "outbox"));
    let header = &c.outbox.tables[0].header_columns[0];
    assert_eq!(
        (header.column.as_str(), header.header.as_deref()),
        ("tenant_id", Some("tenant"))
    );
}

#[test]
fn tls_verify_full_example() {
    let c = load("tls-verify-full.yaml");
    assert!(matches!(c.sink, SinkConfig::Null));
    assert_eq!(
        c.source.password_file.as_deref(),
        Some(std::path::Path::new(
            "/run/secrets/outbox-relay-pg-password"
        ))
    );
    // The secret file exists only where the relay runs: read a stand-in here.
    let stand_in = std::env::temp_dir().join(format!("example-pg-password-{}", std::process::id()));
    std::fs::write(&stand_in, "s3cret\n").unwrap();
    let mut source = c.source.clone();
    source.password_file = Some(stand_in.clone());
    let o = source.connect_options();
    std::fs::remove_file(&stand_in).unwrap();
    let o = o.unwrap();
    assert_eq!(o.password.as_deref(), Some("s3cret"));
    assert_eq!(o.sslmode, outbox_pgwire::SslMode::VerifyFull);
    assert_eq!(
        o.sslrootcert.as_deref(),
        Some(std::path::Path::new("/etc/outbox-relay/pg-ca.pem"))
    );
    assert_eq!(o.channel_binding, outbox_pgwire::ChannelBinding::Require);
    assert_eq!(
        o.require_auth,
        outbox_pgwire::RequireAuth::only(&[outbox_pgwire::AuthMethod::ScramSha256])
    );
    assert!(!o.allow_password_without_verified_tls);
}
