//! The chaos suite (issue 13): a write load of tens of thousands to millions of events
//! through a seeded schedule of faults — relay SIGKILL and SIGSTOP, PostgreSQL immediate
//! and fast restarts, Kafka broker SIGKILL, network faults between the relay and
//! PostgreSQL and between the relay and its sink (Toxiproxy), leader failover between two
//! replicas — and then the sink's whole history checked against what PostgreSQL
//! committed: nothing lost, no phantom, nothing reordered per aggregate, every duplicate
//! inside a fault's replay window, every record byte-exact, and the slot's confirmed
//! flush LSN never moving back (sampled all along).
//!
//! Runs against private services (services.rs), never the shared ones. `tests/chaos.sh`
//! runs the full variant; `tests/tests/chaos.rs` the short one in the test suite.

pub mod aws_sink;
pub mod catalog;
pub mod check;
pub mod faults;
pub mod fleet;
pub mod ledger;
pub mod report;
pub mod schedule;
pub mod services;
pub mod sink;
pub mod watch;
pub mod writers;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_postgres::{Client, NoTls};

use crate::relay::RelaySetup;
use aws_sink::SinkKind;
use catalog::Catalog;
use check::Checker;
use faults::Driver;
use fleet::Fleet;
use ledger::{uuid_text, Ledger, Via};
use writers::{LoadSpec, Shared};

/// One run's parameters.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub variant: String,
    pub seed: u64,
    /// Committed events to reach at least (the load goes on until the faults are done and
    /// this many committed).
    pub events: u64,
    /// Faults to inject; 0 = every kind of the run once.
    pub faults: usize,
    /// Seconds the schedule spreads the faults over.
    pub window_s: f64,
    pub aggregates: usize,
    pub load: LoadSpec,
    /// 1, or 2 replicas with `ha.enabled` (leader failover).
    pub replicas: usize,
    pub sink: SinkKind,
    pub recovery_timeout: Duration,
    pub drain_timeout: Duration,
}

impl ChaosConfig {
    /// The test suite's variant: ≥ 50k events, every fault kind once (19 faults; 20 with
    /// two replicas), a few minutes.
    pub fn short(seed: u64) -> ChaosConfig {
        ChaosConfig {
            variant: "short".into(),
            seed,
            events: 50_000,
            faults: 0,
            window_s: 40.0,
            aggregates: 2000,
            load: LoadSpec {
                writers: 6,
                rate: 450.0,
                rollback_pct: 8,
                savepoint_pct: 12,
                message_pct: 15,
                bulk_every: Duration::from_secs(30),
                bulk_rows: 8000,
                bulk_aggregates: 40,
                bmp_only: false,
            },
            replicas: 1,
            sink: SinkKind::Kafka,
            recovery_timeout: Duration::from_secs(120),
            drain_timeout: Duration::from_secs(300),
        }
    }

    /// For an SNS/SQS sink on fauxqs: characters it accepts only (the Basic Multilingual
    /// Plane; SNS and SQS accept more).
    pub fn with_sink(mut self, sink: SinkKind) -> ChaosConfig {
        self.sink = sink;
        self.load.bmp_only = sink != SinkKind::Kafka;
        self
    }

    /// The full run: ≥ 1M events over 5000 aggregates, ≥ 100 faults.
    pub fn full(seed: u64) -> ChaosConfig {
        ChaosConfig {
            variant: "full".into(),
            seed,
            events: 1_000_000,
            faults: 110,
            window_s: 330.0,
            aggregates: 5000,
            load: LoadSpec {
                writers: 8,
                rate: 600.0,
                rollback_pct: 8,
                savepoint_pct: 12,
                message_pct: 15,
                bulk_every: Duration::from_secs(40),
                bulk_rows: 25_000,
                bulk_aggregates: 100,
                bmp_only: false,
            },
            replicas: 1,
            sink: SinkKind::Kafka,
            recovery_timeout: Duration::from_secs(180),
            drain_timeout: Duration::from_secs(900),
        }
    }
}

