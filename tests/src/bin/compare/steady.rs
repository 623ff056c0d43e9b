//! Phase 2: paced writers at fixed rates, one system at a time; end-to-end latency per
//! event from the broker append time and the insert time in the payload.

use super::*;
use crate::kafka::{
    create_topics, delete_topics, json_int, read_topic, topic_count, watermark_consumer,
};
use crate::processes::{
    broker_pauses, debezium_message_topic, gc_log_len, start_debezium, start_recvlogical,
    start_relay, usage,
};

pub(crate) async fn steady_phase(
    args: &Arc<Args>,
    client: &tokio_postgres::Client,
    run: &str,
    topic_base: &str,
) -> Vec<(System, SteadyResult)> {
    let table = format!("{run}_steady");
    let publication = table.clone();
    pg::create_outbox_table(client, &table, "jsonb", false).await;
    client
        .batch_execute(&format!(
            "CREATE PUBLICATION {publication} FOR TABLE {table} WITH (publish = 'insert')"
        ))
        .await
        .expect("steady publication");
    let mut results = Vec::new();
    for system in [System::Relay, System::RelayExactlyOnce, System::Debezium] {
        if !args.steady_systems.iter().any(|s| s == system.tag()) {
            continue;
        }
        for &rate in &args.rates {
            let tag = system.tag().replace('-', "_");
            let slot = format!("{run}_s{rate}_{tag}");
            let prefix = format!("{topic_base}-s{rate}-{tag}");
            let topic = format!("{prefix}.Order");
            create_topics(std::slice::from_ref(&topic)).await;
            client
                .execute(
                    "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                    &[&slot],
                )
                .await
                .expect("create slot");
            let extra: Vec<String> = (0..args.extra_slots)
                .map(|i| format!("{slot}_x{i}"))
                .collect();
            let mut others = Vec::new();
            for x in &extra {
                client
                    .execute(
                        "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                        &[x],
                    )
                    .await
                    .expect("create extra slot");
                others.push(start_recvlogical(x, &publication));
            }
            let mut p = match system {
                System::Relay => start_relay(args, &slot, &publication, &table, &prefix, false),
                System::RelayExactlyOnce => {
                    start_relay(args, &slot, &publication, &table, &prefix, true)
                }
                System::Debezium => start_debezium(
                    args,
                    &format!("s{rate}"),
                    &slot,
                    &publication,
                    &table,
                    &prefix,
                ),
            };
            // Probes until one arrives: the reader is streaming. Probes use aggregate
            // `probe` and seq -1, and are left out of the measurement.
            let counter = watermark_consumer();
            let ready = Instant::now();
            loop {
                client
                    .execute(
                        &format!("INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'probe', 'Probe', '{{\"seq\":-1,\"ts\":0}}')"),
                        &[],
                    )
                    .await
                    .expect("probe");
                tokio::time::sleep(Duration::from_millis(500)).await;
                if topic_count(&counter, &topic) > 0 {
                    break;
                }
                p.assert_alive();
                assert!(
                    ready.elapsed() < Duration::from_secs(180),
                    "{} not streaming after 180 s",
                    p.name
                );
            }

            eprintln!(
                "compare: {} streaming after {:.1}s; writing {rate} events/s for {}s",
                system.label(),
                p.started.elapsed().as_secs_f64(),
                args.steady_secs
            );
            let ProcessUsage {
                cpu_seconds: cpu0,
                peak_rss_kb: _,
                ..
            } = usage(p.pid());
            let gc_from = gc_log_len();
            let watcher = VisibilityWatcher::start(&topic);
            let t0 = Instant::now();
            let (written, elapsed) = write_paced(args.clone(), table.clone(), rate).await;
            let achieved = written.iter().sum::<usize>() as f64 / elapsed;
            let total: usize = written.iter().sum();
            // Let the reader catch up: until a read_committed consumer has every event
            // (a high watermark would count exactly-once's commit markers too).
            let wait = Instant::now();
            while watcher.received() < total && wait.elapsed() < Duration::from_secs(300) {
                p.assert_alive();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let ProcessUsage {
                cpu_seconds: cpu1,
                peak_rss_kb,
                ..
            } = usage(p.pid());
            let busy = t0.elapsed().as_secs_f64();
            let broker_pauses = broker_pauses(gc_from);
            let relay_histograms = p.metrics_port.and_then(|port| {
                let (_, body) = http_get(port, "/metrics")?;
                let q = |name: &str| {
                    format!(
                        "{} / {}",
                        bucket_quantile(&body, name, 0.5),
                        bucket_quantile(&body, name, 0.99)
                    )
                };
                Some(format!(
                    "commit→ack {} ms; batch→ack {} ms",
                    q("outbox_relay_end_to_end_latency_seconds"),
                    q("outbox_relay_publish_duration_seconds")
                ))
            });
            p.stop();
            let visible_ms = watcher.stop();
            let check = check_steady(&topic, args.writers, &written);
            eprintln!(
                "compare: {} at {rate}/s: achieved {achieved:.0}/s, {} events, {}, append p50/p99 {}/{} ms, visible to read_committed p50/p99/max {}/{}/{} ms ({} events), CPU {:.1}%{}",
                system.label(),
                total,
                check.verdict(),
                percentile(&check.latencies_ms, 0.5),
                percentile(&check.latencies_ms, 0.99),
                percentile(&visible_ms, 0.5),
                percentile(&visible_ms, 0.99),
                percentile(&visible_ms, 1.0),
                visible_ms.len(),
                100.0 * (cpu1 - cpu0) / busy,
                relay_histograms
                    .as_deref()
                    .map(|h| format!(", {h}"))
                    .unwrap_or_default(),
            );
            results.push((
                system,
                SteadyResult {
                    rate,
                    achieved,
                    written: total,
                    check,
                    cpu_pct: 100.0 * (cpu1 - cpu0) / busy,
                    peak_rss_kb,
                    relay_histograms,
                    broker_pauses,
                    visible_ms,
                },
            ));
            for mut o in others {
                let _ = o.kill();
                let _ = o.wait();
            }
            for x in &extra {
                pg::cleanup(client, x, "", &[]).await;
            }
            pg::cleanup(client, &slot, "", &[]).await;
            delete_topics(&[topic, debezium_message_topic(&slot)]).await;
        }
    }
    pg::cleanup(client, "", &publication, &[&table]).await;
    results
}

/// A `read_committed` consumer tailing a steady-state topic while it is written, taking
/// for each measured event the time it became readable minus its insert time. The
/// broker's append time cannot show this for exactly-once: a transaction's records are
/// appended as produced and become readable only at the commit marker.
struct VisibilityWatcher {
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Measured events received so far.
    received: Arc<std::sync::atomic::AtomicUsize>,
    thread: std::thread::JoinHandle<Vec<i64>>,
}

impl VisibilityWatcher {
    fn start(topic: &str) -> Self {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::Message;
        use std::sync::atomic::Ordering;
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", env::kafka_bootstrap())
            .set("group.id", format!("compare-visible-{topic}"))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            // From the beginning: the probes before the run are skipped by their seq.
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("kafka consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = received.clone();
        let thread = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut idle_since: Option<Instant> = None;
            loop {
                match consumer.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => {
                        idle_since = None;
                        let now_ms = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_millis() as i64;
                        let payload = m.payload().unwrap_or_default();
                        if json_int(payload, "\"seq\":").is_some_and(|s| s >= 0) {
                            if let Some(us) = json_int(payload, "\"ts\":") {
                                out.push(now_ms - us / 1000);
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    _ => {
                        // Stop once asked and nothing arrived for a second.
                        if flag.load(Ordering::Relaxed) {
                            let since = *idle_since.get_or_insert_with(Instant::now);
                            if since.elapsed() > Duration::from_secs(1) {
                                break;
                            }
                        }
                    }
                }
            }
            out.sort_unstable();
            out
        });
        VisibilityWatcher {
            stop,
            received,
            thread,
        }
    }

    fn received(&self) -> usize {
        self.received.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn stop(self) -> Vec<i64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("watcher thread")
    }
}

/// `args.writers` connections, each inserting single-row autocommit transactions at
/// `rate / writers` per second (catching up without sleeping when behind), for
/// `steady_secs`. Writer `w` owns aggregates `a ≡ w (mod writers)` and numbers its events
/// `k * writers + w`, so seqs increase per aggregate in commit order. Returns the number of
/// events each writer committed and the elapsed seconds.
pub(crate) async fn write_paced(args: Arc<Args>, table: String, rate: u32) -> (Vec<usize>, f64) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let args = args.clone();
        let table = table.clone();
        tasks.push(tokio::spawn(async move {
            let client = pg::connect().await;
            // The project's cluster runs synchronous_commit=off: a commit would reach the
            // walsender only at the WAL writer's next flush (wal_writer_delay, 200 ms),
            // which would dominate every latency. Writers commit as production does.
            client
                .batch_execute("SET synchronous_commit = on")
                .await
                .expect("synchronous_commit");
            let stmt = client
                .prepare(&format!(
                    "INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', $1, 'OrderCreated', \
                     ($2::text || (extract(epoch FROM clock_timestamp()) * 1000000)::int8 || '}}')::jsonb)"
                ))
                .await
                .expect("prepare");
            let per_writer = rate as f64 / args.writers as f64;
            let interval = Duration::from_secs_f64(1.0 / per_writer);
            let deadline = Duration::from_secs(args.steady_secs);
            let mine: Vec<usize> = (w..args.backlog.aggregates).step_by(args.writers).collect();
            let begin = tokio::time::Instant::now();
            let mut k = 0usize;
            loop {
                let due = begin + interval.mul_f64(k as f64);
                if due.duration_since(begin) >= deadline {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let agg = mine[k % mine.len()];
                let seq = k * args.writers + w;
                let prefix = format!(
                    "{{\"orderId\":\"order-{agg}\",\"seq\":{seq},\"customerId\":\"c-{c}\",\"status\":\"CREATED\",\"currency\":\"EUR\",\"total\":{t}.99,\
                     \"items\":[{{\"sku\":\"SKU-{s1}\",\"qty\":2,\"price\":10.5}},{{\"sku\":\"SKU-{s2}\",\"qty\":1,\"price\":99.0}}],\
                     \"shippingAddress\":{{\"street\":\"Main Street {st}\",\"city\":\"Berlin\",\"zip\":\"10115\",\"country\":\"DE\"}},\
                     \"note\":\"{note}\",\"ts\":",
                    c = seq % 997,
                    t = seq % 1000,
                    s1 = seq % 50,
                    s2 = seq % 77,
                    st = seq % 300,
                    note = "x".repeat(100),
                );
                client
                    .execute(&stmt, &[&format!("order-{agg}"), &prefix])
                    .await
                    .expect("insert");
                k += 1;
            }
            k
        }));
    }
    let mut written = Vec::new();
    for t in tasks {
        written.push(t.await.expect("writer"));
    }
    (written, started.elapsed().as_secs_f64())
}

/// Checks a steady-state topic against what the writers committed and computes the
/// latency of every event: broker append time (ms) − insert `clock_timestamp()` (µs).
pub(crate) fn check_steady(topic: &str, writers: usize, written: &[usize]) -> Check {
    let mut check = Check::default();
    let total: usize = written.iter().sum();
    let max_seq = written.iter().max().copied().unwrap_or(0) * writers;
    let mut seen = vec![false; max_seq + writers];
    let mut last: HashMap<Vec<u8>, i64> = HashMap::new();
    read_topic(topic, |key, payload, _id, ts| {
        let Some(seq) = json_int(payload, "\"seq\":") else {
            check.wrong_key += 1;
            return;
        };
        if seq < 0 {
            return; // probe
        }
        check.records += 1;
        let s = seq as usize;
        let w = s % writers;
        if s / writers >= written[w] {
            check.wrong_key += 1; // not a committed event
            return;
        }
        if seen[s] {
            check.duplicates += 1;
            return;
        }
        seen[s] = true;
        let e = last.entry(key.to_vec()).or_insert(-1);
        if seq < *e {
            check.reordered += 1;
        } else {
            *e = seq;
        }
        if let (Some(ts), Some(us)) = (ts, json_int(payload, "\"ts\":")) {
            check.latencies_ms.push(ts - us / 1000);
        }
    });
    let found = seen.iter().filter(|s| **s).count();
    check.missing = total - found.min(total);
    check.latencies_ms.sort_unstable();
    check
}

/// The upper bound (ms) of the histogram bucket holding quantile `q`, from a Prometheus
/// text exposition (`<name>_bucket{...le="x"} count`, cumulative).
pub(crate) fn bucket_quantile(text: &str, name: &str, q: f64) -> String {
    let prefix = format!("{name}_bucket{{");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit_once(' ')?.1.parse().ok()?;
            Some((le, count))
        })
        .collect();
    let Some(&(_, total)) = buckets.last() else {
        return "–".into();
    };
    buckets
        .iter()
        .find(|(_, c)| *c >= q * total && total > 0.0)
        .map(|(le, _)| {
            if le.is_finite() {
                format!("≤{}", le * 1000.0)
            } else {
                "+Inf".into()
            }
        })
        .unwrap_or_else(|| "–".into())
}

pub(crate) fn percentile(sorted: &[i64], p: f64) -> String {
    if sorted.is_empty() {
        return "–".into();
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].to_string()
}
