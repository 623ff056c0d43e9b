//! Issue 11 item 6: the metrics endpoint must not be able to take the relay down.
//!
//! Hundreds of clients open a connection and send a request one byte at a time without
//! ever finishing it, while events are written. The pipeline must not notice (the exact
//! set of events arrives while they are connected), a fresh scraper must get `/metrics`
//! once the slow ones hit their deadline, `HEAD` must have no body, and under a low
//! open-files limit the relay must neither spin on failing `accept`s nor lose the
//! descriptors it needs to reconnect to PostgreSQL.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_relay_tests::kafka::TopicReader;
use outbox_relay_tests::process::ProcessUsage;
use outbox_relay_tests::relay::{http_get, Relay, RelaySetup};
use outbox_relay_tests::{pg, unique};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_postgres::Client;

/// What the slow clients send, one byte per tick; long enough never to be finished.
const SLOW_REQUEST: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: relay\r\nX-Slow: ";

/// Clients that each connect and trickle a request that never ends, until stopped.
struct SlowClients {
    stop: Arc<AtomicBool>,
    /// Connections the server closed (a write failed).
    closed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SlowClients {
    fn open(port: u16, n: usize, tick: Duration) -> SlowClients {
        let stop = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(AtomicUsize::new(0));
        let tasks = (0..n)
            .map(|_| {
                let (stop, closed) = (stop.clone(), closed.clone());
                tokio::spawn(async move {
                    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
                        closed.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    let _ = s.set_nodelay(true);
                    let mut sent = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let byte = SLOW_REQUEST.get(sent).copied().unwrap_or(b'a');
                        if s.write_all(&[byte]).await.is_err() {
                            closed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        sent += 1;
                        tokio::time::sleep(tick).await;
                    }
                })
            })
            .collect();
        SlowClients {
            stop,
            closed,
            tasks,
        }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A raw request; returns the whole response as bytes (the server closes after one).
fn raw_request(port: u16, request: &str) -> Option<Vec<u8>> {
    let mut s =
        StdTcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    (!buf.is_empty()).then_some(buf)
}

/// Polls `/metrics` as a fresh client until it answers; the time it took.
async fn time_to_fresh_scrape(port: u16, give_up: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < give_up {
        let answer = tokio::task::spawn_blocking(move || http_get(port, "/metrics"))
            .await
            .unwrap();
        if matches!(answer, Some((200, ref body)) if body.contains("outbox_relay_build_info")) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn cpu_seconds(pid: u32) -> f64 {
    ProcessUsage::of(pid).expect("relay /proc").cpu_seconds
}

fn open_fds(pid: u32) -> usize {
    ProcessUsage::of(pid).map_or(0, |u| u.open_fds)
}

async fn insert_events(client: &Client, table: &str, ids: std::ops::Range<usize>) {
    for i in ids {
        client
            .execute(
                &format!(
                    "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) \
                     VALUES ('Order', $1, 'OrderPlaced', '{{}}')"
                ),
                &[&format!("order-{i}")],
            )
            .await
            .unwrap();
    }
}

/// Reads the topic until `n` records arrived; the set of their keys.
async fn read_keys(prefix: &str, n: usize, idle: Duration) -> (usize, BTreeSet<String>) {
    let prefix = prefix.to_string();
    tokio::task::spawn_blocking(move || {
        let mut reader = TopicReader::new(&prefix);
        reader.read_at_least(n, idle);
        reader.read_until(Duration::from_secs(1), |_| false);
        let keys = reader.records.iter().map(|r| r.key_str()).collect();
        (reader.records.len(), keys)
    })
    .await
    .unwrap()
}

/// The walsender process serving `slot`, if one is active.
async fn active_walsender(client: &Client, slot: &str) -> Option<i32> {
    client
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0)
}

fn expected_keys(ids: std::ops::Range<usize>) -> BTreeSet<String> {
    ids.map(|i| format!("order-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_neither_stall_events_nor_lock_out_a_scraper() {
    let name = unique("metrics_slow");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let setup = RelaySetup::new(&name, &table);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    let port = relay.metrics_port;

    let cpu_before = cpu_seconds(relay.pid());
    let attack_started = Instant::now();
    let slow = SlowClients::open(port, 500, Duration::from_millis(200));
    insert_events(&client, &table, 0..300).await;
    let (count, keys) = read_keys(&setup.topic_prefix, 300, Duration::from_secs(30)).await;
    let delivered_after = attack_started.elapsed();
    assert_eq!(count, 300, "relay log:\n{}", relay.log_tail());
    assert_eq!(keys, expected_keys(0..300));

    // The default deadline is 5 s: by then the held connections are dropped and a
    // scraper that retries gets in.
    let scrape = time_to_fresh_scrape(port, Duration::from_secs(15)).await;
    // A client notices the close at its next write or the one after (≤ 2 ticks).
    while slow.closed.load(Ordering::Relaxed) < 500
        && attack_started.elapsed() < Duration::from_secs(7)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu_used = cpu_seconds(relay.pid()) - cpu_before;
    let closed = slow.closed.load(Ordering::Relaxed);
    eprintln!(
        "events delivered {delivered_after:?} into the attack; fresh scrape after {scrape:?}; \
         {closed} of 500 slow connections closed by the relay; relay CPU {cpu_used:.2} s \
         over {:?}",
        attack_started.elapsed()
    );
    assert!(
        scrape.is_some_and(|t| t < Duration::from_secs(8)),
        "a fresh scraper got no /metrics within 15 s ({scrape:?})"
    );
    assert_eq!(
        closed, 500,
        "every never-ending request is disconnected within the 5 s deadline"
    );

    // HEAD: the GET head, no body.
    let head =
        raw_request(port, "HEAD /metrics HTTP/1.1\r\nHost: relay\r\n\r\n").expect("HEAD answered");
    let text = String::from_utf8_lossy(&head);
    let (status_and_headers, body) = text.split_once("\r\n\r\n").expect("response head");
    assert!(status_and_headers.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        status_and_headers
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{text}"
    );
    assert_eq!(body, "", "HEAD /metrics has a body");

    slow.stop().await;
    relay.terminate(Duration::from_secs(30));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_low_open_files_limit_slow_clients_neither_spin_the_relay_nor_block_reconnects() {
    let name = unique("metrics_fds");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    let mut setup = RelaySetup::new(&name, &table);
    setup.open_files_limit = Some(64);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    let pid = relay.pid();
    let baseline_fds = open_fds(pid);
    insert_events(&client, &table, 0..50).await;

    let slow = SlowClients::open(relay.metrics_port, 300, Duration::from_millis(200));
    // Let the relay take what it will of them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fds_under_attack = open_fds(pid);
    let cpu_before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu_used = cpu_seconds(pid) - cpu_before;

    // Replication is cut; the relay must get descriptors to reconnect while the slow
    // clients are still there.
    let mut problems = Vec::new();
    let walsender = active_walsender(&client, &setup.slot()).await;
    match walsender {
        Some(pid) => {
            client
                .execute("SELECT pg_terminate_backend($1)", &[&pid])
                .await
                .unwrap();
        }
        None => {
            problems.push("no replication stream while the slow clients were connected".to_string())
        }
    }
    let reconnect_started = Instant::now();
    let mut reconnected_after = None;
    while reconnect_started.elapsed() < Duration::from_secs(30) {
        let active = active_walsender(&client, &setup.slot()).await;
        if active.is_some() && active != walsender {
            reconnected_after = Some(reconnect_started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    insert_events(&client, &table, 50..150).await;
    let (count, keys) = read_keys(&setup.topic_prefix, 150, Duration::from_secs(20)).await;
    let still_running = relay.try_wait().is_none();
    slow.stop().await;

    eprintln!(
        "open files: {baseline_fds} before, {fds_under_attack} under attack (limit 64); relay \
         CPU {cpu_used:.2} s in 3 s; replication reconnected after {reconnected_after:?}; \
         {count} of 150 events delivered"
    );
    // All verdicts at once: on the old server several of them fail together.
    if cpu_used > 0.3 {
        problems.push(format!(
            "relay used {cpu_used:.2} s of CPU in 3 s of slow clients"
        ));
    }
    if reconnected_after.is_none() {
        problems.push("replication did not reconnect within 30 s".to_string());
    }
    if count != 150 || keys != expected_keys(0..150) {
        problems.push(format!(
            "{count} events delivered instead of exactly 0..150"
        ));
    }
    if !still_running {
        problems.push("the relay exited".to_string());
    }
    assert!(
        problems.is_empty(),
        "{problems:#?}\nrelay log:\n{}",
        relay.log_tail()
    );

    relay.terminate(Duration::from_secs(30));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}