async fn connect() -> Result<Client, String> {
    let (client, connection) = tokio_postgres::connect(&services::pg_conn(), NoTls)
        .await
        .map_err(|e| format!("private PostgreSQL on {}: {e}", services::PG_PORT))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn connect_retrying() -> Result<Client, String> {
    let start = Instant::now();
    loop {
        match connect().await {
            Ok(c) => return Ok(c),
            Err(e) if start.elapsed() > Duration::from_secs(120) => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn wal_insert_lsn() -> Result<u64, String> {
    let c = connect_retrying().await?;
    let v: i64 = c
        .query_one("SELECT (pg_current_wal_insert_lsn() - '0/0')::int8", &[])
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    Ok(v as u64)
}

fn log(line: &str) {
    eprintln!("chaos: {line}");
}

/// Runs the suite once and returns its JSON summary (`"ok": true` when every check held).
/// Errors are failures of the harness (a service that cannot start), not findings.
pub async fn run(cfg: &ChaosConfig) -> Result<Value, String> {
    let _lock = tokio::task::spawn_blocking(services::lock_run)
        .await
        .map_err(|e| e.to_string())??;
    let wall = Instant::now();
    let kafka = cfg.sink == SinkKind::Kafka;
    log(&format!(
        "{} run into {}, seed {} (replay: --seed {}), {} events, faults: {}, {} replica(s)",
        cfg.variant,
        cfg.sink.label(),
        cfg.seed,
        cfg.seed,
        cfg.events,
        match cfg.faults {
            0 => "every kind once".to_string(),
            n => n.to_string(),
        },
        cfg.replicas
    ));
    let toxi = tokio::task::spawn_blocking(move || {
        services::start_pg()?;
        if kafka {
            services::fresh_kafka()?;
            services::start_toxiproxy(&services::kafka_proxied(), services::KAFKA_PROXY_PORT)
        } else {
            let fauxqs = crate::aws::fauxqs_endpoint();
            services::start_toxiproxy(
                fauxqs.trim_start_matches("http://"),
                services::AWS_PROXY_PORT,
            )
        }
    })
    .await
    .map_err(|e| e.to_string())??;

    let client = connect().await?;
    // Short enough that a frozen relay's walsender gives up during a long SIGSTOP.
    // (Separate statements: ALTER SYSTEM cannot run in the implicit transaction of a
    // multi-statement query.)
    for sql in [
        "ALTER SYSTEM SET wal_sender_timeout = '6s'",
        "SELECT pg_reload_conf()",
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
          WHERE NOT active AND slot_name LIKE 'chaos\\_%'",
    ] {
        client
            .batch_execute(sql)
            .await
            .map_err(|e| format!("private cluster: {sql}: {e:?}"))?;
    }
    let name = crate::unique("chaos");
    let table = format!("{name}_outbox");
    let catalog = Arc::new(Catalog::new(cfg.aggregates, cfg.load.bmp_only));
    catalog::prepare(&client, &table, &catalog).await?;

    let prefix = name.replace('_', "-");
    let message_prefix = format!("{name}-events");
    let mut setup = RelaySetup::new(&name, &table);
    setup.topic_prefix = prefix.clone();
    setup.outbox_extra = format!("  messages:\n    prefix: {message_prefix}\n");
    let aws = if kafka {
        setup.sink_yaml = Some(format!(
            "  kind: kafka\n  kafka:\n    brokers: 127.0.0.1:{}\n",
            services::KAFKA_PROXY_PORT
        ));
        None
    } else {
        let d = aws_sink::prepare(
            cfg.sink,
            &name,
            &format!("http://127.0.0.1:{}", services::AWS_PROXY_PORT),
        )
        .await?;
        setup.sink_yaml = Some(d.sink_yaml.clone());
        setup.route_template = Some(d.route_template.clone());
        setup.dead_letter = Some(d.dead_letter.clone());
        setup = setup.with_env(&crate::aws::relay_env());
        Some(d)
    };
    let pg_proxy = services::PG_PROXY_PORT.to_string();
    setup = setup.with_env(&[
        ("RELAY__SOURCE__PORT", pg_proxy.as_str()),
        // Above half of the 6 s wal_sender_timeout, and short enough that a half-open
        // replication connection is noticed within a fault's hold.
        ("RELAY__SOURCE__RECEIVE_TIMEOUT_MS", "10000"),
    ]);
    if cfg.replicas > 1 {
        setup = setup.with_env(&[("RELAY__HA__ENABLED", "true")]);
    }
    // Per aggregate type: the Kafka topic, or the queue its events end up in.
    let per_type: Vec<String> = match &aws {
        None => catalog::TYPES
            .iter()
            .map(|t| format!("{prefix}.{t}"))
            .collect(),
        Some(d) => d.queues.clone(),
    };
    if kafka {
        sink::create_topics(&services::kafka_bootstrap(), &per_type).await?;
    }
    let destinations: Vec<String> = catalog
        .types
        .iter()
        .map(|t| per_type[catalog::TYPES.iter().position(|x| x == t).unwrap()].clone())
        .collect();

    let slot = setup.slot();
    let mut fleet = Fleet::start(setup.clone(), cfg.replicas);
    let ready = tokio::task::spawn_blocking(move || {
        let r = fleet.wait_streaming(Duration::from_secs(120));
        (fleet, r)
    })
    .await
    .map_err(|e| e.to_string())?;
    let fleet = ready.0;
    ready.1?;

    let watcher = watch::Watcher::start(services::pg_conn(), slot.clone());
    let shared = Arc::new(Shared::new(
        services::pg_conn(),
        table.clone(),
        message_prefix,
        catalog.clone(),
        cfg.load.clone(),
        cfg.seed,
    ));
    let writer_tasks = writers::spawn(&shared);

    let kinds = schedule::kinds(kafka, cfg.replicas);
    let n = if cfg.faults == 0 {
        kinds.len()
    } else {
        cfg.faults
    };
    let plan = schedule::draw(cfg.seed, n, cfg.window_s, &kinds);
    for f in &plan {
        log(&format!("planned {}", f.to_json()));
    }
    let mut driver = Driver {
        fleet,
        toxi,
        watch: watcher.state.clone(),
        conn: services::pg_conn(),
        slot: slot.clone(),
        rt: tokio::runtime::Handle::current(),
        recovery_timeout: cfg.recovery_timeout,
    };
    let t0 = Instant::now();
    let plan2 = plan.clone();
    let (mut driver, done) = tokio::task::spawn_blocking(move || {
        let done = driver.run(&plan2, t0, |d| log(&format!("fault {}", d.to_json())));
        (driver, done)
    })
    .await
    .map_err(|e| e.to_string())?;

    // The load goes on until the target is reached.
    while shared.committed.load(Ordering::Relaxed) < cfg.events {
        tokio::time::sleep(Duration::from_secs(1)).await;
        driver.fleet.reap();
    }
    shared.stop.store(true, Ordering::Relaxed);
    let mut ledger = Ledger::default();
    for t in writer_tasks {
        ledger.merge(t.await.map_err(|e| format!("writer: {e}"))?);
    }
    let load_s = t0.elapsed();
    log(&format!(
        "load done after {:.0} s: {:?}",
        load_s.as_secs_f64(),
        ledger.counts
    ));

    // Drain: the relay has delivered everything up to the end of WAL as of now.
    let end = wal_insert_lsn().await?;
    let drain_start = Instant::now();
    let mut drained = false;
    while drain_start.elapsed() < cfg.drain_timeout {
        if watcher.latest().delivered() >= end {
            drained = true;
            break;
        }
        driver.fleet.reap();
        driver.fleet.sample();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drain_s = drain_start.elapsed();
    log(&format!(
        "drained: {drained} after {:.0} s",
        drain_s.as_secs_f64()
    ));
    let exit_statuses = tokio::task::spawn_blocking(move || {
        let s = driver.fleet.terminate();
        (driver, s)
    })
    .await
    .map_err(|e| e.to_string())?;
    let (driver, exit_statuses) = exit_statuses;
    let lsn = watcher.stop().await;

    // The truth: final versions, and which ambiguous commits' rows are in the table.
    let client = connect_retrying().await?;
    let finals = catalog::final_versions(&client, &table, &catalog).await?;
    let ambiguous_rows: Vec<String> = ledger
        .ambiguous
        .iter()
        .filter(|w| w.via == Via::Row)
        .map(|w| uuid_text(w.id))
        .collect();
    let in_table: HashSet<u128> = client
        .query(
            &format!("SELECT id::text FROM {table} WHERE id = ANY($1::text[]::uuid[])"),
            &[&ambiguous_rows],
        )
        .await
        .map_err(|e| format!("ambiguous rows: {e}"))?
        .iter()
        .filter_map(|r| ledger::parse_uuid(r.get::<_, &str>(0)))
        .collect();
    let mut checker = Checker::new(
        &ledger,
        catalog.names.clone(),
        destinations.clone(),
        &finals,
        &in_table,
    );
    let read_start = Instant::now();
    let (mut checker, read) = match &aws {
        None => {
            let topics = per_type.clone();
            tokio::task::spawn_blocking(move || {
                let r = sink::read_kafka(&services::kafka_bootstrap(), &topics, &mut checker);
                (checker, r)
            })
            .await
            .map_err(|e| e.to_string())?
        }
        Some(d) => {
            checker.expect_attributes(catalog.types.iter().map(|t| t.to_string()).collect());
            let r = aws_sink::read(&d.sdk, &d.queues, &mut checker, Duration::from_secs(5)).await;
            (checker, r)
        }
    };
    let read = read?;
    let windows: Vec<check::Window> = done.iter().map(|d| d.window.clone()).collect();
    checker.finish(&windows);
    log(&format!(
        "read back {read} records in {:.0} s",
        read_start.elapsed().as_secs_f64()
    ));

    let summary = report::summary(report::Inputs {
        cfg,
        ledger: &ledger,
        checker: &checker,
        lsn: &lsn,
        done: &done,
        fleet: &driver.fleet,
        exit_statuses: &exit_statuses,
        drained,
        wall: wall.elapsed(),
        load: load_s,
        drain: drain_s,
    });
    if summary["ok"] == json!(true) {
        crate::pg::cleanup(
            &client,
            &slot,
            &slot,
            &[&table, &catalog::versions_table(&table)],
        )
        .await;
        if let Some(d) = &aws {
            aws_sink::cleanup(d).await;
        }
    } else {
        log(&format!(
            "kept for inspection: table {table}, slot {slot}, destinations {per_type:?}, relay logs:\n{}",
            driver.fleet.log_tails()
        ));
    }
    if kafka {
        let _ = tokio::task::spawn_blocking(services::stop_kafka).await;
    }
    Ok(summary)
}
