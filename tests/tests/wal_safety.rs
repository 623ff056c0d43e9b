//! WAL safety (issue 10 item 5): with `max_slot_wal_keep_size` set, a stalled relay's
//! slot is invalidated once enough WAL is written. The relay shows it coming
//! (`outbox_relay_slot_safe_wal_size_bytes` shrinking, `slot_wal_status`), and when the
//! slot is lost it stops with `source.on_slot_lost = halt` instead of re-creating it.
//!
//! PostgreSQL 18's `idle_replication_slot_timeout` invalidates a slot nobody reads; the
//! relay's next start reports that loss the same way.
//!
//! Runs on a private cluster: a small `max_slot_wal_keep_size` on the shared one would
//! invalidate every other lagging slot on it. The tests take turns on it (`SERVER`), since
//! each changes a server-wide setting.

use std::time::{Duration, Instant};

use outbox_relay_tests::pg::PrivateCluster;
use outbox_relay_tests::relay::{metric_sum, Relay, RelaySetup};
use outbox_relay_tests::{pg, unique};
use tokio_postgres::Client;

const KEEP_MB: i64 = 64;

static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Writes about `mb` MiB of WAL outside the publication.
async fn write_wal(client: &Client, filler: &str, mb: usize) {
    for _ in 0..mb {
        client
            .batch_execute(&format!(
                "INSERT INTO {filler} SELECT repeat('x', 1000) FROM generate_series(1, 1000)"
            ))
            .await
            .unwrap();
    }
}

