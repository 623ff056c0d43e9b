//! Runs sessions one after another: a retryable failure restarts with backoff, anything
//! else stops the process with the error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_connectors::aws::{SnsPublisher, SqsPublisher};
use outbox_connectors::kafka::KafkaPublisher;
use outbox_connectors::null::NullPublisher;
use outbox_connectors::Publisher;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::session::{run_session, SessionContext};
use crate::config::{Config, SinkKind};
use crate::error::RelayError;
use crate::telemetry::{Health, Metrics};

pub async fn build_publisher(config: &Config) -> Result<Arc<dyn Publisher>, RelayError> {
    let missing =
        |key: &str| RelayError::Config(crate::config::ConfigError(format!("{key}: required")));
    Ok(match config.sink.kind {
        SinkKind::Null => Arc::new(NullPublisher),
        SinkKind::Kafka => {
            let kafka = config.sink.kafka.as_ref().ok_or_else(|| {
                RelayError::Config(crate::config::ConfigError("sink.kafka: required".into()))
            })?;
            Arc::new(KafkaPublisher::new(kafka)?)
        }
        SinkKind::Sns => {
            let sns = config
                .sink
                .sns
                .as_ref()
                .ok_or_else(|| missing("sink.sns"))?;
            Arc::new(SnsPublisher::new(sns).await?)
        }
        SinkKind::Sqs => {
            let sqs = config
                .sink
                .sqs
                .as_ref()
                .ok_or_else(|| missing("sink.sqs"))?;
            Arc::new(SqsPublisher::new(sqs).await?)
        }
    })
}

/// How often the sink is probed for readiness.
const PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// How often the connector's own counters are copied into the metrics.
const COUNTER_INTERVAL: Duration = Duration::from_secs(1);
/// A session that ran this long resets the backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(60);

pub async fn run(
    config: Arc<Config>,
    metrics: Metrics,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RelayError> {
    let ctx = SessionContext {
        config: config.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
    };
    let base = Duration::from_millis(config.pipeline.restart_backoff_ms);
    let max = Duration::from_millis(config.pipeline.restart_backoff_max_ms);
    let mut backoff = base;
    loop {
        let publisher = build_publisher(&config).await?;
        let probe = tokio::spawn(probe_loop(
            publisher.clone(),
            metrics.clone(),
            health.clone(),
        ));
        let started = Instant::now();
        let result = run_session(&ctx, publisher, &mut shutdown).await;
        probe.abort();
        match result {
            Ok(()) => {
                info!("shut down cleanly");
                return Ok(());
            }
            Err(e) => {
                metrics.errors.with_label_values(&[e.kind()]).inc();
                if !e.is_retryable() {
                    error!(error = %e, "stopping");
                    return Err(e);
                }
                if started.elapsed() > HEALTHY_SESSION {
                    backoff = base;
                }
                metrics.restarts.inc();
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "session failed; restarting from the last confirmed position");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                backoff = (backoff * 2).min(max);
            }
        }
    }
}

async fn probe_loop(publisher: Arc<dyn Publisher>, metrics: Metrics, health: Arc<Health>) {
    // The publisher counts from zero; the metrics count over the process's life.
    let mut counted: std::collections::HashMap<Arc<str>, u64> = std::collections::HashMap::new();
    let mut requested = 0;
    let mut last_probe: Option<Instant> = None;
    loop {
        if last_probe.is_none_or(|t| t.elapsed() >= PROBE_INTERVAL) {
            let ok = publisher.probe(Duration::from_secs(5)).await.is_ok();
            health.set_sink_reachable(ok);
            metrics.sink_up.set(ok as i64);
            last_probe = Some(Instant::now());
        }
        for (destination, retries) in publisher.retries_by_destination() {
            let seen = counted.entry(destination.clone()).or_default();
            if retries > *seen {
                metrics
                    .sink_retries
                    .with_label_values(&[&destination])
                    .inc_by(retries - *seen);
                *seen = retries;
            }
        }
        let requests = publisher.requests();
        if requests > requested {
            metrics.sink_requests.inc_by(requests - requested);
            requested = requests;
        }
        tokio::time::sleep(COUNTER_INTERVAL).await;
    }
}
