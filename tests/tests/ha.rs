//! Standby replicas and leader election (issue 14.2), against PostgreSQL and Kafka: two
//! replicas of one slot under a steady write load; the leader is cut off from the
//! database once (a TCP proxy goes silent), SIGKILLed ten times and frozen (SIGSTOP)
//! once past its lease. Each time the standby takes over, and the time from the fault to
//! its first published batch is measured; the cut-off leader stops by itself (exit 3),
//! and so does the frozen one when resumed, instead of publishing on. In the end every
//! event is in Kafka, each aggregate's first copies in order (duplicates only from
//! replays).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use outbox_relay_tests::env;
use outbox_relay_tests::fault_proxy::FaultProxy;
use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::relay::{http_get, metric_sum, Relay, RelaySetup};
use outbox_relay_tests::{ordered, pg, unique};

fn leads(relay: &Relay) -> bool {
    metric_sum(&relay.metrics(), "outbox_relay_leader", &[]) == 1.0
        && metric_sum(&relay.metrics(), "outbox_relay_replicating", &[]) == 1.0
}

fn published(relay: &Relay) -> f64 {
    metric_sum(&relay.metrics(), "outbox_relay_events_published_total", &[])
}

/// Waits until `relay` is a standby: ready, saying so, not leading.
fn wait_standby(relay: &mut Relay) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = relay.try_wait() {
            panic!("standby exited with {status}:\n{}", relay.log_tail());
        }
        let ready = http_get(relay.metrics_port, "/readyz");
        if ready == Some((200, "standby\n".to_string()))
            && relay.metric("outbox_relay_leader") == Some(0.0)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no standby: {ready:?}\n{}",
            relay.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Time until `relay` leads and has published more than it had: the failover time.
fn wait_takeover(relay: &mut Relay, since: Instant, limit: Duration) -> Duration {
    let before = published(relay);
    loop {
        if let Some(status) = relay.try_wait() {
            panic!("standby exited with {status}:\n{}", relay.log_tail());
        }
        if leads(relay) && published(relay) > before {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "no takeover within {limit:?}:\n{}",
            relay.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_from_a_killed_or_frozen_leader_without_losing_or_reordering() {
    let name = unique("ha");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    ordered::create_table(&client, &table).await;
    let setup = RelaySetup::new(&name, &table).with_env(&[("RELAY__HA__ENABLED", "true")]);
    let stems = [format!("{name}-a"), format!("{name}-b")];
    // The first leader reaches PostgreSQL through a proxy that can go silent.
    let target = format!("{}:{}", env::pg_host(), env::pg_port());
    let proxy = FaultProxy::start(target.parse().unwrap()).await;
    let port = proxy.port().to_string();
    let behind_proxy = setup
        .clone()
        .with_env(&[("RELAY__SOURCE__PORT", port.as_str())]);
    let mut replicas = vec![Relay::start_replica(&behind_proxy, &stems[0])];
    replicas[0].wait_ready(Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !leads(&replicas[0]) {
        assert!(Instant::now() < deadline, "{}", replicas[0].log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    replicas.push(Relay::start_replica(&setup, &stems[1]));
    wait_standby(&mut replicas[1]);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writers =
        ordered::spawn_writers(&table, "agg-", 4, 40, 0, Duration::from_millis(10), stop_rx);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A network partition between the leader and the database.
    let fault = Instant::now();
    proxy.blackhole();
    let took = wait_takeover(&mut replicas[1], fault, Duration::from_secs(30));
    println!("leader cut off from the database replaced after {took:?}");
    let status = replicas[0].wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(3), "{}", replicas[0].log_tail());
    proxy.heal();
    replicas[0] = Relay::start_replica(&setup, &stems[0]);
    wait_standby(&mut replicas[0]);

    let mut kills = Vec::new();
    for round in 0..11 {
        let leader = if leads(&replicas[0]) { 0 } else { 1 };
        let standby = 1 - leader;
        assert!(!leads(&replicas[standby]), "two leaders");
        let fault = Instant::now();
        if round < 10 {
            replicas[leader].kill9();
            kills.push(wait_takeover(
                &mut replicas[standby],
                fault,
                Duration::from_secs(15),
            ));
        } else {
            // Frozen past its lease (3 s): PostgreSQL ends its lock session after 6 s.
            replicas[leader].freeze();
            let took = wait_takeover(&mut replicas[standby], fault, Duration::from_secs(30));
            println!("frozen leader replaced after {took:?}");
            replicas[leader].thaw();
            let status = replicas[leader].wait(Duration::from_secs(10));
            assert_eq!(status.code(), Some(3), "{}", replicas[leader].log_tail());
            assert!(replicas[leader].log_text().contains("leadership lost"));
        }
        replicas[leader] = Relay::start_replica(&setup, &stems[leader]);
        wait_standby(&mut replicas[leader]);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    kills.sort();
    println!(
        "failover after SIGKILL: {:?} (p50 {:?}, max {:?})",
        kills,
        kills[kills.len() / 2],
        kills.last().unwrap()
    );
    for k in &kills {
        assert!(*k < Duration::from_secs(10), "failover took {k:?}");
    }

    let _ = stop_tx.send(true);
    let mut expected = BTreeMap::new();
    for w in writers {
        expected.extend(w.await.unwrap());
    }
    let total: u64 = expected.values().sum();
    let topic = format!("{}.Order", setup.topic_prefix);
    let records = tokio::task::spawn_blocking(move || {
        let mut r = TopicReader::exact(&topic);
        r.read_distinct_ids(total as usize, Duration::from_secs(60));
        r.into_records()
    })
    .await
    .unwrap();
    let duplicates = ordered::check(&records, &expected).unwrap();
    println!("{total} events, {duplicates} duplicates");

    for r in &mut replicas {
        assert!(
            r.terminate(Duration::from_secs(30)).success(),
            "{}",
            r.log_tail()
        );
    }
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}