async fn wait_metric(relay: &Relay, what: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let start = Instant::now();
    loop {
        let v = metric_sum(&relay.metrics(), what, &[]);
        if ok(v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} stayed at {v}; log:\n{}",
            relay.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_relays_slot_is_shown_shrinking_then_lost_and_the_relay_halts() {
    let _turn = SERVER.lock().await;
    let cluster = PrivateCluster::start();
    let client = cluster.connect().await;
    for sql in [
        format!("ALTER SYSTEM SET max_slot_wal_keep_size = '{KEEP_MB}MB'"),
        "SELECT pg_reload_conf()".into(),
    ] {
        client.batch_execute(&sql).await.unwrap();
    }
    let name = unique("walsafety");
    let table = format!("{name}_outbox");
    let filler = format!("{name}_filler");
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    client
        .batch_execute(&format!("CREATE TABLE {filler} (t text)"))
        .await
        .unwrap();

    // A broker nobody listens on: the relay reads but acknowledges nothing, so its slot
    // cannot advance.
    let port = cluster.port.to_string();
    let setup = RelaySetup::new(&name, &table).with_env(&[
        ("RELAY__SOURCE__PORT", port.as_str()),
        ("RELAY__SINK__KAFKA__BROKERS", "127.0.0.1:1"),
        ("RELAY__PIPELINE__SHUTDOWN_TIMEOUT_MS", "1000"),
    ]);
    let slot = setup.slot();
    let mut relay = Relay::start(&setup);
    wait_metric(&relay, "outbox_relay_replicating", |v| v == 1.0).await;
    client
        .batch_execute(&format!(
            "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'stuck', 'T', '{{}}')"
        ))
        .await
        .unwrap();

    let keep = wait_metric(&relay, "outbox_relay_slot_max_wal_keep_size_bytes", |v| {
        v > 0.0
    })
    .await;
    assert_eq!(keep, (KEEP_MB << 20) as f64);
    let reserved = "outbox_relay_slot_wal_status{wal_status=\"reserved\"}";
    assert_eq!(relay.metric(reserved), Some(1.0), "{}", relay.metrics());
    let first = wait_metric(&relay, "outbox_relay_slot_safe_wal_size_bytes", |v| v > 0.0).await;
    // PostgreSQL counts whole 16 MiB segments: up to one more than the limit is safe.
    assert!(
        first <= keep + (16 << 20) as f64,
        "safe_wal_size {first} above the limit {keep} plus a segment"
    );

    write_wal(&client, &filler, 24).await;
    let second = wait_metric(&relay, "outbox_relay_slot_safe_wal_size_bytes", |v| {
        v >= 0.0 && v < first - (16 << 20) as f64
    })
    .await;
    eprintln!("safe_wal_size: {first} → {second} after ~24 MiB of WAL");

    // Past the limit, the next checkpoint invalidates the slot and ends its walsender.
    write_wal(&client, &filler, (KEEP_MB as usize) + 16).await;
    client
        .batch_execute("SELECT pg_switch_wal()")
        .await
        .unwrap();
    client.batch_execute("CHECKPOINT").await.unwrap();
    let status = relay.wait(Duration::from_secs(90));
    let log = relay.log_text();
    assert_eq!(status.code(), Some(1), "{status}; log:\n{log}");
    let expected = format!(
        "replication slot \"{slot}\" was lost: PostgreSQL invalidated it (wal_status = lost"
    );
    assert!(log.contains(&expected), "no {expected:?} in:\n{log}");
    assert!(
        log.contains("Nothing was acknowledged and no new slot was created"),
        "{log}"
    );
    let wal_status: Option<String> = client
        .query_one(
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(wal_status.as_deref(), Some("lost"));

    for sql in [
        "ALTER SYSTEM RESET max_slot_wal_keep_size",
        "SELECT pg_reload_conf()",
    ] {
        client.batch_execute(sql).await.unwrap();
    }
    pg::cleanup(&client, &slot, &setup.publication(), &[&table, &filler]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_idle_past_idle_replication_slot_timeout_is_reported_lost_on_18() {
    let _turn = SERVER.lock().await;
    let cluster = PrivateCluster::start();
    let client = cluster.connect().await;
    let major = pg::server_major(&client).await;
    if major < 18 {
        // The setting is 18's: older servers keep an idle slot forever.
        let err = client
            .batch_execute("SHOW idle_replication_slot_timeout")
            .await
            .unwrap_err();
        assert_eq!(
            err.as_db_error().map(|e| e.message()),
            Some("unrecognized configuration parameter \"idle_replication_slot_timeout\"")
        );
        return;
    }
    let name = unique("idleslot");
    let table = format!("{name}_outbox");
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let port = cluster.port.to_string();
    let setup = RelaySetup::new(&name, &table).with_env(&[("RELAY__SOURCE__PORT", port.as_str())]);
    let slot = setup.slot();
    let mut relay = Relay::start(&setup);
    wait_metric(&relay, "outbox_relay_replicating", |v| v == 1.0).await;
    let status = relay.terminate(Duration::from_secs(30));
    assert!(status.success(), "{}", relay.log_tail());
    pg::confirmed_flush_when_inactive(&client, &slot).await;

    for sql in [
        "ALTER SYSTEM SET idle_replication_slot_timeout = '1s'",
        "SELECT pg_reload_conf()",
    ] {
        client.batch_execute(sql).await.unwrap();
    }
    // Invalidation happens at a checkpoint once the slot has been idle long enough.
    let mut reason: Option<String> = None;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        client.batch_execute("CHECKPOINT").await.unwrap();
        reason = client
            .query_one(
                "SELECT invalidation_reason FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .unwrap()
            .get(0);
        if reason.is_some() {
            break;
        }
    }
    for sql in [
        "ALTER SYSTEM RESET idle_replication_slot_timeout",
        "SELECT pg_reload_conf()",
    ] {
        client.batch_execute(sql).await.unwrap();
    }
    assert_eq!(reason.as_deref(), Some("idle_timeout"));

    let mut relay = Relay::start(&setup);
    let status = relay.wait(Duration::from_secs(30));
    let log = relay.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    let expected = format!(
        "replication slot \"{slot}\" was lost: PostgreSQL invalidated it (wal_status = lost, invalidation_reason = idle_timeout)"
    );
    assert!(log.contains(&expected), "no {expected:?} in:\n{log}");
    pg::cleanup(&client, &slot, &setup.publication(), &[&table]).await;
}
