//! The progress writer: copies the flush watermark into the state table.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::{Parking, StateStore};
use crate::pipeline::Progress;
use crate::telemetry::Metrics;

/// Every `interval`, records the flush watermark if it moved. The watermark only passes
/// what the sink acknowledged, so the record never runs ahead of delivery.
pub async fn run_writer(
    store: Arc<StateStore>,
    progress: Arc<Progress>,
    metrics: Metrics,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut recorded = progress.flushed();
    let mut warned = false;
    loop {
        tick.tick().await;
        let flushed = progress.flushed();
        if flushed <= recorded {
            continue;
        }
        match store.record_progress(flushed).await {
            Ok(()) => {
                recorded = flushed;
                warned = false;
            }
            Err(e) => {
                metrics.errors.with_label_values(&["state"]).inc();
                if !warned {
                    warn!(error = %e, "could not record progress; a restart may replay more than needed");
                    warned = true;
                }
            }
        }
    }
}

/// Every `interval`, re-reads which aggregates are parked (a redrive or discard may have
/// emptied some, which unparks them) and exports the parking gauges.
pub async fn report_parked(parking: Arc<Parking>, metrics: Metrics, interval: Duration) {
    let mut warned = false;
    let mut pause = interval;
    loop {
        tokio::time::sleep(pause).await;
        let started = tokio::time::Instant::now();
        let refreshed = parking.refresh().await;
        // A refresh reads the whole table and holds parking writes back while it runs:
        // with hundreds of thousands of parked events (a long outage with on_open: park)
        // it takes a second, so it runs at most a tenth of the time.
        pause = interval.max(started.elapsed() * 10);
        match refreshed {
            Ok(stats) => {
                warned = false;
                metrics.parked_events.reset();
                let mut by_label = std::collections::HashMap::<&str, i64>::new();
                for (destination, n) in &stats.by_destination {
                    *by_label
                        .entry(metrics.destinations.label(destination))
                        .or_default() += *n;
                }
                for (label, n) in by_label {
                    metrics.parked_events.with_label_values(&[label]).set(n);
                }
                metrics.parked_aggregates.set(stats.aggregates);
                metrics.parked_oldest_age.set(stats.oldest_age_seconds);
            }
            Err(e) => {
                metrics.errors.with_label_values(&["state"]).inc();
                if !warned {
                    warn!(error = %e, "could not read the parked events");
                    warned = true;
                }
            }
        }
    }
}
