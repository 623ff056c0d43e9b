//! A slot that existed and is gone stops the relay (issue 10 item 1): it is never
//! re-created silently from the current WAL position, which would skip every event
//! written while no slot held the WAL.
//!
//! Before the fix the relay logged "created replication slot" and went on: the row
//! written while the slot was missing was never published and nothing said so.

use std::process::{Command, ExitStatus};
use std::time::Duration;

use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::relay::{Relay, RelaySetup};
use outbox_relay_tests::{pg, unique};
use tokio_postgres::Client;

async fn insert(client: &Client, table: &str, marker: &str) {
    client
        .execute(
            &format!(
                "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', $1, 'T', '{{}}')"
            ),
            &[&marker],
        )
        .await
        .unwrap();
}

/// The markers (aggregate ids) published to the test's topics within `idle` of quiet.
fn published(prefix: &str, want: usize, idle: Duration) -> Vec<String> {
    let mut reader = TopicReader::new(prefix);
    reader.read_at_least(want, idle);
    reader.read_until(Duration::from_secs(2), |_| false);
    reader.records.iter().map(|r| r.key_str()).collect()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

async fn slot_exists(client: &Client, slot: &str) -> bool {
    client
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .is_some()
}

/// Checks the relay's exit and the documented error.
fn assert_halted_on_lost_slot(relay: &mut Relay, status: ExitStatus, slot: &str, recorded: u64) {
    let log = relay.log_text();
    assert_eq!(status.code(), Some(1), "exit status {status}; log:\n{log}");
    let lsn = format!("{:X}/{:X}", recorded >> 32, recorded & 0xffff_ffff);
    let expected = format!("replication slot \"{slot}\" was lost: it no longer exists");
    assert!(log.contains(&expected), "no {expected:?} in log:\n{log}");
    assert!(
        log.contains(&format!(
            "the relay delivered every event committed before LSN {lsn}"
        )),
        "the error does not name the recorded LSN {lsn}:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "DELETE FROM \"outbox_relay\".progress WHERE slot = '{slot}'"
        )),
        "the error does not give the operator's statement:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_dropped_while_the_relay_runs_halts_it_and_nothing_after_is_acknowledged() {
    let name = unique("slotlost_run");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let setup = RelaySetup::new(&name, &table);
    let slot = setup.slot();
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    insert(&client, &table, "before").await;
    let prefix = setup.topic_prefix.clone();
    let seen = tokio::task::spawn_blocking(move || published(&prefix, 1, Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(seen, vec!["before".to_string()]);
    // Delivery of "before" is recorded (the writer runs every status interval).
    let mut recorded = None;
    for _ in 0..100 {
        recorded = pg::recorded_progress(&client, &slot).await;
        let confirmed = pg::confirmed_flush(&client, &slot).await;
        if recorded.is_some() && recorded >= confirmed && confirmed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recorded = recorded.expect("progress recorded");

    // Freeze the relay so it cannot reconnect in between, end its walsender, drop the
    // slot, and write while no slot exists.
    signal(relay.pid(), "-STOP");
    for _ in 0..100 {
        client
            .execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL",
                &[&slot],
            )
            .await
            .unwrap();
        if client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!slot_exists(&client, &slot).await, "slot still there");
    let before_missing = pg::parse_lsn(
        &client
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
    );
    insert(&client, &table, "while-missing").await;
    signal(relay.pid(), "-CONT");

    // The stopped session may still record positions it had delivered before the loss
    // (heartbeats), never one past the row written while the slot was missing.
    let status = relay.wait(Duration::from_secs(30));
    let recorded_now = pg::recorded_progress(&client, &slot).await.unwrap();
    assert!(
        recorded <= recorded_now && recorded_now <= before_missing,
        "record {recorded_now:#x} not between {recorded:#x} and the missing row at {before_missing:#x}"
    );
    assert_halted_on_lost_slot(&mut relay, status, &slot, recorded_now);
    assert!(
        !slot_exists(&client, &slot).await,
        "the relay re-created the slot"
    );
    assert_eq!(
        pg::recorded_progress(&client, &slot).await,
        Some(recorded_now),
        "nothing may be acknowledged after the loss"
    );
    let prefix = setup.topic_prefix.clone();
    let seen = tokio::task::spawn_blocking(move || published(&prefix, 2, Duration::from_secs(3)))
        .await
        .unwrap();
    assert_eq!(
        seen,
        vec!["before".to_string()],
        "only the event before the loss"
    );
    pg::cleanup(&client, &slot, &setup.publication(), &[&table]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_dropped_while_the_relay_is_down_stops_the_next_start() {
    let name = unique("slotlost_down");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let setup = RelaySetup::new(&name, &table);
    let slot = setup.slot();
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    insert(&client, &table, "before").await;
    let prefix = setup.topic_prefix.clone();
    let seen = tokio::task::spawn_blocking(move || published(&prefix, 1, Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(seen, vec!["before".to_string()]);
    let status = relay.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}: {}", relay.log_tail());
    let recorded = pg::recorded_progress(&client, &slot)
        .await
        .expect("progress recorded at shutdown");

    pg::confirmed_flush_when_inactive(&client, &slot).await;
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .unwrap();
    insert(&client, &table, "while-down").await;

    // `check` says the same before anything runs.
    let mut check = Relay::start_with_args(&setup, &["check"]);
    let status = check.wait(Duration::from_secs(60));
    let report = check.log_text();
    assert!(!status.success(), "{report}");
    let expected = format!("FAIL slot: replication slot \"{slot}\" was lost: it no longer exists");
    assert!(report.contains(&expected), "no {expected:?} in:\n{report}");
    std::fs::remove_file(&check.log).unwrap();

    let mut relay = Relay::start(&setup);
    let status = relay.wait(Duration::from_secs(30));
    assert_halted_on_lost_slot(&mut relay, status, &slot, recorded);
    assert!(
        !slot_exists(&client, &slot).await,
        "the relay re-created the slot"
    );
    let prefix = setup.topic_prefix.clone();
    let seen = tokio::task::spawn_blocking(move || published(&prefix, 2, Duration::from_secs(3)))
        .await
        .unwrap();
    assert_eq!(seen, vec!["before".to_string()]);

    // The operator's way out, as the error says: forget the record, start again. The
    // slot is created from now on; the row written while it was missing stays unpublished.
    client
        .execute(
            "DELETE FROM outbox_relay.progress WHERE slot = $1",
            &[&slot],
        )
        .await
        .unwrap();
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    assert_eq!(
        relay.metric("outbox_relay_slot_created_total"),
        Some(1.0),
        "{}",
        relay.log_tail()
    );
    insert(&client, &table, "after").await;
    let prefix = setup.topic_prefix.clone();
    let mut seen =
        tokio::task::spawn_blocking(move || published(&prefix, 2, Duration::from_secs(30)))
            .await
            .unwrap();
    seen.sort();
    assert_eq!(seen, vec!["after".to_string(), "before".to_string()]);

    // Heartbeats (every second here) are transactions: delivered, they date the
    // acknowledged position, and the lag in seconds stays within a few intervals.
    let mut acked = 0.0;
    for _ in 0..50 {
        acked = relay
            .metric("outbox_relay_last_acked_commit_timestamp_seconds")
            .unwrap_or(0.0);
        if acked > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        acked > now - 10.0 && acked <= now + 1.0,
        "last acked heartbeat at {acked}, now {now}"
    );
    let lag = relay.metric("outbox_relay_source_lag_seconds").unwrap();
    assert!((0.0..5.0).contains(&lag), "source lag {lag} s");
    let info = format!(
        "outbox_relay_info{{database=\"{}\",publication=\"{}\",sink=\"kafka\",slot=\"{slot}\"}}",
        outbox_relay_tests::env::pg_database(),
        setup.publication()
    );
    assert_eq!(relay.metric(&info), Some(1.0), "{}", relay.metrics());
    relay.terminate(Duration::from_secs(30));
    pg::cleanup(&client, &slot, &setup.publication(), &[&table]).await;
}
