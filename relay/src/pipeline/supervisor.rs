//! Runs sessions one after another: a retryable failure restarts with backoff, anything
//! else stops the process with the error, and so does the same event failing session
//! after session (a poison event must never mean an endless restart loop).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_connectors::aws::{SnsPublisher, SqsPublisher};
use outbox_connectors::kafka::{KafkaPublisher, KafkaTransactionalPublisher};
use outbox_connectors::null::NullPublisher;
use outbox_connectors::policy::Backoff;
use outbox_connectors::Publisher;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::flow::FlowMemory;
use super::session::{run_session, SessionContext, SessionEnd};
use crate::config::{Config, SinkConfig};
use crate::error::{FailedEvent, RelayError};
use crate::telemetry::{Health, Metrics};

/// Builds the configured publisher. A configuration the connector refuses is a
/// configuration error (fatal); anything else (a region lookup, a credentials provider
/// that did not answer) may heal and is retried like any session failure.
pub async fn build_publisher(config: &Config) -> Result<Arc<dyn Publisher>, RelayError> {
    build(config).await.map_err(|e| match e {
        RelayError::Sink(p) if p.kind == "config" => {
            RelayError::Config(crate::config::ConfigError(p.message))
        }
        e => e,
    })
}

async fn build(config: &Config) -> Result<Arc<dyn Publisher>, RelayError> {
    Ok(match &config.sink {
        SinkConfig::Null => Arc::new(NullPublisher),
        SinkConfig::Kafka(kafka) if kafka.exactly_once => {
            let mut kafka = kafka.clone();
            if kafka.transactional_id.is_empty() {
                kafka.transactional_id = format!(
                    "outbox-relay.{}.{}",
                    config.source.database, config.source.slot
                );
            }
            Arc::new(KafkaTransactionalPublisher::new(&kafka).await?)
        }
        SinkConfig::Kafka(kafka) => Arc::new(KafkaPublisher::new(kafka)?),
        SinkConfig::Sns(sns) => Arc::new(SnsPublisher::new(sns).await?),
        SinkConfig::Sqs(sqs) => Arc::new(SqsPublisher::new(sqs).await?),
    })
}

