//! A replication connection whose packets silently vanish (a NAT or firewall dropping
//! the flow): the relay must notice within `source.receive_timeout_ms`, drop the
//! session, reconnect once the network is back, and lose or reorder nothing written
//! before, during or after.
//!
//! The relay reaches PostgreSQL through a `FaultProxy`, which blackholes the flow. The
//! proxy's own kernel still acknowledges TCP segments and keepalive probes, so only the
//! relay's application-level silence detection can catch this.

use std::time::{Duration, Instant};

use outbox_relay_tests::fault_proxy::FaultProxy;
use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::relay::{http_get, metric_sum, Relay, RelaySetup};
use outbox_relay_tests::{env, pg, unique};

const RECEIVE_TIMEOUT: Duration = Duration::from_millis(2000);

async fn insert(
    client: &tokio_postgres::Client,
    table: &str,
    numbers: std::ops::RangeInclusive<i32>,
) {
    for n in numbers {
        client
            .execute(
                &format!("INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'agg-1', 'Numbered', jsonb_build_object('n', $1::int))"),
                &[&n],
            )
            .await
            .unwrap();
    }
}

/// Polls until `check(metrics)` holds, for at most `limit`; returns how long it took.
async fn wait_for(
    relay: &mut Relay,
    limit: Duration,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if let Some(status) = relay.try_wait() {
            panic!("relay exited with {status}; log:\n{}", relay.log_tail());
        }
        if check(&relay.metrics()) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}; log:\n{}",
            relay.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn gauge(metrics: &str, name: &str) -> f64 {
    metric_sum(metrics, name, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_connection_is_noticed_within_the_receive_timeout_and_nothing_is_lost() {
    let name = unique("deadconn");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;

    let target = tokio::net::lookup_host((env::pg_host(), env::pg_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = FaultProxy::start(target).await;
    let proxy_port = proxy.port().to_string();
    let timeout_ms = RECEIVE_TIMEOUT.as_millis().to_string();
    // A restart backoff long enough to heal the network before the first reconnect, so
    // the counts below are exact.
    let setup = RelaySetup::new(&name, &table).with_env(&[
        ("RELAY__SOURCE__HOST", "127.0.0.1"),
        ("RELAY__SOURCE__PORT", &proxy_port),
        ("RELAY__SOURCE__RECEIVE_TIMEOUT_MS", &timeout_ms),
        ("RELAY__PIPELINE__RESTART_BACKOFF_MS", "4000"),
        ("RELAY__PIPELINE__RESTART_BACKOFF_MAX_MS", "4000"),
    ]);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    assert_eq!(
        proxy.accepted(),
        3,
        "the SQL, the parking writer's and the replication connection go through the proxy"
    );

    // Before: delivered and confirmed, so that nothing is replayed later.
    insert(&client, &table, 1..=20).await;
    let written: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let written = pg::parse_lsn(&written);
    let start = Instant::now();
    while pg::confirmed_flush(&client, &setup.slot())
        .await
        .unwrap_or(0)
        < written
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the first events were not confirmed; log:\n{}",
            relay.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // During: the network drops everything.
    proxy.blackhole();
    let blackholed_at = Instant::now();
    insert(&client, &table, 21..=40).await;
    wait_for(
        &mut relay,
        Duration::from_secs(30),
        "replicating = 0 after the blackhole",
        |m| gauge(m, "outbox_relay_replicating") == 0.0,
    )
    .await;
    let noticed = blackholed_at.elapsed();
    // The last byte came at most a heartbeat (1 s) before the blackhole; the timeout
    // runs from there.
    assert!(
        noticed >= RECEIVE_TIMEOUT - Duration::from_millis(1100)
            && noticed <= RECEIVE_TIMEOUT + Duration::from_millis(1500),
        "noticed after {noticed:?} (receive timeout {RECEIVE_TIMEOUT:?})"
    );
    wait_for(
        &mut relay,
        Duration::from_secs(10),
        "restarts_total = 1",
        |m| gauge(m, "outbox_relay_restarts_total") >= 1.0,
    )
    .await;
    let m = relay.metrics();
    assert_eq!(gauge(&m, "outbox_relay_restarts_total"), 1.0);
    assert_eq!(
        metric_sum(&m, "outbox_relay_errors_total", &["kind=\"postgres\""]),
        1.0
    );
    assert_eq!(
        gauge(&m, "outbox_relay_errors_total"),
        1.0,
        "no other error"
    );
    assert_eq!(
        http_get(relay.metrics_port, "/readyz").map(|(s, _)| s),
        Some(503)
    );
    let log = relay.log_text();
    assert!(
        log.contains("no data from PostgreSQL for 2s on the replication stream"),
        "the log says why:\n{}",
        relay.log_tail()
    );

    // After: the network is back; the relay reconnects on its own.
    proxy.heal();
    insert(&client, &table, 41..=60).await;
    wait_for(
        &mut relay,
        Duration::from_secs(30),
        "replicating again",
        |m| gauge(m, "outbox_relay_replicating") == 1.0,
    )
    .await;

    let prefix = setup.topic_prefix.clone();
    let records = tokio::task::spawn_blocking(move || {
        let mut reader = TopicReader::new(&prefix);
        reader.read_at_least(60, Duration::from_secs(60));
        reader.read_until(Duration::from_secs(2), |_| false);
        reader.into_records()
    })
    .await
    .unwrap();
    let numbers: Vec<i64> = records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(r.payload.as_ref().unwrap()).unwrap();
            v["n"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(
        numbers,
        (1..=60).collect::<Vec<i64>>(),
        "every event once, in commit order"
    );

    let m = relay.metrics();
    assert_eq!(
        gauge(&m, "outbox_relay_restarts_total"),
        1.0,
        "one reconnect"
    );
    assert_eq!(gauge(&m, "outbox_relay_errors_total"), 1.0);
    assert_eq!(relay.terminate(Duration::from_secs(30)).code(), Some(0));
    drop(proxy);
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}
