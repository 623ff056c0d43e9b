//! Issue 11 ("Also"): fatal errors go through the log, so with `log_format: json` every
//! line the relay writes is a JSON object, the last one included; a plain
//! `outbox-relay: …` line broke log pipelines that parse each line.

use std::process::Command;
use std::time::Duration;

use outbox_relay_tests::relay::{Relay, RelaySetup};
use outbox_relay_tests::{env, pg, unique};
use serde_json::Value;

/// Every non-empty line parsed as JSON; panics naming the first line that is not.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{text}"))
        })
        .collect()
}

#[test]
fn a_rejected_configuration_is_logged_in_the_configured_format() {
    let dir = std::env::temp_dir().join("outbox-relay-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join(format!("{}.yaml", unique("fatal_config")));
    // The format comes from the file in one run and from the environment in the other.
    std::fs::write(
        &config,
        "source:\n  host: h\n  database: d\n  user: u\n  sslmode: sometimes\nsink:\n  kind: none\ntelemetry:\n  log_format: json\n",
    )
    .unwrap();
    let from_file = Command::new(env::relay_bin())
        .arg("--config")
        .arg(&config)
        .arg("run")
        .output()
        .unwrap();
    std::fs::write(
        &config,
        "source:\n  host: h\n  database: d\n  user: u\nsink:\n  kind: carrier-pigeon\n",
    )
    .unwrap();
    let from_env = Command::new(env::relay_bin())
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("RELAY__TELEMETRY__LOG_FORMAT", "json")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&config);
    for (out, key) in [(from_file, "source.sslmode"), (from_env, "sink.kind")] {
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines = json_lines(&stderr);
        assert_eq!(lines.len(), 1, "{stderr}");
        assert_eq!(lines[0]["level"], "ERROR");
        let error = lines[0]["error"].as_str().unwrap_or_default();
        assert!(error.contains(key), "the error names {key}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_error_while_running_is_a_json_line_too() {
    let name = unique("fatal_run");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    // No publication, and the relay may not create one: it stops at start.
    let setup = RelaySetup::new(&name, &table).with_env(&[
        ("RELAY__TELEMETRY__LOG_FORMAT", "json"),
        ("RELAY__SOURCE__CREATE_PUBLICATION", "false"),
    ]);
    let mut relay = Relay::start(&setup);
    let status = relay.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{}", relay.log_tail());
    let lines = json_lines(&relay.log_text());
    let last = lines.last().expect("log lines");
    assert_eq!(last["level"], "ERROR", "{last}");
    assert_eq!(last["message"], "outbox-relay stopped", "{last}");
    assert!(
        last["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&setup.publication()),
        "the error names the publication: {last}"
    );
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}