/// How often the sink is probed for readiness.
const PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// Runs the relay: one supervised session, or one per shard (`source.shards`) side by
/// side. Shards share the process, the metrics registry and the health state; each has
/// its own slot, publication, connections, progress record and sink connector, and
/// restarts on its own. A shard that stops for good stops the others: running on with
/// a shard missing would hold its aggregates back unnoticed.
pub async fn run(
    config: Arc<Config>,
    metrics: Metrics,
    health: Arc<Health>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RelayError> {
    let shards = config.shard_configs();
    let setup = Arc::new(tokio::sync::Mutex::new(()));
    if shards.len() == 1 {
        return run_shard(config, metrics, health, setup, shutdown).await;
    }
    health.set_shards(shards.len());
    let slots: Vec<String> = shards.iter().map(|c| c.source.slot.clone()).collect();
    info!(shards = shards.len(), slots = ?slots, "reading the outbox in shards");
    let (stop_all, stop_rx) = watch::channel(false);
    let mut outer = shutdown.clone();
    let forward = {
        let stop_all = stop_all.clone();
        tokio::spawn(async move {
            let _ = outer.wait_for(|stop| *stop).await;
            let _ = stop_all.send(true);
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (shard, shard_metrics) in shards.into_iter().zip(metrics.for_slots(&slots)) {
        let (health, stop) = (health.clone(), stop_rx.clone());
        tasks.spawn(run_shard(
            Arc::new(shard),
            shard_metrics,
            health,
            setup.clone(),
            stop,
        ));
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.unwrap_or_else(|e| {
            Err(RelayError::Halted(format!(
                "a shard's task ended abnormally: {e}"
            )))
        });
        if let Err(e) = result {
            if first_error.is_none() {
                error!(error = %e, "a shard stopped; stopping the other shards");
                let _ = stop_all.send(true);
                first_error = Some(e);
            }
        }
    }
    forward.abort();
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One slot's sessions, restarted under [`supervise`].
async fn run_shard(
    config: Arc<Config>,
    metrics: Metrics,
    health: Arc<Health>,
    setup: Arc<tokio::sync::Mutex<()>>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RelayError> {
    let ctx = SessionContext {
        config: config.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        setup,
    };
    let memory = FlowMemory::default();
    let policy = RestartPolicy {
        backoff: Backoff::new(
            config.pipeline.restart_backoff,
            config.pipeline.restart_backoff_max,
        ),
        max_repeated_failures: config.pipeline.max_repeated_failures,
        auth_failure_retry: config.pipeline.auth_failure_retry,
    };
    let sessions = shutdown.clone();
    supervise(policy, &metrics, shutdown, || {
        let mut shutdown = sessions.clone();
        let (ctx, memory, metrics, health) =
            (&ctx, memory.clone(), metrics.clone(), health.clone());
        async move {
            // A credentials provider or region lookup that does not answer gives way to
            // a shutdown request.
            let publisher = tokio::select! {
                built = build_publisher(&ctx.config) => match built {
                    Ok(p) => p,
                    Err(e) => {
                        return SessionEnd {
                            result: Err(e),
                            progressed: false,
                        }
                    }
                },
                _ = shutdown.changed() => {
                    return SessionEnd {
                        result: Ok(()),
                        progressed: false,
                    }
                }
            };
            metrics.connector.attach(publisher.clone());
            let probe = tokio::spawn(probe_loop(publisher.clone(), metrics.clone(), health));
            let end = run_session(ctx, publisher.clone(), memory, &mut shutdown).await;
            probe.abort();
            metrics.connector.detach_one(&publisher);
            end
        }
    })
    .await
}

/// When to restart and when to give up.
pub(super) struct RestartPolicy {
    pub backoff: Backoff,
    /// The same event failing this many sessions in a row stops the relay.
    pub max_repeated_failures: u32,
    /// Authentication failures are retried this long (from the first of a run of them).
    pub auth_failure_retry: Duration,
}

/// Runs `session` until it ends cleanly (shutdown) or with an error that a restart
/// cannot heal. The backoff grows while sessions deliver nothing and starts over after
/// one that did, so a server restart costs a short pause, not the capped maximum.
pub(super) async fn supervise<F, Fut>(
    mut policy: RestartPolicy,
    metrics: &Metrics,
    mut shutdown: watch::Receiver<bool>,
    mut session: F,
) -> Result<(), RelayError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = SessionEnd>,
{
    let mut repeated: Option<(FailedEvent, u32)> = None;
    let mut auth_failing_since: Option<tokio::time::Instant> = None;
    loop {
        let started = Instant::now();
        let end = session().await;
        let e = match end.result {
            Ok(()) => {
                info!("shut down cleanly");
                return Ok(());
            }
            Err(e) => e,
        };
        metrics.errors.with_label_values(&[e.kind()]).inc();
        let auth_retry = if e.is_auth_failure() {
            let since = *auth_failing_since.get_or_insert_with(tokio::time::Instant::now);
            since.elapsed() < policy.auth_failure_retry
        } else {
            auth_failing_since = None;
            false
        };
        if !e.is_retryable() && !auth_retry {
            error!(error = %e, "stopping");
            return Err(e);
        }
        repeated = match (e.failed_event(), repeated.take()) {
            (Some(at), Some((prev, n))) if *at == prev => Some((prev, n + 1)),
            (Some(at), _) => Some((at.clone(), 1)),
            (None, _) => None,
        };
        if let Some((at, n)) = &repeated {
            if *n >= policy.max_repeated_failures {
                let stop = RelayError::Halted(format!(
                    "event {} (commit {}, destination {}) failed {n} sessions in a row; stopping instead of restarting again (pipeline.max_repeated_failures). Last error: {e}",
                    at.id, at.commit_lsn, at.destination
                ));
                metrics.errors.with_label_values(&[stop.kind()]).inc();
                error!(error = %stop, "stopping");
                return Err(stop);
            }
        }
        if end.progressed {
            policy.backoff.reset();
        }
        let delay = policy.backoff.next_delay();
        metrics.restarts.inc();
        warn!(error = %e, session_secs = started.elapsed().as_secs(), retry_in_ms = delay.as_millis() as u64,
            "session failed; restarting from the last confirmed position");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// Probes the sink for readiness every `PROBE_INTERVAL`.
async fn probe_loop(publisher: Arc<dyn Publisher>, metrics: Metrics, health: Arc<Health>) {
    loop {
        let ok = publisher.probe(Duration::from_secs(5)).await.is_ok();
        health.set_sink_reachable(ok);
        metrics.sink_up.set(ok as i64);
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}
