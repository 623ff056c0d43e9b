//! The README's configuration reference and the configuration structs name the same keys:
//! a key added to a struct without a README row fails here, and so does a README row for
//! a key the relay does not accept.

mod keys;
mod readme;

use outbox_relay::config::Config;

#[test]
fn readme_table_documents_exactly_the_accepted_keys() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let documented = readme::documented_keys(&readme);
    let documented_set = readme::key_set(&documented);
    let accepted = keys::keys::<Config>();

    let undocumented: Vec<&String> = accepted.difference(&documented_set).collect();
    let unknown: Vec<String> = documented
        .iter()
        .filter(|(k, _)| !accepted.contains(k))
        .map(|(k, line)| format!("{k} (README.md:{line})"))
        .collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "keys the relay accepts but README.md's configuration table does not document: \
         {undocumented:?}\nkeys README.md documents but the relay does not accept: {unknown:?}"
    );
}

/// The walk itself finds keys at every depth, in lists and behind `sink.kind`'s
/// sections, so an empty or shallow result cannot pass the comparison above by accident.
#[test]
fn the_walk_reaches_nested_list_and_sink_keys() {
    let accepted = keys::keys::<Config>();
    for key in [
        "source.host",
        "outbox.tables[].columns.aggregate_id",
        "outbox.tables[].header_columns[].header",
        "sink.kind",
        "sink.kafka.properties",
        "sink.sqs.max_concurrency",
        "telemetry.log_level",
    ] {
        assert!(accepted.contains(key), "{key} missing from {accepted:#?}");
    }
    assert!(!accepted.contains("sink.kafka.properties.linger.ms"));
}
